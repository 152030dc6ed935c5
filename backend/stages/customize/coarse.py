"""Customize-It-3D's coarse stage on Gaussians (DESIGN.md 5.2.3): shading-mode-aware score distillation.

The Gaussians start on the artist's mesh (`gaussians.from_mesh`); the geometry is given, so their centres
and sizes stay fixed and the stage learns colour (SH band 0) and orientation (the surfel normal the
shading modes read). Every step renders one novel view sampled around the subject (polar 70-110 degrees,
distance 1.0-1.5 x the framing distance, fov 60) in a shading mode with its prompt:

- the first `normal_frac` of the steps: camera-space normals as a normal map, "a normal map of sks <class>";
- then until `albedo_frac`: albedo, "a rgb photo of sks <class>";
- then a random mix of albedo / textureless (white albedo, Lambertian shading) / Lambertian (albedo x shading)
  with a random light near the camera.

The reference photos constrain every step: masked RGB L1 (x1000), the mask (alpha MSE) and, when the
reference depths are given (the pipeline ray casts the mesh at the reference cameras), the authors' depth
regulariser as 1 - Pearson correlation between the rendered expected depth and that depth over the
photo's foreground. The centres stay on the mesh, so here it acts on the surfels' orientations (which
Gaussians cover a pixel, and at what depth): a small term, kept because the method has it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..views.cameras import Cameras, orbit
from ..splats.gaussians import Gaussians, quat_to_rotation, rgb_to_sh
from ..common.loss_log import LossLog
from ..splats.render import render
from .config import CoarseConfig
from ..diffusion.sds import SDSConfig, sds_loss, timestep_fraction
from ..diffusion.sds_graphs import SDSGraphs

MODES = ("normal", "albedo", "textureless", "lambertian")
LOSS_WINDOW = 25
"""Losses are read back from the device once per this many steps."""


def depth_correlation_loss(rendered: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """[] mean over views of 1 - Pearson correlation of `rendered` and `target` depths [V, H, W] over `mask`
    (bool [V, H, W]): 0 when one is an increasing affine function of the other, 2 when decreasing. A view
    with fewer than 2 masked pixels contributes 0."""
    m = mask.to(rendered.dtype)
    n = m.sum(dim=(1, 2)).clamp_min(1)
    mean_r = (rendered * m).sum(dim=(1, 2)) / n
    mean_t = (target * m).sum(dim=(1, 2)) / n
    dr = (rendered - mean_r[:, None, None]) * m
    dt = (target - mean_t[:, None, None]) * m
    corr = (dr * dt).sum(dim=(1, 2)) / ((dr**2).sum(dim=(1, 2)) * (dt**2).sum(dim=(1, 2))).clamp_min(1e-12).sqrt()
    return torch.where(n >= 2, 1 - corr, torch.zeros_like(corr)).mean()


def shading_mode(step: int, total: int, config: CoarseConfig, generator: torch.Generator) -> str:
    """The shading mode of step `step` of `total` (see the module docstring)."""
    p = step / max(total, 1)
    if p < config.normal_frac:
        return "normal"
    if p < config.albedo_frac:
        return "albedo"
    i = int(torch.multinomial(torch.tensor(config.mix, dtype=torch.float32), 1, generator=generator))
    return ("albedo", "textureless", "lambertian")[i]


def mode_prompt(mode: str, class_word: str) -> str:
    """The prompt that names what a mode renders."""
    if mode == "normal":
        return f"a normal map of sks {class_word}"
    if mode == "textureless":
        return f"a rgb photo of sks {class_word}, textureless, plain white"
    return f"a rgb photo of sks {class_word}"


def sample_views(center: Tensor, radius: float, n: int, size: int, config: CoarseConfig, generator: torch.Generator) -> Cameras:
    """n cameras (on the CPU, whatever `center`'s device) looking at `center`: azimuth uniform, polar in
    config.polar_deg, distance radius_scale x the distance at which a sphere of `radius` fills the view (fov
    config.fov_deg)."""
    center = torch.as_tensor(center, dtype=torch.float32).detach().cpu()  # cameras are built on the CPU
    cams = []
    for _ in range(n):
        u = torch.rand(3, generator=generator).tolist()
        az = 360.0 * u[0]
        polar = config.polar_deg[0] + (config.polar_deg[1] - config.polar_deg[0]) * u[1]
        scale = config.radius_scale[0] + (config.radius_scale[1] - config.radius_scale[0]) * u[2]
        cams.append(orbit(center, radius, [az], [90.0 - polar], size, size, config.fov_deg, margin=scale))
    return Cameras.cat(cams)


def camera_normals(g: Gaussians, camera: Cameras) -> Tensor:
    """[N, 3] surfel normals (local z) in camera space, OpenCV axes, flipped to face the camera."""
    n = quat_to_rotation(g.quats / g.quats.norm(dim=-1, keepdim=True))[:, :, 2]
    nc = n @ camera.viewmats[0, :3, :3].T
    return torch.where(nc[:, 2:3] > 0, -nc, nc)


def shade(g: Gaussians, camera: Cameras, mode: str, generator: torch.Generator, ambient: float = 0.3) -> Tensor:
    """[N, 3] per-Gaussian colour of a shading mode seen from one camera."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    albedo = g.rgb.clamp(0, 1)
    if mode == "albedo":
        return albedo
    nc = camera_normals(g, camera)
    if mode == "normal":
        return (nc * torch.tensor([1.0, -1.0, -1.0], device=nc.device) + 1) / 2  # x right, y up, z to viewer
    # light from around the camera: the view direction (-z) jittered
    light = torch.tensor([0.0, 0.0, -1.0]) + 0.5 * torch.randn(3, generator=generator)
    light = torch.nn.functional.normalize(light, dim=0).to(nc.device)
    diffuse = (nc @ light).clamp_min(0)[:, None]
    shading = ambient + (1 - ambient) * diffuse
    return shading.expand(-1, 3) if mode == "textureless" else albedo * shading


def render_colors(g: Gaussians, colors: Tensor, cameras: Cameras, background=(1.0, 1.0, 1.0)):
    """Render `g` with per-Gaussian colours [N, 3] instead of its SH -> RenderOutput."""
    flat = Gaussians(g.means, g.quats, g.log_scales, g.logit_opacities, rgb_to_sh(colors)[:, None])
    return render(flat, cameras, background=background, sh_degree=0)


@dataclass(frozen=True)
class CoarseResult:
    gaussians: Gaussians
    losses: tuple[float, ...]
    modes: dict
    """How many steps each shading mode had."""
    skipped: int
    """SDS steps whose guidance was not finite (skipped by the NaN guard)."""
    seconds: float
    sds_graphs: dict = None
    """report.json's account of the SDS steps' CUDA graphs (`SDSGraphs.report`)."""


def coarse_stage(
    gaussians: Gaussians,
    components,
    images: Tensor,  # [R, H, W, 3] reference photos in [0, 1]
    masks: Tensor,  # [R, H, W] bool
    cameras: Cameras,  # R reference cameras
    *,
    class_word: str,
    center: Tensor,
    radius: float,
    config: CoarseConfig = CoarseConfig(),
    sds: SDSConfig = SDSConfig(),
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], None] | None = None,
    depths: Tensor | None = None,  # [R, H, W] the mesh's depth at the references (0 where it misses), or None
) -> CoarseResult:
    """Optimise the Gaussians' colours and orientations; returns the new Gaussians (the input is untouched)."""
    from ..diffusion.text import encode_prompts

    if sds.schedule != "random" and config.steps < 2:
        raise ValueError("linear and sqrt timestep schedules need at least 2 steps")
    dev = gaussians.device
    gen = torch.Generator().manual_seed(seed)
    sh0 = torch.nn.Parameter(gaussians.sh[:, :1].detach().clone())
    quats = torch.nn.Parameter(gaussians.quats.detach().clone())
    opt = torch.optim.Adam([{"params": [sh0], "lr": config.lr_color}, {"params": [quats], "lr": config.lr_quat}])
    embeds = {m: encode_prompts(components, [mode_prompt(m, class_word)]) for m in ("normal", "albedo", "textureless")}
    embeds["lambertian"] = embeds["albedo"]
    uncond = encode_prompts(components, [""])
    images, masks = images.to(dev), masks.to(dev)
    use_depth = depths is not None and config.depth_weight > 0
    if depths is not None:
        if tuple(depths.shape) != tuple(masks.shape):
            raise ValueError(f"depths must have the masks' shape {tuple(masks.shape)}, got {tuple(depths.shape)}")
        depths = depths.to(dev, torch.float32)
        depth_mask = masks & (depths > 0)  # the photo's foreground where the mesh is hit
    fg = masks[..., None].float()
    graphs = SDSGraphs(components, sds)
    counts, start = {m: 0 for m in MODES}, time.perf_counter()
    skipped = torch.zeros((), dtype=torch.long, device=dev)
    log = LossLog(dev, "coarse loss")
    for step in range(config.steps):
        if cancel is not None:
            cancel()
        g = Gaussians(gaussians.means, quats, gaussians.log_scales, gaussians.logit_opacities,
                      torch.cat([sh0, gaussians.sh[:, 1:]], 1))
        # 1. reference views: masked L1 on the albedo render, and the mask
        ref = render(g, cameras, background=(1.0, 1.0, 1.0), sh_degree=0, with_depth=use_depth)
        l1 = ((ref.rgb - images).abs() * fg).sum() / (3 * fg.sum()).clamp_min(1)
        mask_loss = ((ref.alpha - masks.float()) ** 2).mean()
        loss = config.reference_weight * l1 + config.mask_weight * mask_loss
        if use_depth:
            loss = loss + config.depth_weight * depth_correlation_loss(ref.depth, depths, depth_mask)
        # 2. a novel view in this step's shading mode, scored by the diffusion model
        mode = shading_mode(step, config.steps, config, gen)
        counts[mode] += 1
        cam = sample_views(center, radius, 1, config.resolution, config, gen).to(dev)
        colors = shade(g, cam, mode, gen, config.ambient)
        bg = (0.0, 0.0, 0.0) if mode == "normal" else (1.0, 1.0, 1.0)  # normal maps have black backgrounds
        view = render_colors(g, colors, cam, background=bg).rgb.permute(0, 3, 1, 2)  # [1, 3, H, W]
        frac = timestep_fraction(sds.schedule, step, config.steps, sds.t_range, gen)
        s = sds_loss(components, view, embeds[mode], uncond, sds, fraction=frac, generator=gen, graphs=graphs)
        skipped += (~s.ok).long()
        loss = loss + config.sds_weight * s.loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        log.record(torch.stack([loss, l1]), step + 1, config.steps, LOSS_WINDOW)  # read back once per window
        if progress is not None:
            l1_shown = log.latest_text(1, "reference L1")
            progress(step + 1, config.steps, f"coarse SDS step {step + 1}/{config.steps} ({mode}, t={s.timestep}), {l1_shown}")
    out = Gaussians(gaussians.means.detach(), quats.detach(), gaussians.log_scales.detach(),
                    gaussians.logit_opacities.detach(), torch.cat([sh0.detach(), gaussians.sh[:, 1:].detach()], 1))
    return CoarseResult(out, tuple(log.values), counts, int(skipped), time.perf_counter() - start, graphs.report())
