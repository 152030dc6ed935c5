"""Masks for diffusion training: random inpainting masks and per-pixel loss weights at latent resolution."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_inpaint_masks(
    B: int, H: int, W: int, full_prob: float, generator: torch.Generator
) -> torch.Tensor:  # [B, 1, H, W] in {0, 1}, 1 = to be inpainted
    """A random rectangle or ellipse per image, of random size up to the whole frame, or (with probability
    `full_prob`) the whole frame: the masks diffusers' DreamBooth-inpainting example trains with."""
    ys = torch.arange(H, dtype=torch.float32).view(H, 1) + 0.5
    xs = torch.arange(W, dtype=torch.float32).view(1, W) + 0.5
    out = torch.zeros(B, 1, H, W)
    r = torch.rand(B, 6, generator=generator)
    for b in range(B):
        if r[b, 0] < full_prob:
            out[b] = 1
            continue
        h, w = r[b, 1] * H, r[b, 2] * W
        cy, cx = h / 2 + r[b, 3] * (H - h), w / 2 + r[b, 4] * (W - w)
        if r[b, 5] < 0.5:
            m = ((ys - cy).abs() <= h / 2) & ((xs - cx).abs() <= w / 2)
        else:
            m = ((ys - cy) / (h / 2).clamp_min(1e-3)) ** 2 + ((xs - cx) / (w / 2).clamp_min(1e-3)) ** 2 <= 1
        out[b, 0] = m.float()
    return out


def latent_weights(
    valid: torch.Tensor,  # [B, 1, H, W] in [0, 1], 1 = foreground that counts
    latent_hw: tuple[int, int],
) -> torch.Tensor:  # [B, 1, h, w]: the foreground fraction of each latent cell
    """Downsample a pixel mask to latent resolution by area: a latent cell half covered by foreground
    weighs 0.5, a background cell 0."""
    return F.interpolate(valid.float(), size=latent_hw, mode="area")


def masked_mse(
    pred: torch.Tensor,  # [B, C, h, w]
    target: torch.Tensor,  # [B, C, h, w]
    weights: torch.Tensor,  # [B, 1, h, w] >= 0
) -> torch.Tensor:  # [] scalar
    """Mean squared error over the weighted cells only: sum(w * (pred - target)^2) / (C * sum(w)).

    Cells with weight 0 contribute nothing, neither to the value nor to the gradient."""
    err = (pred.float() - target.float()) ** 2
    w = weights.float()
    return (err * w).sum() / (w.sum() * err.shape[1]).clamp_min(1e-8)
