"""The refined texture, texel by texel, on the artist's own image (its size, its UVs, its gutters).

- observed by a reference and agreeing with it (disagreement 0): the initial texel, bit for bit;
- observed and disagreeing: the references' colour, the change feathered over a few texels (the
  disagreement map spreads outward by a Gaussian, never inward, so a replaced core stays replaced);
  a disagreement seen only at a grazing angle blends the photos' colour with the infill by its confidence
  (with keep_grazing an agreement is kept however grazing the view, else it blends with the infill too);
- unobserved: the infill (the region-mapped initial texture, or the inpainted views baked);
- gutters (texels outside every island): a gutter texel whose nearest island texel is unchanged keeps its
  own value; otherwise it takes that nearest texel's new value (one island per gutter texel: no bleeding
  of one island into another's padding), up to `dilate_px` from the islands.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..common.images import to_u8, unit_float
from .observe import Observation, _blur
from .texels import TexelSurface


@dataclass
class Composed:
    texture: np.ndarray
    """[Ht, Wt, 4] uint8 RGBA, the input's alpha kept."""
    kept: np.ndarray
    """[T] bool: texels whose value is the initial texture's, bit for bit."""
    from_references: np.ndarray
    """[T] bool: observed texels whose value changed (toward the references' colour)."""
    infilled: np.ndarray
    """[T] bool: texels no reference observes (their value is the infill)."""

    def report(self) -> dict:
        return {"used": int(len(self.kept)), "kept": int(self.kept.sum()),
                "from_references": int(self.from_references.sum()), "infilled": int(self.infilled.sum())}


def feather(values: np.ndarray, surface: TexelSurface, sigma: float) -> np.ndarray:
    """[T] values spread outward by a Gaussian of `sigma` texels over the used texels: max(v, blur(v))."""
    if sigma <= 0:
        return values
    img = torch.as_tensor(surface.scatter(values.astype(np.float32)))[..., None]
    w = torch.as_tensor(surface.covered)
    blurred = _blur(img, w, sigma)[..., 0].numpy()
    return np.maximum(values, surface.gather(blurred))


def _feather_boundary(value: np.ndarray, infill: np.ndarray, observed: np.ndarray, surface: TexelSurface,
                      sigma: float) -> np.ndarray:
    """Unobserved texels near the observed ones take part of their neighbours' change from the infill (the
    observed value minus the infill there), fading over `sigma` texels: no step where the photos end."""
    w = torch.as_tensor(surface.covered)
    obs_img = torch.as_tensor(surface.scatter(observed.astype(np.float32)))[..., None]
    delta = torch.as_tensor(surface.scatter(np.where(observed[:, None], value - infill, 0).astype(np.float32)))
    near_img = _blur(obs_img, w, sigma)  # [Ht, Wt, 1], once for both uses
    near = surface.gather(near_img[..., 0].numpy())
    spread = surface.gather((_blur(delta, w, sigma) / near_img.clamp_min(1e-6)).numpy())
    out = value.copy()
    hidden = ~observed & (near > 1e-3)
    out[hidden] = np.clip(value[hidden] + (near[hidden, None] * spread[hidden]), 0, 1)
    return out


def compose_texture(initial: np.ndarray, surface: TexelSurface, obs: Observation, infill: np.ndarray,
                    feather_px: float = 1.5, dilate_px: int = 16, keep_below: float = 0.02,
                    keep_grazing: bool = False) -> Composed:
    """initial: [Ht, Wt, 3|4] the artist's texture (uint8 keeps bit-exact values); infill: [T, 3] in [0, 1]."""
    from scipy import ndimage

    init = np.asarray(initial)
    if init.shape[:2] != (surface.height, surface.width):
        raise ValueError(f"initial texture is {init.shape[:2]}, the texels are {surface.height} x {surface.width}")
    u8 = to_u8(init) if init.dtype != np.uint8 else init
    if u8.shape[-1] == 3:
        u8 = np.concatenate([u8, np.full(u8.shape[:2] + (1,), 255, np.uint8)], -1)
    init_t = unit_float(surface.gather(u8)[:, :3])
    conf = obs.confidence.numpy()
    observed = conf > 0
    alpha = feather(np.where(observed, obs.disagreement.numpy(), 0.0), surface, feather_px)
    alpha = np.where(alpha < keep_below, 0.0, alpha)
    # an agreement keeps the texel bit for bit, however grazing the view (the infill there is only the initial
    # colour mapped: weaker evidence than a photo confirming it); a grazing disagreement blends the photos'
    # colour with the infill by its confidence
    kept = observed & (alpha == 0) & ((conf >= 1) | keep_grazing)
    seen_value = init_t + alpha[:, None] * (obs.colour.numpy() - init_t)
    rest = np.where(alpha[:, None] > 0, infill, init_t) if keep_grazing else infill
    value = conf[:, None] * seen_value + (1 - conf[:, None]) * rest
    value = np.where(observed[:, None], value, infill)
    if feather_px > 0 and observed.any() and (~observed).any():
        value = _feather_boundary(value, infill, observed, surface, 2 * feather_px)
    new_u8 = to_u8(np.clip(value, 0, 1))
    texel_u8 = np.where(kept[:, None], surface.gather(u8)[:, :3], new_u8)
    changed_t = (texel_u8 != surface.gather(u8)[:, :3]).any(1)
    out = u8.copy()
    out[surface.rows, surface.cols, :3] = texel_u8
    # gutters: the nearest island texel decides
    if dilate_px > 0 and (~surface.covered).any() and surface.covered.any():
        dist, (ri, ci) = ndimage.distance_transform_edt(~surface.covered, return_indices=True)
        changed = surface.scatter(changed_t, False)
        gutter = ~surface.covered & (dist <= dilate_px) & changed[ri, ci]
        out[gutter, :3] = out[ri[gutter], ci[gutter], :3]
    return Composed(out, kept, observed & ~kept, ~observed)


def fill_on_surface(surface: TexelSurface, values: np.ndarray, have: np.ndarray, k: int = 6) -> tuple[np.ndarray, int]:
    """Texels without a value take the inverse-distance mean of their k nearest valued texels in 3D (so
    neighbours across a UV seam count, the flat UV image's neighbours do not). values [T, 3], have [T] bool.
    Returns (values, how many were filled)."""
    from scipy.spatial import cKDTree

    need = ~have
    if not need.any() or not have.any():
        return values, 0
    pts = surface.points.numpy().astype(np.float64)
    tree = cKDTree(pts[have])
    d, i = tree.query(pts[need], k=min(k, int(have.sum())))
    if d.ndim == 1:
        d, i = d[:, None], i[:, None]
    w = 1.0 / np.maximum(d, 1e-9)
    src = values[have]
    out = values.copy()
    out[need] = (src[i] * w[..., None]).sum(1) / w.sum(1, keepdims=True)
    return out, int(need.sum())
