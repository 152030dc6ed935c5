"""Which surface points a view sees: projection, the depth test on the bilinear footprint, the view angle.

One test for every stage that asks it (the fidelity stage's texels in the reference photos, the view planner's
texels in candidate views): a point is seen where it projects inside the image, faces the camera within
the allowed angle, and the view's own depth map agrees at all four pixels of its bilinear footprint (so no
colour ever comes across an occlusion edge or from the background).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .cameras import Cameras


@dataclass
class Seen:
    """The points one view sees, and where."""

    index: Tensor
    """[S] long indices into the points given."""
    x: Tensor
    """[S] float32 pixel column (pixel centres at integers)."""
    y: Tensor
    """[S] float32 pixel row."""
    cos: Tensor
    """[S] cosine between the point's normal and the direction to the camera."""
    z: Tensor
    """[S] camera depth."""


def bilinear_taps(x: Tensor, y: Tensor) -> tuple[list[tuple[Tensor, Tensor]], list[Tensor]]:
    """The four pixels of a bilinear lookup at (x, y) [S] and their weights [S]."""
    x0, y0 = torch.floor(x).long(), torch.floor(y).long()
    fx, fy = x - x0, y - y0
    taps = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]
    return taps, [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]


def sample_bilinear(img: Tensor, seen: Seen) -> Tensor:
    """img [H, W, D] (or [H, W]) sampled at the points `seen` -> [S, D] (or [S])."""
    taps, weights = bilinear_taps(seen.x, seen.y)
    if img.ndim == 2:
        return sum(w * img[yy, xx] for w, (yy, xx) in zip(weights, taps))
    return sum(w[:, None] * img[yy, xx] for w, (yy, xx) in zip(weights, taps))


def seen_by(points: Tensor, normals: Tensor, camera: Cameras, depth: Tensor, mask: Tensor, min_cosine: float,
            depth_tolerance_px: float = 2.0, alpha: Tensor | None = None, min_alpha: float = 0.5) -> Seen:
    """The points [N, 3] (unit normals [N, 3]; a zero normal is never seen) that one camera sees, given the
    mesh's depth [H, W] and mask [H, W] from that camera; `alpha` [H, W] (a photo's) must be >= min_alpha at
    the whole footprint too."""
    if len(camera) != 1:
        raise ValueError(f"seen_by takes one camera, got {len(camera)}")
    H, W = camera.height, camera.width
    dev = points.device  # every tensor given on one device (the ray query's)
    vm, K = camera.viewmats[0].to(dev, torch.float32), camera.Ks[0].to(dev, torch.float32)
    R, t = vm[:3, :3], vm[:3, 3]
    cam = points @ R.T + t
    z = cam[:, 2]
    proj = cam @ K.T
    x, y = proj[:, 0] / z.clamp_min(1e-9), proj[:, 1] / z.clamp_min(1e-9)
    centre = -(R.T @ t)
    cos = (normals * F.normalize(centre - points, dim=-1)).sum(-1)
    ok = (z > 1e-6) & (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1) & (cos >= max(min_cosine, 1e-6))
    sel = ok.nonzero()[:, 0]
    xs, ys = x[sel].clamp(max=W - 1 - 1e-4), y[sel].clamp(max=H - 1 - 1e-4)
    zs, cs = z[sel], cos[sel]
    # A pixel spans z / f of surface across, more along a slope: tolerate depth_tolerance_px of those.
    tan = (1 - cs**2).clamp_min(0).sqrt() / cs
    tol = depth_tolerance_px * zs / K[0, 0] * (1 + tan)
    taps, _ = bilinear_taps(xs, ys)
    visible = torch.ones(len(sel), dtype=torch.bool, device=dev)
    for yy, xx in taps:
        visible &= mask[yy, xx] & ((depth[yy, xx] - zs).abs() <= tol)
        if alpha is not None:
            visible &= alpha[yy, xx] >= min_alpha
    return Seen(sel[visible], xs[visible], ys[visible], cs[visible], zs[visible])
