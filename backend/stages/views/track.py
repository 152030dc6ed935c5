"""Backward tracking (TIRE, Track): for every pixel of a target view, is it observed by a known view?

TIRE tracks from the target views back to the source with CoTracker, because target -> source gives whole,
well-shaped infill masks where source -> target gives grainy ones. With the asset's geometry known, the
backward track is exact reprojection: lift the target pixel with its rendered depth, project it into each
known view, keep it if the known view's own depth agrees (not occluded there), the surface faces that view
(not grazing) and the known image shows the subject there (alpha). Observed pixels take the known view's
colour; the rest of the target's foreground is the infill mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import TrackConfig
from .cameras import Cameras


@dataclass
class KnownView:
    """A view whose colours are trusted: a reference photo, or a finished (anchor) target view."""

    image: Tensor
    """[H, W, 4] straight-alpha RGBA in [0, 1]."""
    depth: Tensor
    """[H, W] the asset's z-depth seen from this view (0 = background), from the mesh passes."""
    camera: Cameras
    """One camera of the image's size."""

    def __post_init__(self) -> None:
        H, W = self.camera.height, self.camera.width
        if len(self.camera) != 1 or tuple(self.image.shape) != (H, W, 4) or tuple(self.depth.shape) != (H, W):
            raise ValueError(f"a known view needs one camera, image [H, W, 4] and depth [H, W] with H, W = {H}, {W}; "
                             f"got {len(self.camera)} cameras, image {tuple(self.image.shape)}, depth {tuple(self.depth.shape)}")


def known_views(references, caster) -> list[KnownView]:
    """The reference photos (protocol `Reference`s) as known views, each with the asset's depth seen from its
    camera (`caster`: a `mesh_passes.Raycaster` of the asset)."""
    from ..common.images import float_tensor

    views = []
    for ref in references:
        cam = Cameras.from_protocol([ref.camera])
        views.append(KnownView(float_tensor(ref.image), caster.passes(cam).depth[0], cam))
    return views


@dataclass
class TrackResult:
    observed: Tensor
    """[C, H, W] bool: a known view sees the target pixel's surface point."""
    colour: Tensor
    """[C, H, W, 3] float32 colour taken from the best known view (0 where not observed)."""
    source: Tensor
    """[C, H, W] int64 index of the known view the colour came from (-1 where not observed)."""
    cosine: Tensor
    """[C, H, W] float32 cosine between the normal and the direction to that view (0 where not observed)."""
    infill: Tensor
    """[C, H, W] bool: target foreground that no known view observes (what the inpainter fills)."""


def project(points: Tensor, cameras: Cameras) -> tuple[Tensor, Tensor]:
    """points [..., 3] world, broadcast over cameras -> ([K, ..., 2] pixels, [K, ...] camera z)."""
    R, t = cameras.viewmats[:, :3, :3], cameras.viewmats[:, :3, 3]
    flat = points.reshape(-1, 3)
    cam = torch.einsum("kij,nj->kni", R, flat) + t[:, None, :]
    z = cam[..., 2]
    zs = z.clamp_min(1e-8)
    u = cam[..., 0] / zs * cameras.Ks[:, None, 0, 0] + cameras.Ks[:, None, 0, 2]
    v = cam[..., 1] / zs * cameras.Ks[:, None, 1, 1] + cameras.Ks[:, None, 1, 2]
    shape = (len(cameras),) + points.shape[:-1]
    return torch.stack([u, v], -1).reshape(*shape, 2), z.reshape(shape)


def sample_image(img: Tensor, uv: Tensor, mode: str) -> Tensor:
    """img [H, W, D], uv [N, 2] pixel coordinates (pixel centres at integers) -> [N, D]."""
    H, W = img.shape[:2]
    grid = torch.stack([(uv[:, 0] + 0.5) / W * 2 - 1, (uv[:, 1] + 0.5) / H * 2 - 1], -1)
    out = F.grid_sample(img.permute(2, 0, 1)[None], grid[None, None], mode=mode, align_corners=False, padding_mode="border")
    return out[0, :, 0].T


def track_backward(
    points: Tensor,
    normals: Tensor,
    mask: Tensor,
    known: list[KnownView],
    config: TrackConfig = TrackConfig(),
    device: str | torch.device | None = None,
) -> TrackResult:
    """Backward-track C target views against the known views (each at its own resolution).

    points, normals: [C, H, W, 3] world hit points and unit normals of the target pixels (mesh passes);
    mask: [C, H, W] bool target foreground. `device`: where the reprojections run (a CUDA job's GPU: the
    points of a ring of 512 px views against dozens of anchors are tens of millions of lookups); the result
    is on the inputs' device either way.
    """
    home = points.device
    dev = torch.device(device) if device is not None else home
    if dev != home:
        result = track_backward(points.to(dev), normals.to(dev), mask.to(dev),
                                [KnownView(k.image.to(dev), k.depth.to(dev), k.camera.to(dev)) for k in known], config)
        return TrackResult(*(getattr(result, f).to(home) for f in ("observed", "colour", "source", "cosine", "infill")))
    C, H, W = mask.shape
    if points.shape != (C, H, W, 3) or normals.shape != (C, H, W, 3):
        raise ValueError(f"points and normals must be [C, H, W, 3] = [{C}, {H}, {W}, 3], got {tuple(points.shape)}, {tuple(normals.shape)}")
    best_cos = torch.zeros(C, H, W, device=home)
    colour = torch.zeros(C, H, W, 3, device=home)
    source = torch.full((C, H, W), -1, dtype=torch.long, device=home)
    idx = mask.nonzero(as_tuple=True)
    p, n = points[idx], normals[idx]  # [M, 3]
    cos_min = math.cos(math.radians(config.max_angle_deg))
    b = config.border_px
    best = torch.zeros(len(p), device=home)
    best_rgb = torch.zeros(len(p), 3, device=home)
    best_k = torch.full((len(p),), -1, dtype=torch.long, device=home)
    for k, view in enumerate(known):
        cam = view.camera
        uv, z = project(p, cam)
        uv, z = uv[0], z[0]  # [M, 2], [M]
        center = torch.linalg.inv(cam.viewmats[0])[:3, 3]
        cos = (F.normalize(center - p, dim=-1) * n).sum(-1)
        Hk, Wk = cam.height, cam.width
        inside = (z > 1e-6) & (uv[:, 0] >= b - 0.5) & (uv[:, 0] <= Wk - 0.5 - b) & (uv[:, 1] >= b - 0.5) & (uv[:, 1] <= Hk - 0.5 - b)
        ok = inside & (cos > cos_min)
        if not ok.any():
            continue
        sel = ok.nonzero(as_tuple=True)[0]
        d_known = sample_image(view.depth[..., None], uv[sel], "nearest")[:, 0]
        rgba = sample_image(view.image, uv[sel], "bilinear")
        visible = (d_known > 0) & ((z[sel] - d_known).abs() <= config.depth_tolerance * z[sel]) & (rgba[:, 3] >= config.min_alpha)
        sel, rgba = sel[visible], rgba[visible]
        better = cos[sel] > best[sel]
        sel, rgba = sel[better], rgba[better]
        best[sel] = cos[sel]
        best_rgb[sel] = rgba[:, :3]
        best_k[sel] = k
    best_cos[idx], colour[idx], source[idx] = best, best_rgb, best_k
    observed = source >= 0
    return TrackResult(observed, colour, source, best_cos, mask & ~observed)
