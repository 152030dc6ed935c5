"""Per-pixel passes of a textured mesh from any camera: depth, normal, mask, triangle id, UV, colour.

Why ray casting with Embree (through trimesh + embreex) rather than a rasteriser: it runs on any CPU (the
backend must work without a GPU, DESIGN.md section 7) with no OpenGL/EGL context, which headless servers
and CI machines often lack; it is exact per pixel centre (the OpenCV camera model, no near/far clipping,
no depth-buffer quantisation), so the analytic tests hold to float precision; Embree's BVH traversal casts
millions of rays per second, enough for the orbits and reference views the pipelines render (a 512 x 512
view is 262k rays); and the same ray queries answer point-visibility questions elsewhere. GPU
rasterisation (nvdiffrast) would be faster but needs CUDA and an extra compiled dependency.

One ray per pixel through the pixel centre (integer coordinates of K), so passes are point-sampled;
`mesh_rgba` supersamples for an antialiased picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .cameras import Cameras
from ....protocol.assets import Mesh
from .meshes import as_mesh, face_normals, sample_texture, texture_float, to_trimesh


@dataclass
class MeshPasses:
    """Point-sampled passes of one mesh seen by C cameras (background: mask False, zeros, tri -1)."""

    mask: Tensor
    """[C, H, W] bool, the pixel's ray hits the mesh."""
    depth: Tensor
    """[C, H, W] float32 camera z-depth (OpenCV +z), 0 on background."""
    points: Tensor
    """[C, H, W, 3] float32 world position of the hit."""
    normal: Tensor
    """[C, H, W, 3] float32 unit world normal (face normal, or smooth with normals="smooth")."""
    tri: Tensor
    """[C, H, W] int64 index of the hit triangle, -1 on background."""
    bary: Tensor
    """[C, H, W, 3] float32 barycentric coordinates of the hit in its triangle."""
    uv: Tensor
    """[C, H, W, 2] float32 UV at the hit (Blender convention), 0 without UVs."""
    rgb: Tensor
    """[C, H, W, 3] float32 unlit texture colour; without a texture, grey shaded by the view cosine."""


