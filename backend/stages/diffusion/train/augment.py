"""Joint random flips and small rotations of images and their masks (TIRE's LoRA augmentation)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..upload import to_device


def flip_rotate(
    images: torch.Tensor,  # [B, 3, H, W] any range
    masks: torch.Tensor,  # [B, 1, H, W] in [0, 1]
    flip: torch.Tensor,  # [B] bool: mirror left-right
    angle_deg: torch.Tensor,  # [B] counter-clockwise rotation about the image centre, degrees
    fill: torch.Tensor,  # [3] colour of pixels rotated in from outside the frame
) -> tuple[torch.Tensor, torch.Tensor]:  # ([B, 3, H, W], [B, 1, H, W])
    """Apply the same mirror + rotation to an image and its mask (bilinear).

    Pixels that come from outside the frame take `fill` in the image and 0 in the mask, so they never count
    as foreground. The rotation is in pixel space (aspect-correct for non-square images).
    """
    B, _, H, W = images.shape
    a = torch.deg2rad(angle_deg.to(torch.float32))
    cos, sin = torch.cos(a), torch.sin(a)
    sx = torch.where(flip, -1.0, 1.0).to(torch.float32)
    # affine_grid maps output -> input coordinates in [-1, 1]^2; in pixels the rotation is R = [[c, -s], [s, c]]
    # (y down, so a positive angle turns the picture counter-clockwise), expressed in normalised units here.
    theta = torch.zeros(B, 2, 3)
    theta[:, 0, 0] = cos * sx
    theta[:, 0, 1] = -sin * (H / W)
    theta[:, 1, 0] = sin * (W / H) * sx
    theta[:, 1, 1] = cos
    theta = to_device(theta.to(images.dtype), images.device)
    grid = F.affine_grid(theta, [B, 1, H, W], align_corners=False)
    fill = fill.to(images.device, images.dtype).view(1, 3, 1, 1)
    out = F.grid_sample(images - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    out_mask = F.grid_sample(masks.to(images.dtype), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out, out_mask


def random_flip_rotate(
    images: torch.Tensor,  # [B, 3, H, W]
    masks: torch.Tensor,  # [B, 1, H, W]
    max_deg: float,
    flip_prob: float,
    fill: torch.Tensor,  # [3]
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`flip_rotate` with a mirror drawn with probability `flip_prob` and an angle uniform in +-`max_deg`."""
    B = images.shape[0]
    flip = torch.rand(B, generator=generator) < flip_prob
    angle = (torch.rand(B, generator=generator) * 2 - 1) * max_deg
    if max_deg == 0 and flip_prob == 0:
        return images, masks.to(images.dtype)
    return flip_rotate(images, masks, flip, angle, fill)

