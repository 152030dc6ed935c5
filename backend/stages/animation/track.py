"""Backward tracking across time (TIRE Track, 4D): a target pixel names a surface point by (triangle,
barycentric); each reference seen at frame t is tracked against that point's position and normal at t, so
an observation carries to every frame exactly."""

from __future__ import annotations

import torch

from ..views.track import KnownView, TrackConfig, TrackResult, track_backward
from .poses import Animation


def track_over_frames(
    tri,          # [C, H, W] int64 triangle under each target pixel (-1 on background)
    bary,         # [C, H, W, 3] barycentrics of the hit
    mask,         # [C, H, W] bool target foreground
    known: list[KnownView],
    known_frames: list[int | None],
    animation: Animation,
    config: TrackConfig = TrackConfig(),
) -> TrackResult:
    """track_backward with each known view posed at its own frame; the best view (largest cosine) wins."""
    C, H, W = mask.shape
    best_cos = torch.zeros(C, H, W)
    colour = torch.zeros(C, H, W, 3)
    source = torch.full((C, H, W), -1, dtype=torch.long)
    idx = mask.nonzero(as_tuple=True)
    t, b = tri[idx].numpy(), bary[idx].double().numpy()
    for frame in sorted(set(known_frames), key=lambda f: (f is not None, f or 0)):
        members = [k for k, f in enumerate(known_frames) if f == frame]
        pts = torch.zeros(C, H, W, 3)
        nrm = torch.zeros(C, H, W, 3)
        pts[idx] = torch.as_tensor(animation.points(frame, t, b), dtype=torch.float32)
        nrm[idx] = torch.as_tensor(animation.smooth_normals(frame, t, b), dtype=torch.float32)
        r = track_backward(pts, nrm, mask, [known[k] for k in members], config)
        better = r.observed & (r.cosine > best_cos)
        best_cos = torch.where(better, r.cosine, best_cos)
        colour = torch.where(better[..., None], r.colour, colour)
        mapped = torch.as_tensor(members, dtype=torch.long)[r.source.clamp_min(0)]
        source = torch.where(better, mapped, source)
    observed = source >= 0
    return TrackResult(observed, colour, source, best_cos, mask & ~observed)
