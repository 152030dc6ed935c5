"""Image conversions every stage uses: uint8 <-> float in [0, 1], area resizing, padding to a square.

Conventions (DESIGN.md 4): images are [H, W, D] (or [B, H, W, D]) channels-last, rows top-down, straight
alpha, float32 in [0, 1] or uint8. numpy in, numpy out; torch tensors where a function says so (torch is
imported only by those, so the torch-free parts of the backend can use the rest).
"""

from __future__ import annotations

import numpy as np


def unit_float(img) -> np.ndarray:
    """uint8 (0-255) or float image -> float32 in [0, 1] (floats are clipped, not rescaled)."""
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    return np.clip(img.astype(np.float32, copy=False), 0.0, 1.0)


def float_tensor(img):
    """uint8 or float image (numpy) -> float32 torch tensor in [0, 1] on the CPU."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(unit_float(img)))


def to_u8(img) -> np.ndarray:
    """Float image in [0, 1] (numpy or torch, any device) -> uint8, rounded to nearest (previews, PNGs)."""
    if hasattr(img, "detach"):
        img = img.detach().float().cpu().numpy()
    img = np.asarray(img)
    if img.dtype == np.uint8:
        return img
    return (np.clip(np.nan_to_num(img.astype(np.float32, copy=False)), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def area_resize(images, height: int, width: int):
    """[..., H, W, D] float torch tensor -> [..., height, width, D] by area averaging (box filter when shrinking;
    unchanged at the same size). Straight-alpha RGBA should go through `area_resize_rgba`."""
    import torch.nn.functional as F

    if tuple(images.shape[-3:-1]) == (height, width):
        return images
    lead = images.shape[:-3]
    x = images.reshape(-1, *images.shape[-3:]).permute(0, 3, 1, 2)
    out = F.interpolate(x, size=(height, width), mode="area").permute(0, 2, 3, 1)
    return out.reshape(*lead, height, width, images.shape[-1])


def area_resize_rgba(rgba, height: int, width: int):
    """[..., H, W, 4] straight-alpha float tensor -> [..., height, width, 4]: colours averaged premultiplied, so
    transparent pixels do not darken the edges; colour 0 where the result is fully transparent."""
    import torch

    premult = torch.cat([rgba[..., :3] * rgba[..., 3:], rgba[..., 3:]], dim=-1)
    small = area_resize(premult, height, width)
    alpha = small[..., 3:]
    rgb = torch.where(alpha > 0, small[..., :3] / alpha.clamp_min(1e-8), torch.zeros_like(small[..., :3]))
    return torch.cat([rgb, alpha], dim=-1)


def pad_to_square(img: np.ndarray, fill) -> np.ndarray:
    """[H, W, D] -> [S, S, D] with S = max(H, W): the image centred on a canvas of `fill` (a number or D values)."""
    img = np.asarray(img)
    h, w = img.shape[:2]
    side = max(h, w)
    canvas = np.empty((side, side) + img.shape[2:], img.dtype)
    canvas[...] = np.asarray(fill, img.dtype)
    y0, x0 = (side - h) // 2, (side - w) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = img
    return canvas
