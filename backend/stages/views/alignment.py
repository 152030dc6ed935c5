"""The mesh seen from a reference's own camera, beside the reference: is the camera aligned with the photo?"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..common.images import area_resize_rgba, unit_float
from .cameras import Cameras
from .mesh_passes import Raycaster, mesh_rgba


@dataclass
class ReferenceView:
    """A reference photo and the mesh rendered from its camera, at one (possibly reduced) size h x w."""

    reference: np.ndarray
    """[h, w, 4] float32 straight-alpha RGBA, the photo area-averaged to the render's size."""
    render: np.ndarray
    """[h, w, 4] float32 straight-alpha RGBA of the mesh (textured, or shaded grey without a texture)."""
    silhouette_iou: float
    """IoU of the photo's subject (alpha > min_alpha) and the render's coverage (> 0.5); 1 = aligned."""
    scale: float
    """h / the reference's height."""


def reference_view(
    mesh: "Raycaster | object",
    image: np.ndarray,
    camera,
    max_side: int = 256,
    supersample: int = 2,
    min_alpha: float = 0.5,
) -> ReferenceView:
    """Render `mesh` from `camera` (the protocol's Camera: K, w2c, width, height) beside `image`.

    image: [H, W, 4] uint8 or float RGBA (H, W = the camera's). Both are brought to at most `max_side`
    pixels on the longer side (the camera's intrinsics scaled, the photo area-averaged).
    """
    if max_side < 8:
        raise ValueError(f"max_side must be >= 8, got {max_side}")
    img = np.asarray(image)
    H, W = int(camera.height), int(camera.width)
    if img.ndim != 3 or img.shape != (H, W, 4):
        raise ValueError(f"image must have shape [H, W, 4] = [{H}, {W}, 4] (the camera's size), got {img.shape}")
    img = unit_float(img)
    scale = min(1.0, max_side / max(H, W))
    h, w = max(1, int(math.floor(H * scale + 0.5))), max(1, int(math.floor(W * scale + 0.5)))
    cams = Cameras.from_protocol([camera])
    if (h, w) != (H, W):
        cams = cams.resized(w, h)
        img = area_resize_rgba(torch.from_numpy(img), h, w).numpy()
    render = mesh_rgba(mesh, cams, supersample=supersample)[0].numpy()
    subject, covered = img[..., 3] > min_alpha, render[..., 3] > 0.5
    union = (subject | covered).sum()
    iou = float((subject & covered).sum() / union) if union else 0.0
    return ReferenceView(reference=img, render=render, silhouette_iou=iou, scale=h / H)
