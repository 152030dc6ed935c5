"""The texels the mesh uses, lifted onto its surface: each texel centre's triangle, 3D point and normal.

Everything the fidelity stage decides is decided per texel of the artist's own texture, at its own size:
which reference photo sees the texel's surface point, what colour it has there, which view could see it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..views.meshes import as_mesh, face_normals
from ..views.rays import RaySpec
from .bake import texel_surface


@dataclass
class TexelSurface:
    """The used texels of a [height, width] texture on a mesh."""

    height: int
    width: int
    tri: np.ndarray
    """[Ht, Wt] int64 triangle under each texel centre, -1 outside the UV islands (gutters)."""
    covered: np.ndarray
    """[Ht, Wt] bool: texel centres inside a UV triangle (the texels the mesh uses)."""
    rows: np.ndarray
    """[T] row of each used texel (the order of `points`)."""
    cols: np.ndarray
    """[T] column of each used texel."""
    points: Tensor
    """[T, 3] float32 world position of each used texel centre."""
    normals: Tensor
    """[T, 3] float32 unit face normal (zero on a degenerate triangle)."""

    def __len__(self) -> int:
        return len(self.rows)

    def scatter(self, values: Tensor | np.ndarray, fill=0) -> np.ndarray:
        """[T, ...] per-texel values -> [Ht, Wt, ...] image (`fill` outside the islands)."""
        values = values.numpy() if isinstance(values, Tensor) else np.asarray(values)
        out = np.full((self.height, self.width) + values.shape[1:], fill, dtype=values.dtype)
        out[self.rows, self.cols] = values
        return out

    def gather(self, image: np.ndarray) -> np.ndarray:
        """[Ht, Wt, ...] image -> [T, ...] its used texels."""
        return np.asarray(image)[self.rows, self.cols]


def texel_geometry(mesh, height: int, width: int, spec: RaySpec = RaySpec()) -> TexelSurface:
    """Lift every texel centre of a [height, width] texture onto `mesh` (its per-corner UVs); `spec`: the ray
    backend and job device of the UV lookup."""
    mesh = as_mesh(mesh)
    if mesh.uvs is None:
        raise ValueError("mesh.uvs is None: texels need UVs (unwrap the mesh first)")
    tri, bary = texel_surface(mesh, height, width, spec)
    covered = tri >= 0
    rows, cols = np.nonzero(covered)
    ids = tri[rows, cols]
    v = np.asarray(mesh.vertices, np.float64)
    f = np.asarray(mesh.faces, np.int64)
    points = (v[f[ids]] * bary[rows, cols][..., None]).sum(1)
    normals = face_normals(v, f)[ids]
    return TexelSurface(height, width, tri, covered, rows, cols, torch.as_tensor(points, dtype=torch.float32),
                        torch.as_tensor(normals, dtype=torch.float32))
