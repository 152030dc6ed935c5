"""The textured mesh the stages accept, and texture lookup through per-corner UVs.

Stages take any object with the four fields of the protocol's `Mesh` (`vertices` [V,3] float32 in the
Blender world frame, `faces` [F,3] int32 counter-clockwise, `uvs` [F,3,2] per-corner with Blender's
bottom-left UV origin or None, `texture` [Ht,Wt,4] RGBA rows top-down or None), so a validated
`likeness3d.protocol.assets.Mesh` goes straight in. `TexturedMesh` is the same layout for code that builds
meshes itself (synthetic shapes, tests, benchmarks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class MeshLike(Protocol):
    vertices: np.ndarray  # [V, 3] float32, Blender world (Z up, metres)
    faces: np.ndarray  # [F, 3] int32, counter-clockwise = front
    uvs: np.ndarray | None  # [F, 3, 2] per-corner UVs, (0, 0) = bottom-left of the image
    texture: np.ndarray | None  # [Ht, Wt, 4] uint8 or float32 RGBA, rows top-down


@dataclass(frozen=True, eq=False)
class TexturedMesh:
    """A triangle mesh with optional per-corner UVs and texture; the protocol `Mesh` layout."""

    vertices: np.ndarray
    """[V, 3] float32, Blender world space (Z up, metres)."""
    faces: np.ndarray
    """[F, 3] int32 triangles, counter-clockwise seen from the front."""
    uvs: np.ndarray | None = None
    """[F, 3, 2] float32 per-corner UVs, Blender convention: (0, 0) is the bottom-left of the image."""
    texture: np.ndarray | None = None
    """[Ht, Wt, 4] uint8 or float32 RGBA, straight alpha, rows top-down (row 0 = top = v 1)."""

    def __post_init__(self) -> None:
        check_mesh(self)


def check_mesh(mesh: MeshLike) -> None:
    """Raise ValueError naming the field and the value when `mesh` does not follow the layout."""
    v, f = np.asarray(mesh.vertices), np.asarray(mesh.faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"mesh.vertices must have shape [V, 3] with V > 0, got {v.shape}")
    if not np.isfinite(v).all():
        bad = int(np.argwhere(~np.isfinite(v))[0, 0])
        raise ValueError(f"mesh.vertices[{bad}] is not finite: {v[bad].tolist()}")
    if f.ndim != 2 or f.shape[1] != 3 or len(f) == 0 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"mesh.faces must be integer with shape [F, 3], F > 0, got {f.dtype} {f.shape}")
    if f.min() < 0 or f.max() >= len(v):
        bad = int(f.max()) if f.max() >= len(v) else int(f.min())
        raise ValueError(f"mesh.faces references vertex {bad} but the mesh has {len(v)} vertices")
    if mesh.uvs is not None:
        uv = np.asarray(mesh.uvs)
        if uv.shape != (len(f), 3, 2):
            raise ValueError(f"mesh.uvs must have shape [F, 3, 2] = {(len(f), 3, 2)}, got {uv.shape}")
    if mesh.texture is not None:
        t = np.asarray(mesh.texture)
        if t.ndim != 3 or t.shape[2] not in (3, 4) or t.shape[0] == 0 or t.shape[1] == 0:
            raise ValueError(f"mesh.texture must have shape [Ht, Wt, 4] (or 3 channels), got {t.shape}")


def texture_float(texture: np.ndarray) -> np.ndarray:
    """[Ht, Wt, 3|4] uint8 or float -> [Ht, Wt, 3] float32 RGB in [0, 1] (alpha dropped)."""
    t = np.asarray(texture)
    if t.dtype == np.uint8:
        return t[..., :3].astype(np.float32) / 255.0
    return np.clip(t[..., :3].astype(np.float32), 0.0, 1.0)


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


def to_trimesh(mesh: MeshLike):
    """A `trimesh.Trimesh` of the geometry only (no merging, no reordering: face ids stay ours)."""
    import trimesh

    return trimesh.Trimesh(
        vertices=np.asarray(mesh.vertices, dtype=np.float64),
        faces=np.asarray(mesh.faces, dtype=np.int64),
        process=False,
        validate=False,
    )
