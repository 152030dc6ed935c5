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

from ..common.images import area_resize
from ..views.cameras import Cameras
from ..splats.config import FitConfig
from ..splats.fit import fit
from ..splats.gaussians import Gaussians, from_mesh
from ....protocol.assets import Mesh
from ..splats.render import render
from .config import ResplatConfig
from ..views.track import KnownView


@dataclass
class ResplatResult:
    views: Tensor
    """[C, H, W, 4] the target views after the consistency rounds."""
    gaussians: Gaussians
    disagreed: list[int]
    """Inpainted pixels that disagreed with the fit, each consistency round."""
    reinpainted: bool
    """Whether those pixels were re-inpainted (a diffusion inpainter) or only averaged with the fit's render
    (the classical fallback cannot re-inpaint at low strength)."""
    fit_seconds: float

    def consistency_report(self) -> dict:
        """report.json's account of the consistency rounds, saying which of the two happened."""
        return {
            "consistency": "re-inpainted at low strength" if self.reinpainted else
                           "averaged with the fit's render (classical fallback: no re-inpainting)",
            "disagreeing_pixels_per_round": list(self.disagreed),
            "reinpainted_pixels_per_round": list(self.disagreed) if self.reinpainted else [],
            "fit_seconds": round(self.fit_seconds, 2),
        }


def resplat(
    mesh: Mesh,
    views: Tensor,
    cameras: Cameras,
    infill: Tensor,
    sources: list[KnownView],
    inpainter,
    config: ResplatConfig = ResplatConfig(),
    fit_config: FitConfig = FitConfig(steps=2000, refine_start=200, refine_every=100, reset_every=100_000),
    device: str | torch.device = "cpu",
    progress: Callable[[str, int, int, str, Tensor | None], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
) -> ResplatResult:
    """views: [C, H, W, 4] target views; infill: [C, H, W] their inpainted pixels; sources at any size."""
    import time

    H, W = cameras.height, cameras.width
    fw = config.fit_resolution if 0 < config.fit_resolution < W else W
    fh = max(1, round(H * fw / W))
    src = [(area_resize(s.image, fh, fw), s.camera.resized(fw, fh)) for s in sources]
    all_cams = Cameras.cat([cameras.resized(fw, fh)] + [c for _, c in src])
    src_images = torch.stack([i for i, _ in src]) if src else torch.zeros(0, fh, fw, 4)
    target_w = torch.where(infill, torch.tensor(config.infill_weight), torch.tensor(1.0))
    weights = torch.cat([area_resize(target_w[..., None], fh, fw)[..., 0], torch.full((len(src), fh, fw), config.source_weight)])
    g = from_mesh(mesh, count=config.gaussians, seed=fit_config.seed).to(device)
    views = views.clone()
    disagreed = []
    reinpaint = bool(getattr(inpainter, "personalised", False))
    per_round = max(1, fit_config.steps // (config.rounds + 1))
    t_fit = 0.0
    for r in range(config.rounds + 1):
        steps = per_round if r < config.rounds else fit_config.steps - per_round * config.rounds
        fit_cfg = replace(fit_config, steps=max(1, steps), seed=fit_config.seed + r)
        images = torch.cat([area_resize(views, fh, fw), src_images])

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
        if reinpaint:
            blend = inpainter(blend, disagree, config.reinpaint_strength, valid=mask)
        views = torch.cat([blend * mask[..., None], views[..., 3:]], dim=-1)
        disagreed.append(int(disagree.sum()))
        if progress is not None:
            done = "re-inpainted" if reinpaint else "averaged with the fit"
            progress("consistency", r + 1, config.rounds,
                     f"round {r + 1}: {disagreed[-1]} inpainted pixels disagreed with the fit, {done}", views[0])
    return ResplatResult(views, g.detach(), disagreed, reinpaint, t_fit)
