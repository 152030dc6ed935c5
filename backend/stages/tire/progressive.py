"""Progressive inpainting (TIRE, Inpaint): target views are filled ring by ring, nearest to a source first;
each finished ring becomes anchors whose pixels reproject into the next ring (TIRE: +-20, then +-90, then
+-180 degrees)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from ..views.cameras import Cameras, rings
from .config import InpaintConfig
from ..views.mesh_passes import MeshPasses
from ..views.track import KnownView, TrackResult, track_backward


class Inpainter(Protocol):
    label: str
    personalised: bool

    def __call__(self, images: Tensor, masks: Tensor, strength: float, valid: Tensor | None = None) -> Tensor: ...


@dataclass
class InpaintResult:
    views: Tensor
    """[C, H, W, 4] refined target views, straight alpha = the asset's coverage."""
    observed: Tensor
    """[C, H, W] bool: pixels whose colour came from a source photo (directly tracked)."""
    infill: Tensor
    """[C, H, W] bool: pixels the inpainter produced."""
    ring: Tensor
    """[C] long: the ring each view was inpainted in."""


def grow(mask: Tensor, px: int, within: Tensor) -> Tensor:
    """Dilate [B, H, W] bool masks by px (square), staying inside `within`."""
    if px <= 0:
        return mask & within
    m = F.max_pool2d(mask[:, None].float(), 2 * px + 1, stride=1, padding=px)[:, 0] > 0
    return m & within


def progressive_inpaint(
    initial: Tensor,
    passes: MeshPasses,
    cameras: Cameras,
    sources: list[KnownView],
    tracked: TrackResult,
    inpainter: Inpainter,
    config: InpaintConfig = InpaintConfig(),
    center: Tensor | None = None,
    progress: Callable[[int, int, str, Tensor | None], None] | None = None,
    device: str | torch.device | None = None,
) -> InpaintResult:
    """Fill every target view.

    initial: [C, H, W, 3] the initial asset's renders; passes: the C target views' mesh passes; cameras: the
    C target cameras; sources: the reference photos as known views (their own resolutions); tracked: the
    backward track of every target pixel to the sources (TIRE step 2, `views.track.track_backward`).
    `progress(view_done, total, text, preview)` after every view. `device`: where the tracks to the finished
    rings run (the job's device; the views themselves stay on the CPU).
    """
    C = len(cameras)
    points, normals, mask, depth = passes.points, passes.normal, passes.mask, passes.depth
    if tuple(tracked.observed.shape) != tuple(mask.shape):
        raise ValueError(f"tracked must cover the {C} target views {tuple(mask.shape)}, got {tuple(tracked.observed.shape)}")
    src_cams = Cameras.cat([s.camera.resized(cameras.width, cameras.height) for s in sources])
    groups = rings(cameras, src_cams, config.rings_deg, center=center)
    views = torch.zeros(C, cameras.height, cameras.width, 4)
    observed = torch.zeros_like(mask)
    infill = torch.zeros_like(mask)
    ring_of = torch.full((C,), -1, dtype=torch.long)
    anchors: list[KnownView] = []
    done = 0
    for r, idx in enumerate(groups):
        if len(idx) == 0:
            continue
        # 1. Observed by a source (tracked in step 2); what the sources miss, tracked to the finished (anchor) views.
        from_source = tracked.observed[idx]
        image = torch.where(from_source[..., None], tracked.colour[idx], initial[idx])
        unknown = tracked.infill[idx]
        if anchors:
            ta = track_backward(points[idx], normals[idx], mask[idx], anchors, config.track, device=device)
            from_anchor = ta.observed & ~from_source
            image = torch.where(from_anchor[..., None], ta.colour, image)
            unknown = unknown & ~from_anchor
        fill = grow(unknown, config.grow_px, mask[idx]) & ~from_source
        # 2. Inpaint what nobody observes (subject LoRA at `strength`, or the classical fallback).
        filled = inpainter(image, fill, config.strength, valid=mask[idx])
        rgba = torch.cat([filled * mask[idx][..., None], mask[idx][..., None].float()], dim=-1)
        views[idx], observed[idx], infill[idx], ring_of[idx] = rgba, from_source, fill, r
        # 3. The finished ring anchors the next.
        for j, i in enumerate(idx.tolist()):
            anchors.append(KnownView(rgba[j], depth[i], cameras[i : i + 1]))
            done += 1
            if progress is not None:
                progress(done, C, f"ring {r + 1}/{len(groups)} (<= {config.rings_deg[r]:g} deg): view {done}/{C}", rgba[j])
    return InpaintResult(views, observed, infill, ring_of)
