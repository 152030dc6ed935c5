"""Synthetic textured shapes with a known ground truth: a UV sphere and a cube with a UV atlas.

They serve the tests (analytic depth and normals), the benchmarks and synthetic subjects: every shape is
in the Blender world frame (Z up), wound counter-clockwise seen from outside, with per-corner UVs in
Blender's convention and a smooth procedural texture (rows top-down).
"""

from __future__ import annotations

import numpy as np

from ...protocol.assets import Mesh


def procedural_texture(size: int = 128, seed: int = 0, frequency: float = 3.0) -> np.ndarray:
    """[size, size, 4] uint8 RGBA: smooth coloured waves plus soft blobs, opaque.

    `frequency` is the highest number of cycles across the image; keep it well under size / 8 so bilinear
    resampling reproduces the texture closely.
    """
    if size < 4:
        raise ValueError(f"size must be >= 4, got {size}")
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / size
    img = np.zeros((size, size, 3))
    for c in range(3):
        for _ in range(3):
            fx, fy = rng.uniform(-frequency, frequency, 2)
            phase = rng.uniform(0, 2 * np.pi)
            img[..., c] += np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    img = 0.5 + 0.15 * img
    for _ in range(6):
        cx, cy = rng.uniform(0, 1, 2)
        colour = rng.uniform(0, 1, 3)
        d2 = (x - cx) ** 2 + (y - cy) ** 2
        weight = np.exp(-d2 / (2 * rng.uniform(0.04, 0.09) ** 2))[..., None]
        img = img * (1 - weight) + colour * weight
    rgba = np.concatenate([np.clip(img, 0, 1), np.ones((size, size, 1))], axis=-1)
    return np.round(rgba * 255).astype(np.uint8)


def uv_sphere(
    radius: float = 1.0,
    n_lon: int = 64,
    n_lat: int = 32,
    texture_size: int = 128,
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    seed: int = 0,
) -> Mesh:
    """A latitude-longitude sphere with equirectangular UVs (seam at longitude 0, u = lon / 2 pi).

    Vertices: two poles and (n_lat - 1) rings of n_lon; faces: 2 n_lon (n_lat - 1). The poles are on the
    Z axis (Blender up); v = 1 at the north pole.
    """
    if n_lon < 3 or n_lat < 2:
        raise ValueError(f"n_lon must be >= 3 and n_lat >= 2, got n_lon={n_lon}, n_lat={n_lat}")
    if radius <= 0:
        raise ValueError(f"radius must be > 0, got {radius}")
    theta = np.arange(1, n_lat) * np.pi / n_lat  # polar angle of each ring
    phi = np.arange(n_lon) * 2 * np.pi / n_lon
    rings = np.stack(
        [
            np.sin(theta)[:, None] * np.cos(phi)[None, :],
            np.sin(theta)[:, None] * np.sin(phi)[None, :],
            np.repeat(np.cos(theta)[:, None], n_lon, axis=1),
        ],
        axis=-1,
    ).reshape(-1, 3)
    north, south = 0, 1 + rings.shape[0]
    verts = np.concatenate([[[0, 0, 1]], rings, [[0, 0, -1]]]) * radius + np.asarray(center)

    def vid(i: int, j: int) -> int:  # ring i in [0, n_lat-2], longitude j (wrapped)
        return 1 + i * n_lon + (j % n_lon)

    faces, uvs = [], []
    for j in range(n_lon):
        u0, u1, um = j / n_lon, (j + 1) / n_lon, (j + 0.5) / n_lon
        v_first, v_last = 1 - 1 / n_lat, 1 / n_lat
        faces.append([north, vid(0, j), vid(0, j + 1)])
        uvs.append([[um, 1.0], [u0, v_first], [u1, v_first]])
        for i in range(n_lat - 2):
            va, vb = 1 - (i + 1) / n_lat, 1 - (i + 2) / n_lat
            a, b, c, d = vid(i, j), vid(i + 1, j), vid(i + 1, j + 1), vid(i, j + 1)
            faces += [[a, b, c], [a, c, d]]
            uvs += [[[u0, va], [u0, vb], [u1, vb]], [[u0, va], [u1, vb], [u1, va]]]
        last = n_lat - 2
        faces.append([south, vid(last, j + 1), vid(last, j)])
        uvs.append([[um, 0.0], [u1, v_last], [u0, v_last]])
    return Mesh(
        vertices=verts.astype(np.float32),
        faces=np.asarray(faces, dtype=np.int32),
        uvs=np.asarray(uvs, dtype=np.float32),
        texture=procedural_texture(texture_size, seed=seed),
    )


# Cube faces: (outward normal, in-plane axis for u, in-plane axis for v), counter-clockwise from outside.
_CUBE_SIDES = (
    ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
    ((0, 1, 0), (-1, 0, 0), (0, 0, 1)),
    ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    ((0, 0, 1), (1, 0, 0), (0, 1, 0)),
    ((0, 0, -1), (1, 0, 0), (0, -1, 0)),
)


def uv_cube(
    size: float = 1.0,
    subdivisions: int = 1,
    texture_size: int = 128,
    margin: float = 0.04,
    center: tuple[float, float, float] = (0.0, 0.0, 0.0),
    seed: int = 0,
) -> Mesh:
    """An axis-aligned cube of edge `size`, each side a grid of `subdivisions`^2 quads, UVs in a 3 x 2 atlas.

    Each side owns one atlas cell inset by `margin` (in UV units), so the islands are separated by gutters
    and the seams are real: corners shared in 3D carry different UVs on each side.
    """
    if subdivisions < 1:
        raise ValueError(f"subdivisions must be >= 1, got {subdivisions}")
    if size <= 0:
        raise ValueError(f"size must be > 0, got {size}")
    if not 0 <= margin < 1 / 6:
        raise ValueError(f"margin must be in [0, 1/6), got {margin}")
    n = subdivisions
    t = np.linspace(-0.5, 0.5, n + 1)
    verts, faces, uvs = [], [], []
    for side, (normal, eu, ev) in enumerate(_CUBE_SIDES):
        normal, eu, ev = (np.asarray(a, dtype=np.float64) for a in (normal, eu, ev))
        cell_u, cell_v = side % 3, side // 3
        u_lo, u_hi = cell_u / 3 + margin, (cell_u + 1) / 3 - margin
        v_lo, v_hi = cell_v / 2 + margin, (cell_v + 1) / 2 - margin
        base = len(verts)
        for b in t:
            for a in t:
                verts.append((0.5 * normal + a * eu + b * ev) * size + np.asarray(center))
        grid_uv = lambda ia, ib: (u_lo + (u_hi - u_lo) * ia / n, v_lo + (v_hi - v_lo) * ib / n)  # noqa: E731
        for ib in range(n):
            for ia in range(n):
                i00 = base + ib * (n + 1) + ia
                i10, i01, i11 = i00 + 1, i00 + n + 1, i00 + n + 2
                faces += [[i00, i10, i11], [i00, i11, i01]]
                uv00, uv10 = grid_uv(ia, ib), grid_uv(ia + 1, ib)
                uv01, uv11 = grid_uv(ia, ib + 1), grid_uv(ia + 1, ib + 1)
                uvs += [[uv00, uv10, uv11], [uv00, uv11, uv01]]
    return Mesh(
        vertices=np.asarray(verts, dtype=np.float32),
        faces=np.asarray(faces, dtype=np.int32),
        uvs=np.asarray(uvs, dtype=np.float32),
        texture=procedural_texture(texture_size, seed=seed),
    )
