"""Consistency and resplat (TIRE, Resplat): make the inpainted views agree, then fit Gaussians to all views.

The authors refine view consistency with a multi-view diffusion model whose latent blending freezes the
source view. Without one we alternate: fit Gaussians to every view (source views weigh most, inpainted
pixels least), render the fit, and where a view's inpainted pixels disagree with the fit, re-inpaint them at
low strength from the blend of view and render (with the classical inpainter, the blend itself: averaging
across views is what consistency means there).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
from torch import Tensor

from ..views.cameras import Cameras
from ..splats.fit import FitConfig, fit
from ..splats.gaussians import Gaussians, from_mesh
from ..views.meshes import MeshLike
from ..splats.render import render
from ..views.track import KnownView


@dataclass(frozen=True)
class ResplatConfig:
    rounds: int = 1
    """Consistency rounds before the final fit."""
    reinpaint_strength: float = 0.15
    disagree_threshold: float = 0.08
    """Mean absolute RGB difference above which an inpainted pixel disagrees with the fitted render."""
    source_weight: float = 4.0
    infill_weight: float = 0.5
    gaussians: int = 60_000
    fit_size: int = 0
    """Width the views are downsampled to for the fit (0: their own); renders for the consistency check
    are at full size either way."""
    fit: FitConfig = FitConfig(steps=2000, refine_start=200, refine_every=100, reset_every=100_000)


@dataclass
class ResplatResult:
    views: Tensor
    """[C, H, W, 4] the target views after the consistency rounds."""
    gaussians: Gaussians
    reinpainted: list[int]
    """Pixels re-inpainted in each round."""
    fit_seconds: float


def _area(images: Tensor, width: int, height: int) -> Tensor:
    """[B, H, W, D] -> [B, height, width, D] by area averaging (a no-op at the same size)."""
    if images.shape[1:3] == (height, width):
        return images
    return torch.nn.functional.interpolate(images.permute(0, 3, 1, 2), size=(height, width), mode="area").permute(0, 2, 3, 1)


def _resize_view(view: KnownView, width: int, height: int) -> tuple[Tensor, Cameras]:
    return _area(view.image[None], width, height)[0], view.camera.resized(width, height)


def resplat(
    mesh: MeshLike,
    views: Tensor,
    cameras: Cameras,
    infill: Tensor,
    sources: list[KnownView],
    inpainter,
    config: ResplatConfig = ResplatConfig(),
    device: str | torch.device = "cpu",
    progress: Callable[[str, int, int, str, Tensor | None], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> ResplatResult:
    """views: [C, H, W, 4] target views; infill: [C, H, W] their inpainted pixels; sources at any size."""
    import time

    H, W = cameras.height, cameras.width
    fw = config.fit_size if 0 < config.fit_size < W else W
    fh = max(1, round(H * fw / W))
    src = [_resize_view(s, fw, fh) for s in sources]
    all_cams = Cameras.cat([cameras.resized(fw, fh)] + [c for _, c in src])
    src_images = torch.stack([i for i, _ in src]) if src else torch.zeros(0, fh, fw, 4)
    target_w = torch.where(infill, torch.tensor(config.infill_weight), torch.tensor(1.0))
    weights = torch.cat([_area(target_w[..., None], fw, fh)[..., 0], torch.full((len(src), fh, fw), config.source_weight)])
    g = from_mesh(mesh, count=config.gaussians, seed=config.fit.seed).to(device)
    views = views.clone()
    reinpainted = []
    per_round = max(1, config.fit.steps // (config.rounds + 1))
    t_fit = 0.0
    for r in range(config.rounds + 1):
        steps = per_round if r < config.rounds else config.fit.steps - per_round * config.rounds
        fit_cfg = replace(config.fit, steps=max(1, steps), seed=config.fit.seed + r)
        images = torch.cat([_area(views, fw, fh), src_images])

        def on_step(step: int, total: int, loss: float, r=r) -> None:
            if progress is not None and (step % 50 == 0 or step == total):
                progress("resplat", step, total, f"round {r + 1}/{config.rounds + 1}: fit step {step}/{total}, loss {loss:.4f}", None)

        t0 = time.monotonic()
        g = fit(g, images, all_cams, weights, fit_cfg, progress=on_step, check_cancel=check_cancel).gaussians
        t_fit += time.monotonic() - t0
        if r == config.rounds:
            break
        # re-inpaint the inpainted pixels that disagree with the fit
        with torch.no_grad():
            out = render(g, cameras.to(g.device), background=(0.0, 0.0, 0.0))
        rendered = (out.rgb / out.alpha[..., None].clamp_min(1e-4)).clamp(0, 1).cpu()
        mask = views[..., 3] > 0.5
        diff = (rendered - views[..., :3]).abs().mean(-1)
        disagree = infill & mask & (diff > config.disagree_threshold)
        blend = torch.where(disagree[..., None], 0.5 * (views[..., :3] + rendered), views[..., :3])
        if getattr(inpainter, "personalised", False):
            blend = inpainter(blend, disagree, config.reinpaint_strength, valid=mask)
        views = torch.cat([blend * mask[..., None], views[..., 3:]], dim=-1)
        reinpainted.append(int(disagree.sum()))
        if progress is not None:
            progress("consistency", r + 1, config.rounds, f"round {r + 1}: {int(disagree.sum())} inpainted pixels disagreed with the fit", views[0])
    return ResplatResult(views, g.detach(), reinpainted, t_fit)
