"""Img2img-enhanced pseudo views: the refine stage's alternative to SDS on novel views (Customize-It-3D,
DESIGN.md 5.2.4: "SDS or img2img-enhanced pseudo views (33 views, strength 0.05-0.15)").

Before refining, V views spread around the subject are rendered from the point model (colours projected from
the photos, elsewhere from the coarse Gaussians) and each is enhanced once by the personalised model with
diffusers' StableDiffusionImg2ImgPipeline: prompt "a rgb photo of sks <class>", a low strength drawn per view
in a range, so the model adds the subject's detail while the render's layout stays. While refining, each step
decodes one of those views (in epochs of shuffled order) and takes the L1 to its enhanced target, weighted by
the splats' alpha. The targets are made once and kept on the device; a step costs one more point render and
no VAE or UNet (SDS costs a render, a VAE encode with its backward and a UNet batch of 2).
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..views.cameras import Cameras, orbit
from .config import PseudoViewConfig
from ..diffusion.steps import step_callback


def pseudo_view_cameras(center, radius: float, n: int, size: int, config: PseudoViewConfig = PseudoViewConfig()) -> Cameras:
    """n cameras (CPU) looking at `center`: azimuths evenly spaced over 360 degrees, polar angles spread over
    config.polar_deg by the golden-ratio sequence, so any n covers both the ring and the heights."""
    golden = (math.sqrt(5) - 1) / 2
    lo, hi = config.polar_deg
    center = torch.as_tensor(center, dtype=torch.float32).detach().cpu()
    cams = []
    for i in range(n):
        polar = lo + (hi - lo) * ((0.5 + i * golden) % 1.0)
        cams.append(orbit(center, radius, [360.0 * i / n], [90.0 - polar], size, size, config.fov_deg,
                          margin=config.distance_scale))
    return Cameras.cat(cams)


def step_range(config: PseudoViewConfig) -> tuple[int, int]:
    """The whole numbers of denoising steps k whose strength k / num_inference_steps lies in config.strength
    (diffusers runs whole steps); (k_lo, k_hi), empty when k_lo > k_hi."""
    lo, hi = config.strength
    steps = config.num_inference_steps
    return math.ceil(lo * steps - 1e-9), math.floor(hi * steps + 1e-9)


def draw_strengths(n: int, config: PseudoViewConfig, generator: torch.Generator) -> list[float]:
    """n strengths drawn uniformly from the whole-step strengths k / num_inference_steps inside config.strength
    (both ends included when they are whole steps: the default 100 steps make 0.05-0.15 exactly 5-15 steps)."""
    k_lo, k_hi = step_range(config)
    ks = torch.randint(k_lo, k_hi + 1, (n,), generator=generator).tolist()
    return [k / config.num_inference_steps for k in ks]


def build_img2img(components):
    """A `StableDiffusionImg2ImgPipeline` over the (personalised) components: whatever LoRA adapter the UNet
    carries stays active, a full fine-tune's UNet and text encoder are the ones used. DDIM from the model's
    own schedule; no safety checker; nothing downloaded."""
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline

    pipe = StableDiffusionImg2ImgPipeline(
        vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer, unet=components.unet,
        scheduler=DDIMScheduler.from_config(components.scheduler.config), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


@torch.no_grad()
def render_views(model, cameras: Cameras) -> tuple[Tensor, Tensor]:  # [V, H, W, 3] over white, [V, H, W] alpha (CPU)
    """Decode each view of the point model (`DeferredPoints`), one at a time, composited over white by the
    splats' coverage (as the SDS views are)."""
    dev = next(model.parameters()).device
    rgbs, alphas = [], []
    for i in range(len(cameras)):
        rgb, alpha = model(cameras[i : i + 1].to(dev))
        a = alpha[..., None]
        rgbs.append((rgb * a + (1 - a)).clamp(0, 1).float().cpu())
        alphas.append(alpha.float().cpu())
    return torch.cat(rgbs), torch.cat(alphas)


