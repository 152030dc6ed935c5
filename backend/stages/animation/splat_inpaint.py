"""What no photo sees on a splat-only asset, inpainted (TIRE on Gaussians): the subject-personalised inpainter
fills target views of the Gaussians, and the unobserved Gaussians take the filled views' colours.

1. An orbit of target views around the Gaussians (the asset's first frame: their colours are shared by every
   frame), rendered with the refitted colours (photos' colours where seen, the affine map elsewhere).
2. The inpainting mask of each view: where the Gaussians no photo saw make most of the pixel (an indicator
   colour splatted as the colours are: 1 for unobserved Gaussians, 0 for observed).
3. The views are inpainted at the pipeline's strength in one pass (no progressive rings: there is no surface
   to carry a finished view's pixels into the next by; the Gaussians' identity carries them instead).
4. Each unobserved Gaussian the filled views see (centre in front of the rendered depth) takes their colour,
   weighted by resolution (1 / z^2); the photos' Gaussians keep the photos' colours.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..splats.gaussians import Gaussians
from ..splats.render import render
from ..views.cameras import Cameras, bounding_sphere, orbit
from .splat_colours import SH_C0, SplatObservation, observe_in_views


@dataclass(frozen=True)
class SplatViews:
    """The target views' orbit (TIRE's defaults: 24 azimuths x 2 elevations at 512 px)."""

    resolution: int = 512
    azimuths: int = 24
    elevations_deg: tuple[float, ...] = (0.0, 30.0)
    fov_deg: float = 40.0
    strength: float = 0.3


def _indicator(g: Gaussians, unobserved: np.ndarray) -> Gaussians:
    """The same Gaussians coloured 1 (unobserved) or 0 (observed), degree 0 only."""
    u = torch.as_tensor(unobserved, dtype=torch.float32, device=g.means.device)[:, None].expand(-1, 3)
    sh = torch.zeros_like(g.sh)
    sh[:, 0] = (u - 0.5) / SH_C0
    return Gaussians(g.means, g.quats, g.log_scales, g.logit_opacities, sh)


def inpaint_unobserved(arrays: dict, sh: np.ndarray, photos: SplatObservation, inpainter, views: SplatViews,
                       device: str | torch.device = "cpu", progress=None) -> tuple[np.ndarray, dict]:
    """arrays: the first frame's Gaussians (write_ply arrays); sh: their refitted SH [N, K, 3]; photos: what the
    photos observed. Returns the SH with the unobserved Gaussians' base colour from the inpainted views, and a
    report."""
    g = Gaussians.from_arrays({**arrays, "sh": sh}, device=device)
    center, radius = bounding_sphere(arrays["means"])
    azimuths = [360.0 * i / views.azimuths for i in range(views.azimuths)]
    cams = orbit(center, radius, azimuths, list(views.elevations_deg), views.resolution, views.resolution,
                 views.fov_deg).to(device)
    unobserved = photos.weight <= 0
    with torch.no_grad():
        out = render(g, cams, background=(1.0, 1.0, 1.0), sh_degree=0)
        ind = render(_indicator(g, unobserved), cams, background=(0.0, 0.0, 0.0), sh_degree=0)
    alpha = out.alpha.cpu()
    valid = alpha > 0.5
    share = (ind.rgb[..., 0].cpu() / alpha.clamp_min(1e-6)).clamp(0, 1)  # of the pixel's coverage, unobserved
    masks = valid & (share > 0.5)
    images = out.rgb.clamp(0, 1).cpu()
    filled = inpainter(images, masks, views.strength, valid=valid) if masks.any() else images
    rgba = torch.cat([filled, valid[..., None].float()], -1)
    seen_views = observe_in_views([(g, cams[i : i + 1], rgba[i]) for i in range(len(cams))], device=device)
    take = unobserved & (seen_views.weight > 0)
    out_sh = sh.copy()
    out_sh[take, 0] = (seen_views.colour[take] - 0.5) / SH_C0
    out_sh[take, 1:] = 0.0
    if progress is not None:
        progress(len(cams), len(cams), f"{int(masks.sum())} pixels inpainted in {len(cams)} views")
    return out_sh.astype(np.float32), {
        "views": len(cams), "resolution": views.resolution, "strength": views.strength,
        "pixels_inpainted": int(masks.sum()), "from_inpainted_views": int(take.sum()),
        "unobserved_not_in_any_view": int((unobserved & ~take).sum()),
        "order": "every view in one pass (no progressive rings for splat-only input)"}
