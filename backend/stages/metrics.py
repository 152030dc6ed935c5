"""Image losses and scores: weighted L1, SSIM map (11 x 11 Gaussian window, sigma 1.5), PSNR."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor


@functools.lru_cache(maxsize=32)
def gaussian_kernel1d(size: int, sigma: float, device: torch.device, dtype: torch.dtype) -> Tensor:
    """[size] normalised 1D Gaussian (cached: a fit asks for it every step)."""
    x = torch.arange(size, device=device, dtype=dtype) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def ssim_map(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """[B, H, W] per-pixel SSIM of images `a`, `b` [B, H, W, D] in [0, 1], averaged over channels.

    Wang et al. 2004 with the constants of 3DGS (C1 = 0.01^2, C2 = 0.03^2), Gaussian window, zero padding
    ("same" size). The five local moments are blurred in one pass of two 1D convolutions (the window is
    separable), which equals the 2D window exactly.
    """
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"a and b must both have shape [B, H, W, D], got {tuple(a.shape)} and {tuple(b.shape)}")
    D = a.shape[-1]
    x, y = a.permute(0, 3, 1, 2), b.permute(0, 3, 1, 2)
    moments = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # [B, 5D, H, W]
    g = gaussian_kernel1d(window, sigma, a.device, a.dtype)
    n, pad = 5 * D, window // 2
    blurred = F.conv2d(moments, g.view(1, 1, -1, 1).expand(n, 1, window, 1), padding=(pad, 0), groups=n)
    blurred = F.conv2d(blurred, g.view(1, 1, 1, -1).expand(n, 1, 1, window), padding=(0, pad), groups=n)
    mu_x, mu_y, exx, eyy, exy = blurred.split(D, dim=1)
    sxx, syy, sxy = exx - mu_x**2, eyy - mu_y**2, exy - mu_x * mu_y
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
