"""When a difference between a photo and the initial asset's render is a disagreement, at the photo's pixels.

Two renderers (or a camera and a renderer) never form the same pixels from the same texture: another pixel
filter, another antialiasing, a fraction of a pixel of registration. `formed_render` renders the initial
asset the way cameras and production renderers form pixels (many rays a pixel, weighted by a smooth
filter 1.5 pixels wide: Blackman-Harris, Cycles' default), not four rays box-filtered. What differences
remain live on the texture's edges and scale with their contrast: a fine stroke
that is right in the texture differs by a fraction of its own contrast, along its outline, one or two
pixels wide. A wrong colour patch or a wrong glyph differs by its full contrast, over an area. Hence:

- `local_tolerance`: the allowed difference grows with the render's local contrast (its range over a
  3 x 3 window at the photo's resolution), by `FidelityConfig.agree_edge` of it;
- `persistent`: a disagreement counts only where it survives a morphological opening of
  `FidelityConfig.agree_area_px` (an area at least (2r + 1) pixels across): the outline residuals of right
  strokes vanish, a wrong patch keeps its full extent.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


def _blackman_harris(x: np.ndarray, width: float) -> np.ndarray:
    t = 2 * np.pi * (x / width + 0.5)
    w = 0.35875 - 0.48829 * np.cos(t) + 0.14128 * np.cos(2 * t) - 0.01168 * np.cos(3 * t)
    return np.where(np.abs(x) <= width / 2, w, 0.0)


def filter_samples(premult: Tensor, s: int, filter_px: float, height: int, width: int) -> Tensor:
    """[1, 4, H*s, W*s] premultiplied RGB + coverage samples (s x s a pixel) -> [H, W, 4] straight-alpha RGBA under
    a pixel filter: `filter_px` = 0: a one-pixel box (the mean of each pixel's samples); else a separable
    Blackman-Harris window that many pixels wide around each pixel's centre."""
    if filter_px <= 0:
        x = premult[0].reshape(4, height, s, width, s).mean(dim=(2, 4))
    else:
        r = int(np.ceil(filter_px / 2 * s - 0.5))  # taps each side of a pixel's centre (half-integer sample offsets)
        offsets = np.arange(-r, r) + 0.5  # in samples, from the centre (s - 1) / 2 of the pixel's own samples
        k = _blackman_harris(offsets / s, filter_px)
        k = torch.as_tensor(k / k.sum(), dtype=torch.float32)
        first = (s - 1) / 2 - (r - 0.5)  # the first tap's sample index for pixel 0
        pad = int(max(0, -first))
        n = len(k)
        x = F.pad(premult, (pad, pad + n, pad, pad + n), mode="replicate")
        start = int(first + pad)
        x = F.conv2d(x[..., start:, :], k.view(1, 1, n, 1).expand(4, 1, n, 1), stride=(s, 1), groups=4)
        x = F.conv2d(x[..., start:], k.view(1, 1, 1, n).expand(4, 1, 1, n), stride=(1, s), groups=4)
        x = x[0, :, :height, :width]
    cov = x[3].clamp(0, 1)
    rgb = x[:3] / x[3].clamp_min(1e-8)
    return torch.cat([rgb.permute(1, 2, 0), cov[..., None]], -1)


def formed_render(caster, camera, supersample: int = 4, filter_px: float = 1.5) -> Tensor:
    """[H, W, 4] straight-alpha RGBA of `caster`'s textured mesh from one camera: supersample^2 rays a pixel,
    weighted by a Blackman-Harris filter `filter_px` pixels wide (separable) around each pixel's centre."""
    s = supersample
    hi = caster.passes(camera.resized(camera.width * s, camera.height * s))
    cover = hi.mask[0].float()
    premult = torch.cat([hi.rgb[0] * cover[..., None], cover[..., None]], -1).permute(2, 0, 1)[None]  # [1, 4, Hs, Ws]
    return filter_samples(premult, s, filter_px, camera.height, camera.width)


def _pool(x: Tensor, r: int) -> Tensor:
    return F.max_pool2d(x[None, None], 2 * r + 1, 1, r)[0, 0]


def local_tolerance(render: Tensor, valid: Tensor, edge: float) -> Tensor:
    """[H, W] extra tolerance: `edge` x the render's [H, W, 3] local range (mean over channels) over 3 x 3 pixels
    where `valid` [H, W]."""
    if edge <= 0:
        return torch.zeros(render.shape[:2])
    rgb = render.permute(2, 0, 1)
    hi = F.max_pool2d(rgb[None], 3, 1, 1)[0]
    lo = -F.max_pool2d(-rgb[None], 3, 1, 1)[0]
    return edge * (hi - lo).mean(0) * valid


def persistent_area(disagree: Tensor, min_pixels: int) -> Tensor:
    """[H, W] disagreement kept only on its 8-connected components of at least `min_pixels` pixels."""
    if min_pixels <= 1:
        return disagree
    from scipy import ndimage

    m = (disagree > 0).numpy()
    labels, n = ndimage.label(m, structure=np.ones((3, 3), bool))
    if n == 0:
        return disagree
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= min_pixels
    keep[0] = False
    return disagree * torch.as_tensor(keep[labels])


def persistent(disagree: Tensor, radius: int) -> Tensor:
    """[H, W] disagreement in [0, 1] kept only where its support survives an opening of `radius` pixels (then
    grown back by the same radius, so a surviving patch keeps its extent); 0 elsewhere."""
    if radius <= 0:
        return disagree
    m = (disagree > 0).float()
    opened = _pool(-_pool(-m, radius), radius)
    return disagree * (opened > 0)