@torch.no_grad()
def enhance_views(
    pipe,
    images: Tensor,  # [V, H, W, 3] in [0, 1]; H, W multiples of 8
    prompt: str,
    strengths: list[float],  # [V] from draw_strengths
    config: PseudoViewConfig = PseudoViewConfig(),
    *,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], None] | None = None,
) -> Tensor:  # [V, H, W, 3] float32 in [0, 1], CPU
    """Img2img each view at its strength. Views with the same number of denoising steps share pipeline calls
    (in batches of config.batch_size); view i draws its noise from `seed + i` alone, so its result does not
    depend on the batching. `progress(done, total)` after every denoising step; `cancel()` before each."""
    V, H, W, _ = images.shape
    if len(strengths) != V:
        raise ValueError(f"strengths must have one value per view ({V}), got {len(strengths)}")
    steps = config.num_inference_steps
    counts = [max(1, min(steps, int(s * steps + 1e-6))) for s in strengths]  # as diffusers counts them
    groups: dict[int, list[int]] = {}
    for i, k in enumerate(counts):
        groups.setdefault(k, []).append(i)
    calls = [(k, idx[j : j + config.batch_size]) for k, idx in sorted(groups.items())
             for j in range(0, len(idx), config.batch_size)]
    total = sum(k for k, _ in calls)
    x = images.permute(0, 3, 1, 2).float().clamp(0, 1)  # [V, 3, H, W]
    out = torch.empty(V, H, W, 3)

    on_step = step_callback(total, progress, cancel)

    for k, idx in calls:
        n = len(idx)
        result = pipe(
            prompt=[prompt] * n, negative_prompt=[""] * n, image=x[idx],
            strength=min(1.0, (k + 0.5) / steps),  # diffusers runs int(steps x strength) = k steps (+0.5: rounding)
            num_inference_steps=steps, guidance_scale=float(config.guidance_scale),
            generator=[torch.Generator().manual_seed(seed + i) for i in idx], output_type="np",
            callback_on_step_end=on_step,
        ).images  # [n, H, W, 3] float32 in [0, 1]
        out[idx] = torch.from_numpy(np.nan_to_num(np.asarray(result, np.float32))).clamp(0, 1)
    return out


class PseudoViews:
    """The enhanced views and their loss; `weighted_loss(model, step)` is `refine_points.refine_points`'
    `novel_loss`."""

    def __init__(self, cameras: Cameras, targets: Tensor, renders: Tensor, alphas: Tensor, strengths: list[float],
                 seconds: float, seed: int = 0, weight: float = 1.0):
        self.cameras = cameras  # V cameras, on the targets' device
        self.targets = targets  # [V, H, W, 3] enhanced views in [0, 1], on the device
        self.renders = renders  # [V, H, W, 3] the renders they were made from, CPU
        self.alphas = alphas  # [V, H, W] the splats' coverage of each view, CPU
        self.strengths = list(strengths)
        self.seconds = seconds
        self.weight = weight  # of the L1 in the refine stage's loss (PseudoViewConfig.weight)
        self._gen = torch.Generator().manual_seed(seed)
        self._order: list[int] = []

    def __len__(self) -> int:
        return self.targets.shape[0]

    def next_view(self) -> int:
        """The next view, in epochs of shuffled order (each view once per epoch)."""
        if not self._order:
            self._order = torch.randperm(len(self), generator=self._gen).tolist()
        return self._order.pop()

    def loss(self, model, step: int) -> Tensor:
        """[] L1 between the decoded view (over white by its alpha) and its enhanced target, weighted by the
        splats' alpha, on one pseudo view."""
        i = self.next_view()
        rgb, alpha = model(self.cameras[i : i + 1])
        a = alpha.detach()[..., None]
        pred = rgb * a + (1 - a)
        return ((pred - self.targets[i : i + 1]).abs() * a).sum() / (3 * a.sum()).clamp_min(1e-6)

    def weighted_loss(self, model, step: int) -> Tensor:
        """`weight` x `loss`: the refine stage's novel-view term."""
        return self.weight * self.loss(model, step)

    def summary(self) -> dict:
        """For report.json: how many views, their effective strengths, how far the targets moved from the renders."""
        a = self.alphas[..., None]
        change = float(((self.targets.cpu() - self.renders).abs() * a).sum() / (3 * a.sum()).clamp_min(1e-6))
        return {"views": len(self), "strengths": [round(s, 4) for s in self.strengths],
                "mean_abs_change_in_coverage": round(change, 5), "seconds": round(self.seconds, 3)}


def make_pseudo_views(
    model,
    components,
    prompt: str,
    center,
    radius: float,
    size: int,
    config: PseudoViewConfig = PseudoViewConfig(),
    *,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], None] | None = None,
) -> PseudoViews:
    """Render config.views views of `model` (a `DeferredPoints`, before refining) at size x size and enhance
    them with the personalised `components`; the targets stay on the model's device."""
    start = time.perf_counter()
    dev = next(model.parameters()).device
    cams = pseudo_view_cameras(center, radius, config.views, size, config)
    strengths = draw_strengths(config.views, config, torch.Generator().manual_seed(seed))
    renders, alphas = render_views(model, cams)
    if progress is not None:
        progress(0, 1, f"img2img pseudo views: {config.views} views rendered, enhancing at strength "
                       f"{min(strengths):.2f}-{max(strengths):.2f}")
    pipe = build_img2img(components)

    def step(done, total):
        if progress is not None:
            progress(done, total, f"img2img pseudo views: denoising step {done}/{total} ({config.views} views)")

    targets = enhance_views(pipe, renders, prompt, strengths, config, seed=seed, progress=step, cancel=cancel)
    return PseudoViews(cams.to(dev), targets.to(dev), renders, alphas, strengths, time.perf_counter() - start, seed,
                       config.weight)