class Raycaster:
    """An Embree scene of one mesh; cast camera rays or arbitrary rays against it."""

    def __init__(self, mesh: Mesh):
        mesh = as_mesh(mesh)
        try:
            from trimesh.ray.ray_pyembree import RayMeshIntersector
        except ImportError as exc:  # embreex missing: trimesh's pure-Python fallback is far too slow
            raise ImportError("mesh passes need Embree: pip install embreex (the backend extra has it)") from exc
        self.mesh = mesh
        self.vertices = np.asarray(mesh.vertices, dtype=np.float64)
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        self.tm = to_trimesh(mesh)
        self.intersector = RayMeshIntersector(self.tm)
        self.face_normals = face_normals(self.vertices, self.faces)
        self.texture = texture_float(mesh.texture) if mesh.texture is not None else None

    def first_hits(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit of each ray [R, 3]: (triangle id [R] with -1 for a miss, location [R, 3])."""
        tri = np.full(len(origins), -1, dtype=np.int64)
        loc = np.zeros((len(origins), 3), dtype=np.float64)
        if len(origins) == 0:
            return tri, loc
        index_tri, index_ray, locations = self.intersector.intersects_id(
            origins, directions, multiple_hits=False, return_locations=True
        )
        tri[index_ray] = index_tri
        loc[index_ray] = locations
        return tri, loc

    def passes(self, cameras: Cameras, normals: str = "face") -> MeshPasses:
        """All passes for every camera (rays through pixel centres)."""
        if normals not in ("face", "smooth"):
            raise ValueError(f"normals must be 'face' or 'smooth', got {normals!r}")
        C, H, W = len(cameras), cameras.height, cameras.width
        Ks = cameras.Ks.double().cpu().numpy()
        vm = cameras.viewmats.double().cpu().numpy()
        ys, xs = np.mgrid[0:H, 0:W]
        pix = np.stack([xs.ravel(), ys.ravel(), np.ones(H * W)], axis=0).astype(np.float64)  # [3, HW]
        out = {k: [] for k in ("mask", "depth", "points", "normal", "tri", "bary", "uv", "rgb")}
        for c in range(C):
            R, t = vm[c, :3, :3], vm[c, :3, 3]
            d_cam = np.linalg.inv(Ks[c]) @ pix  # z = 1: a hit at ray parameter s has depth s
            dirs = (R.T @ d_cam).T
            origin = -R.T @ t
            tri, loc = self.first_hits(np.broadcast_to(origin, dirs.shape).copy(), dirs)
            hit = tri >= 0
            depth = np.where(hit, (loc @ R.T + t)[:, 2], 0.0)
            bary = np.zeros((H * W, 3))
            if hit.any():
                bary[hit] = barycentric(self.vertices[self.faces[tri[hit]]], loc[hit])
            nrm = self._normals(tri, bary, hit, normals)
            uv = np.zeros((H * W, 2))
            if self.mesh.uvs is not None and hit.any():
                uv[hit] = (np.asarray(self.mesh.uvs, dtype=np.float64)[tri[hit]] * bary[hit, :, None]).sum(1)
            rgb = np.zeros((H * W, 3))
            if hit.any():
                if self.texture is not None and self.mesh.uvs is not None:
                    rgb[hit] = sample_texture(self.texture, uv[hit])
                else:
                    view = dirs[hit] / np.linalg.norm(dirs[hit], axis=1, keepdims=True)
                    cos = np.abs((nrm[hit] * view).sum(1, keepdims=True))
                    rgb[hit] = 0.8 * (0.25 + 0.75 * cos)
            for key, value in (("mask", hit), ("depth", depth), ("points", np.where(hit[:, None], loc, 0)),
                               ("normal", nrm), ("tri", tri), ("bary", bary), ("uv", uv), ("rgb", rgb)):
                out[key].append(value.reshape((H, W) + value.shape[1:]))
        dtypes = {"mask": torch.bool, "tri": torch.int64}
        return MeshPasses(**{k: torch.as_tensor(np.stack(v), dtype=dtypes.get(k, torch.float32))
                             for k, v in out.items()})

    def _normals(self, tri: np.ndarray, bary: np.ndarray, hit: np.ndarray, mode: str) -> np.ndarray:
        nrm = np.zeros((len(tri), 3))
        if not hit.any():
            return nrm
        if mode == "face":
            nrm[hit] = self.face_normals[tri[hit]]
        else:
            vn = np.asarray(self.tm.vertex_normals, dtype=np.float64)
            n = (vn[self.faces[tri[hit]]] * bary[hit, :, None]).sum(1)
            nrm[hit] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        return nrm


def barycentric(triangles: np.ndarray, points: np.ndarray) -> np.ndarray:
    """[R, 3] barycentric coordinates of `points` [R, 3] in `triangles` [R, 3, 3] (clipped to [0, 1])."""
    a, b, c = triangles[:, 0], triangles[:, 1], triangles[:, 2]
    v0, v1, v2 = b - a, c - a, points - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    denom = d00 * d11 - d01 * d01
    denom = np.where(np.abs(denom) > 1e-30, denom, 1.0)
    w1 = (d11 * d20 - d01 * d21) / denom
    w2 = (d00 * d21 - d01 * d20) / denom
    bary = np.clip(np.stack([1 - w1 - w2, w1, w2], axis=1), 0.0, 1.0)
    return bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)


def mesh_passes(mesh: Mesh, cameras: Cameras, normals: str = "face") -> MeshPasses:
    """Depth, normal, mask, triangle id, barycentrics, UV and colour of `mesh` for every camera."""
    return Raycaster(mesh).passes(cameras, normals)


def mesh_rgba(
    mesh: Mesh | Raycaster,
    cameras: Cameras,
    supersample: int = 2,
    background: tuple[float, float, float] | None = None,
) -> Tensor:
    """[C, H, W, 4] antialiased straight-alpha RGBA renders (supersample^2 rays per pixel, box filter).

    With `background`, RGB is composited over it and alpha is still the coverage.
    """
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    caster = mesh if isinstance(mesh, Raycaster) else Raycaster(mesh)
    s = supersample
    hi = caster.passes(cameras.resized(cameras.width * s, cameras.height * s))
    C, H, W = len(cameras), cameras.height, cameras.width
    cover = hi.mask.float().reshape(C, H, s, W, s).mean(dim=(2, 4))
    premult = (hi.rgb * hi.mask[..., None]).reshape(C, H, s, W, s, 3).mean(dim=(2, 4))
    rgb = premult / cover.clamp_min(1e-8)[..., None]
    if background is not None:
        bg = torch.as_tensor(background, dtype=torch.float32)
        rgb = premult + bg * (1 - cover[..., None])
    return torch.cat([rgb, cover[..., None]], dim=-1)
