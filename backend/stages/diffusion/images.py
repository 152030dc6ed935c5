"""Checked conversion of image and mask arrays (DESIGN.md conventions: rows top-down, channels last,
uint8 or float in [0, 1]) into the channels-first float tensors the diffusion code works on."""

from __future__ import annotations

import numpy as np
import torch

from ..common.images import float_tensor


def _as_array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        return (x.float() if x.is_floating_point() else x).numpy()  # (numpy has no bfloat16)
    if isinstance(x, np.ndarray):
        return x
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def _unit_float(a: np.ndarray, name: str) -> torch.Tensor:
    """uint8 (/ 255), bool (0 / 1) or float already in [0, 1] (checked here, naming `name`: out-of-range
    values are an error, not clipped) -> float32 tensor, converted by `common.images.float_tensor`."""
    if a.dtype != np.uint8 and a.dtype != np.bool_:
        if not np.issubdtype(a.dtype, np.floating):
            raise TypeError(f"{name} must be uint8, bool or float, got {a.dtype}")
        a = a.astype(np.float32, copy=False)  # checked as it will be used
        if not np.isfinite(a).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0 or hi > 1:
            raise ValueError(f"{name} must be in [0, 1] when float, got values in [{lo:.4g}, {hi:.4g}]")
    return float_tensor(a)


def as_image_batch(images, name: str = "images") -> torch.Tensor:  # [N, 3, H, W] float32 in [0, 1], CPU
    """[N, H, W, 3|4] or [H, W, 3|4] uint8/float images -> [N, 3, H, W] float32 (alpha dropped).

    H and W must be multiples of 8 (SD's VAE downsamples by 8)."""
    a = _as_array(images, name)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.shape[-1] not in (3, 4) or a.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N, H, W, 3] or [N, H, W, 4], got {list(a.shape)}")
    H, W = a.shape[1:3]
    if H % 8 or W % 8 or H == 0 or W == 0:
        raise ValueError(f"{name} height and width must be positive multiples of 8, got {H}x{W}")
    return _unit_float(a[..., :3], name).permute(0, 3, 1, 2).contiguous()


def as_mask_batch(masks, name: str, like: torch.Tensor) -> torch.Tensor:  # [N, 1, H, W] float32 in [0, 1], CPU
    """[N, H, W] (or [N, H, W, 1], or [H, W] for one image) bool/uint8/float masks -> [N, 1, H, W] float32,
    checked against the [N, 3, H, W] image batch `like`."""
    a = _as_array(masks, name)
    if a.ndim == 4 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = a[None]
    N, _, H, W = like.shape
    if tuple(a.shape) != (N, H, W):
        raise ValueError(f"{name} must have shape [{N}, {H}, {W}] to match the images, got {list(a.shape)}")
    return _unit_float(a, name)[:, None].contiguous()
