"""Checked conversion of image and mask arrays (DESIGN.md conventions: rows top-down, channels last,
uint8 or float in [0, 1]) into the channels-first float tensors the diffusion code works on."""

from __future__ import annotations

import numpy as np
import torch


def _as_tensor(x, name: str) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu()
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x))
    raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")


def _unit_float(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.dtype == torch.bool:
        return t.float()
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.is_floating_point():
        raise TypeError(f"{name} must be uint8, bool or float, got {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(t.min()), float(t.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} must be in [0, 1] when float, got values in [{lo:.4g}, {hi:.4g}]")
    return t


def as_image_batch(images, name: str = "images") -> torch.Tensor:  # [N, 3, H, W] float32 in [0, 1], CPU
    """[N, H, W, 3|4] or [H, W, 3|4] uint8/float images -> [N, 3, H, W] float32 (alpha dropped).

    H and W must be multiples of 8 (SD's VAE downsamples by 8)."""
    t = _as_tensor(images, name)
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] not in (3, 4) or t.shape[0] == 0:
        raise ValueError(f"{name} must have shape [N, H, W, 3] or [N, H, W, 4], got {list(t.shape)}")
    H, W = t.shape[1:3]
    if H % 8 or W % 8 or H == 0 or W == 0:
        raise ValueError(f"{name} height and width must be positive multiples of 8, got {H}x{W}")
    return _unit_float(t[..., :3], name).permute(0, 3, 1, 2).contiguous()


def as_mask_batch(masks, name: str, like: torch.Tensor) -> torch.Tensor:  # [N, 1, H, W] float32 in [0, 1], CPU
    """[N, H, W] (or [N, H, W, 1], or [H, W] for one image) bool/uint8/float masks -> [N, 1, H, W] float32,
    checked against the [N, 3, H, W] image batch `like`."""
    t = _as_tensor(masks, name)
    if t.ndim == 4 and t.shape[-1] == 1:
        t = t[..., 0]
    if t.ndim == 2:
        t = t[None]
    N, _, H, W = like.shape
    if tuple(t.shape) != (N, H, W):
        raise ValueError(f"{name} must have shape [{N}, {H}, {W}] to match the images, got {list(t.shape)}")
    return _unit_float(t, name)[:, None].contiguous()
