"""Image losses and scores: weighted L1, SSIM map (11 x 11 Gaussian window, sigma 1.5), PSNR."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def _window(size: int, sigma: float, channels: int, device, dtype) -> Tensor:
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim_map(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """[B, H, W] per-pixel SSIM of images `a`, `b` [B, H, W, D] in [0, 1], averaged over channels.

    Wang et al. 2004 with the constants of 3DGS (C1 = 0.01^2, C2 = 0.03^2), zero padding ("same" size).
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"a and b must both have shape [B, H, W, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    D = a.shape[-1]
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    w = _window(window, sigma, D, a.device, a.dtype)
    pad = window // 2
    mu_x = F.conv2d(x, w, padding=pad, groups=D)
    mu_y = F.conv2d(y, w, padding=pad, groups=D)
    sxx = F.conv2d(x * x, w, padding=pad, groups=D) - mu_x**2
    syy = F.conv2d(y * y, w, padding=pad, groups=D) - mu_y**2
    sxy = F.conv2d(x * y, w, padding=pad, groups=D) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(dim=1)


def weighted_mean(values: Tensor, weights: Tensor | None) -> Tensor:
    """mean(values * weights) over [B, H, W]: a weight scales its pixel's share, 1 everywhere = plain mean.

    Not normalised by the weights' sum, so a view whose pixels all weigh 0.1 counts a tenth as much as one
    at 1 even when it is alone in its batch.
    """
    if weights is None:
        return values.mean()
    return (values * weights).mean()


def psnr(a: Tensor, b: Tensor, mask: Tensor | None = None) -> float:
    """PSNR in dB of [..., D] images in [0, 1]; `mask` [...] restricts it to some pixels."""
    err = (a.float() - b.float()) ** 2
    if mask is not None:
        if not mask.any():
            raise ValueError("psnr: mask selects no pixel")
        err = err[mask.bool()]
    mse = float(err.mean())
    return float("inf") if mse == 0 else -10.0 * math.log10(mse)
