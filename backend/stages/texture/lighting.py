"""Photographs are lit; textures are not: the lighting of a reference photo relative to the initial asset.

Per reference, on the pixels where the photo shows the subject and the initial asset covers it, the
photo's log colour minus the unlit render's is fitted as a per-channel gain (exposure and white balance)
plus a low-frequency shading shared by the channels: second-order spherical harmonics of the surface normal
(a distant light's irradiance on a Lambertian surface is within a few percent of this, Ramamoorthi and
Hanrahan 2001). The fit is robust (pixels where the initial asset is simply a different colour are trimmed as
outliers) and ridge-regularised toward "no light". Dividing the photo by the fitted factor gives the
subject's albedo as the references see it, which is what a texture holds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """[N, 3] unit normals -> [N, 9] real spherical harmonics up to order 2 (unnormalised constants)."""
    x, y, z = normals[:, 0], normals[:, 1], normals[:, 2]
    return np.stack([np.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], 1)


@dataclass
class Lighting:
    """One reference's fitted lighting: photo = albedo x gain x exp(shading(normal))."""

    gain: np.ndarray
    """[3] per-channel multiplicative gain (exposure x white balance)."""
    shading: np.ndarray
    """[9] coefficients of the log-luminance shading in `sh_basis` (the constant term is 0: the gain has it)."""
    pixels: int
    """Pixels the fit used (after trimming)."""
    change: float
    """Largest relative change the correction makes to an observed pixel (the 99th percentile)."""
    applied: bool
    """False when the change is below FidelityConfig.lighting_min_change (the photo is used as it is)."""

    def factor(self, normals: np.ndarray) -> np.ndarray:
        """[N, 3] unit normals -> [N, 3] the multiplicative factor the photo carries there."""
        return self.gain[None] * np.exp(sh_basis(normals) @ self.shading)[:, None]

    def report(self) -> dict:
        return {"applied": self.applied, "gain_rgb": [round(float(g), 4) for g in self.gain],
                "shading_sh2": [round(float(s), 4) for s in self.shading], "max_change": round(self.change, 4),
                "pixels": self.pixels}


NONE = Lighting(np.ones(3), np.zeros(9), 0, 0.0, False)


def estimate_lighting(photo: Tensor, render: Tensor, valid: Tensor, normals: Tensor, min_change: float = 0.01,
                      ridge: float = 0.05, max_samples: int = 60_000, seed: int = 0) -> Lighting:
    """photo, render: [H, W, 3] in [0, 1]; valid [H, W] bool (both show the subject); normals [H, W, 3]."""
    m = valid.numpy() & (photo.numpy().min(-1) > 0.03) & (render.numpy().min(-1) > 0.03)
    n = int(m.sum())
    if n < 50:
        return NONE
    idx = np.flatnonzero(m.ravel())
    if n > max_samples:
        idx = np.random.default_rng(seed).choice(idx, max_samples, replace=False)
    p = photo.reshape(-1, 3).numpy()[idx].astype(np.float64)
    r = render.reshape(-1, 3).numpy()[idx].astype(np.float64)
    nrm = normals.reshape(-1, 3).numpy()[idx].astype(np.float64)
    y = np.log(p) - np.log(r)  # [N, 3]
    basis = sh_basis(nrm)[:, 1:]  # [N, 8]
    N = len(y)
    # unknowns: 3 log gains, 8 shading coefficients shared by the channels; rows: every pixel x channel
    A = np.zeros((N * 3, 11))
    for c in range(3):
        A[c::3, c] = 1.0
        A[c::3, 3:] = basis
    b = y.reshape(-1)
    keep = np.ones(N, bool)
    coef = np.zeros(11)
    for _ in range(5):
        rows = np.repeat(keep, 3)
        Ak, bk = A[rows], b[rows]
        reg = np.diag([0.0, 0.0, 0.0] + [ridge * rows.sum() / 3] * 8)
        coef = np.linalg.solve(Ak.T @ Ak + reg + 1e-9 * np.eye(11), Ak.T @ bk)
        res = np.abs((A @ coef - b).reshape(N, 3)).max(1)
        scale = 1.4826 * np.median(res[keep]) + 1e-3
        keep = res <= 3.0 * scale
        if keep.sum() < 50:
            return NONE
    gain = np.exp(np.clip(coef[:3], -1.1, 1.1))
    shading = np.concatenate([[0.0], np.clip(coef[3:], -1.0, 1.0)])
    light = Lighting(gain, shading, int(keep.sum()), 0.0, True)
    change = float(np.percentile(np.abs(1.0 / light.factor(nrm) - 1.0).max(1), 99))
    light.change = change
    light.applied = change >= min_change
    return light


def remove_lighting(image: Tensor, normals: Tensor, mask: Tensor, light: Lighting) -> Tensor:
    """image [H, W, 4] straight alpha -> the same with the lighting divided out where `mask` [H, W] (the
    mesh covers the pixel: normals [H, W, 3] are known there); unchanged when the lighting is not applied."""
    if not light.applied:
        return image
    out = image.clone()
    m = mask.numpy()
    f = light.factor(normals.numpy()[m].astype(np.float64))
    rgb = image[..., :3].numpy()[m] / f
    out[..., :3][mask] = torch.as_tensor(np.clip(rgb, 0.0, 1.0), dtype=image.dtype)
    return out
