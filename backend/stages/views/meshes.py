"""Meshes as the stages take them, and texture lookup through per-corner UVs.

The one mesh type is the protocol's `Mesh` (`vertices` [V,3] float32 in the Blender world frame, `faces`
[F,3] int32 counter-clockwise, `uvs` [F,3,2] per-corner with Blender's bottom-left UV origin or None,
`texture` [Ht,Wt,4] RGBA rows top-down or None), validated when it is made; stages call `as_mesh` on what
they are given, so a validated asset mesh goes straight in.
"""

from __future__ import annotations

import numpy as np

from ....protocol.assets import Mesh
from ..common.images import unit_float


def as_mesh(mesh) -> Mesh:
    """`mesh` as the one mesh type, the protocol's `Mesh`, validated there: a `Mesh` as it is; any object with
    its four fields (`vertices`, `faces`, `uvs`, `texture`) converted to its dtypes (float32, int32, float32)
    and checked, so a bad mesh is an `InvalidAsset` naming the field and the value wherever it comes from."""
    if isinstance(mesh, Mesh):
        return mesh
    uvs, texture = getattr(mesh, "uvs", None), getattr(mesh, "texture", None)
    return Mesh(np.ascontiguousarray(mesh.vertices, np.float32), np.ascontiguousarray(mesh.faces, np.int32),
                None if uvs is None else np.ascontiguousarray(uvs, np.float32), texture)


def texture_float(texture: np.ndarray) -> np.ndarray:
    """[Ht, Wt, 3|4] uint8 or float -> [Ht, Wt, 3] float32 RGB in [0, 1] (alpha dropped)."""
    return unit_float(np.asarray(texture)[..., :3])


def sample_texture(texture: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with repeat wrapping (Blender's default image extension).

    texture: [Ht, Wt, D] float32, rows top-down.  uv: [..., 2] Blender UVs ((0, 0) bottom-left).
    Returns [..., D]. Texel centres sit at u = (col + 0.5) / Wt, v = 1 - (row + 0.5) / Ht, so
    column = u * Wt - 0.5 and row = (1 - v) * Ht - 0.5 (the contract's lookup).
    """
    h, w = texture.shape[:2]
    col = uv[..., 0] * w - 0.5
    row = (1.0 - uv[..., 1]) * h - 0.5
    c0, r0 = np.floor(col), np.floor(row)
    fc, fr = (col - c0)[..., None], (row - r0)[..., None]
    c0, r0 = c0.astype(np.int64), r0.astype(np.int64)
    c1, r1 = (c0 + 1) % w, (r0 + 1) % h
    c0, r0 = c0 % w, r0 % h
    top = texture[r0, c0] * (1 - fc) + texture[r0, c1] * fc
    bottom = texture[r1, c0] * (1 - fc) + texture[r1, c1] * fc
    return (top * (1 - fr) + bottom * fr).astype(np.float32)


def face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[F, 3] unit geometric normals of counter-clockwise triangles (zero for degenerate ones)."""
    tri = vertices[faces].astype(np.float64)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return (n / np.where(length > 0, length, 1.0)).astype(np.float32)


def to_trimesh(mesh: Mesh):
    """A `trimesh.Trimesh` of the geometry only (no merging, no reordering: face ids stay ours)."""
    import trimesh

    return trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        process=False,
        validate=False,
    )
