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
from ..views.track import KnownView, TrackConfig, track_backward


class Inpainter(Protocol):
    label: str
    personalised: bool

    def __call__(self, images: Tensor, masks: Tensor, strength: float, valid: Tensor | None = None) -> Tensor: ...


@dataclass(frozen=True)
class InpaintConfig:
    """Progressive subject-driven inpainting (TIRE, Inpaint stage)."""

    strength: float = 0.3
    """Fraction of the diffusion schedule denoised, starting from the initial asset's render; the authors
    found 0.15 too weak and 0.5 too strong."""
    rings_deg: tuple[float, ...] = (20.0, 90.0, 180.0)
    """Views are inpainted ring by ring, by angular distance to the nearest source view."""
    grow_px: int = 1
    """Infill masks grow by this many pixels (inside the foreground) to cover tracking seams."""
    track: TrackConfig = TrackConfig()

    def __post_init__(self) -> None:
        if not 0.0 <= self.strength <= 1.0:
            raise ValueError(f"strength must be in [0, 1], got {self.strength}")
        if not self.rings_deg or self.rings_deg[-1] < 180.0:
            raise ValueError(f"rings_deg must end at 180 so every view belongs to a ring, got {self.rings_deg}")


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
    points: Tensor,
    normals: Tensor,
    mask: Tensor,
    depth: Tensor,
    cameras: Cameras,
    sources: list[KnownView],
    inpainter: Inpainter,
    config: InpaintConfig = InpaintConfig(),
    center: Tensor | None = None,
    progress: Callable[[int, int, str, Tensor | None], None] | None = None,
) -> InpaintResult:
    """Fill every target view.

    initial: [C, H, W, 3] the initial asset's renders; points, normals: [C, H, W, 3], mask, depth:
    [C, H, W] the target mesh passes; cameras: the C target cameras; sources: the reference photos as
    known views (their own resolutions). `progress(view_done, total, text, preview)` after every view.
    """
    C = len(cameras)
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
        # 1. Track backward to the sources; what they miss, to the finished (anchor) views.
        tr = track_backward(points[idx], normals[idx], mask[idx], sources, config.track)
        from_source = tr.observed
        image = torch.where(from_source[..., None], tr.colour, initial[idx])
        unknown = tr.infill
        if anchors:
            ta = track_backward(points[idx], normals[idx], mask[idx], anchors, config.track)
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
