"""The refine stage's optimisation (Customize-It-3D, DESIGN.md 5.2.4): point colours, point features and the
deferred decoder, by Adam (lr 1e-3, decayed 0.1x over 1000 steps) on the masked L1 to the reference photos
(x1000), an optional novel-view loss (SDS, supplied by the pipeline) and the colour-drift regulariser."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..common.loss_log import LossLog
from ..diffusion.config import SDSConfig
from ..diffusion.sds import sds_loss, timestep_fraction
from ..diffusion.sds_graphs import SDSGraphs
from ..views.cameras import Cameras
from .coarse import sample_views
from .config import CoarseConfig, PointRefineConfig
from .deferred import DeferredPoints

LOSS_WINDOW = 25
"""Losses are read back from the device once per this many steps (a read each step stalls the GPU)."""


@dataclass(frozen=True)
class PointRefineResult:
    losses: tuple[float, ...]
    """Total loss of every step."""
    reference_l1: float
    """Masked L1 to the references after the last step (unweighted)."""
    seconds: float


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """pred, target [C, H, W, 3], mask [C, H, W] bool -> [] mean absolute error over the masked pixels."""
    m = mask[..., None].to(pred.dtype)
    return ((pred - target).abs() * m).sum() / (3 * m.sum()).clamp_min(1)


def refine_points(
    model: DeferredPoints,
    images: Tensor,  # [C, H, W, 3] reference photos in [0, 1], on the model's device
    masks: Tensor,  # [C, H, W] bool photo foreground
    cameras: Cameras,  # the C reference cameras
    config: PointRefineConfig = PointRefineConfig(),
    *,
    novel_loss: Callable[[DeferredPoints, int], Tensor] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], None] | None = None,
    backend: str = "auto",
) -> PointRefineResult:
    """Optimise `model` in place. `novel_loss(model, step)` returns the weighted [] loss on novel views (SDS or
    pseudo views: `sds_novel_loss`, `pseudo_views.PseudoViews.weighted_loss`), added as it is."""
    if images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3] or len(cameras) != images.shape[0]:
        raise ValueError(f"images must be [C, H, W, 3], masks [C, H, W] and cameras C, got {tuple(images.shape)}, "
                         f"{tuple(masks.shape)}, {len(cameras)}")
    if not masks.any():
        raise ValueError("masks have no foreground pixel: nothing to refine against")
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    gamma = config.lr_decay ** (1.0 / config.lr_decay_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(gamma ** s, config.lr_decay))
    log = LossLog(images.device, "refine loss")
    # a novel-view loss that says its camera up front renders with the references (same size) in one call
    batched = (hasattr(novel_loss, "camera") and hasattr(novel_loss, "from_render")
               and getattr(novel_loss, "size", None) == (cameras.width, cameras.height))
    start = time.perf_counter()
    for step in range(config.steps):
        if cancel is not None:
            cancel()
        novel_cam = novel_loss.camera(step) if batched else None
        if novel_cam is None:
            rgb, _ = model(cameras, backend)
        else:  # the references and this step's novel view in one splat-and-decode call
            rgb_all, alpha_all = model(Cameras.cat([cameras, novel_cam.to(cameras.device)]), backend)
            rgb = rgb_all[: len(cameras)]
        l1 = masked_l1(rgb, images, masks)
        loss = config.reference_weight * l1 + config.drift_weight * model.drift()
        if novel_cam is not None:
            loss = loss + novel_loss.from_render(rgb_all[len(cameras):], alpha_all[len(cameras):], step)
        elif novel_loss is not None:
            loss = loss + novel_loss(model, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        log.record(torch.stack([loss, l1]), step + 1, config.steps, LOSS_WINDOW)  # read back once per window
        if progress is not None:
            l1_shown = log.latest_text(1, "reference L1")
            progress(step + 1, config.steps, f"point refine step {step + 1}/{config.steps}, {l1_shown}")
    with torch.no_grad():
        rgb, _ = model(cameras, backend)
        final = float(masked_l1(rgb, images, masks))
    return PointRefineResult(tuple(log.values), final, time.perf_counter() - start)


class SDSNovelViews:
    """The refine stage's novel-view loss with score distillation: one random view a step around the subject
    (size x size, the coarse stage's view distribution), decoded and composited over white by the splats'
    coverage (no ray casting in the loop), scored by `weight` x its SDS loss with the personalised model, the
    timestep annealed over `steps` as `sds.schedule` says. `camera(step)` then `from_render(rgb, alpha, step)`
    let the refine loop decode the view in the references' call; `loss(model, step)` renders it alone."""

    def __init__(self, components, prompt_text: str, sds: SDSConfig, center: Tensor, radius: float, size: int,
                 steps: int, weight: float, seed: int = 0):
        from ..diffusion.text import encode_prompts

        self.components, self.sds, self.center, self.radius = components, sds, center, radius
        self.size, self.steps, self.weight = (size, size), steps, weight
        self.embeds, self.uncond = encode_prompts(components, [prompt_text]), encode_prompts(components, [""])
        self.gen = torch.Generator().manual_seed(seed)
        self.views = CoarseConfig()
        self.graphs = SDSGraphs(components, sds)

    def camera(self, step: int) -> Cameras:
        return sample_views(self.center, self.radius, 1, self.size[0], self.views, self.gen)

    def from_render(self, rgb: Tensor, alpha: Tensor, step: int) -> Tensor:
        view = (rgb * alpha[..., None] + (1 - alpha[..., None])).permute(0, 3, 1, 2)
        frac = timestep_fraction(self.sds.schedule, step, self.steps, self.sds.t_range, self.gen)
        return self.weight * sds_loss(self.components, view, self.embeds, self.uncond, self.sds, fraction=frac,
                                      generator=self.gen, graphs=self.graphs).loss

    def __call__(self, model: DeferredPoints, step: int) -> Tensor:
        cam = self.camera(step)
        rgb, alpha = model(cam.to(next(model.parameters()).device))
        return self.from_render(rgb, alpha, step)

    def report(self) -> dict:
        return self.graphs.report()


def sds_novel_loss(components, prompt_text: str, sds: SDSConfig, center: Tensor, radius: float, size: int,
                   steps: int, weight: float, seed: int = 0) -> SDSNovelViews:
    """The refine stage's SDS novel-view loss (`SDSNovelViews`)."""
    return SDSNovelViews(components, prompt_text, sds, center, radius, size, steps, weight, seed)


@torch.no_grad()
def decode_views(model: DeferredPoints, cameras: Cameras, cancel: Callable[[], None] | None = None) -> Tensor:
    """[V, H, W, 3] the decoder's images at V cameras, one view per call, in [0, 1], on the CPU."""
    dev = next(model.parameters()).device
    out = []
    for i in range(len(cameras)):
        rgb, _ = model(cameras[i : i + 1].to(dev))
        out.append(rgb.clamp(0, 1).cpu())
        if cancel is not None:
            cancel()
    return torch.cat(out)
