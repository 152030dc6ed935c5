"""Ray queries with Embree (trimesh + embreex): CPU, multi-threaded, the backend's default off CUDA."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import Hits, RayQuery

CHUNK = 1 << 21
"""Rays per Embree call (bounds the float64 copies trimesh makes)."""


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


class EmbreeRays(RayQuery):
    name = "embree"
    device = torch.device("cpu")

    def __init__(self, vertices: np.ndarray, faces: np.ndarray):
        import trimesh

        try:
            from trimesh.ray.ray_pyembree import RayMeshIntersector
        except ImportError as exc:  # embreex missing: trimesh's pure-Python fallback is far too slow
            raise ImportError("mesh passes need Embree: pip install embreex (the backend extra has it)") from exc
        self.vertices = np.asarray(vertices, dtype=np.float64)
        self.faces = np.asarray(faces, dtype=np.int64)
        tm = trimesh.Trimesh(vertices=self.vertices, faces=self.faces, process=False, validate=False)
        self.intersector = RayMeshIntersector(tm)

    def cast(self, origins: Tensor, directions: Tensor) -> Hits:
        o = np.asarray(torch.as_tensor(origins).detach().cpu().double().numpy())
        d = np.asarray(torch.as_tensor(directions).detach().cpu().double().numpy())
        R = len(o)
        tri = np.full(R, -1, dtype=np.int64)
        t = np.zeros(R)
        bary = np.zeros((R, 3))
        for s in range(0, R, CHUNK):
            oc, dc = np.ascontiguousarray(o[s:s + CHUNK]), np.ascontiguousarray(d[s:s + CHUNK])
            index_tri, index_ray, loc = self.intersector.intersects_id(oc, dc, multiple_hits=False,
                                                                       return_locations=True)
            if not len(index_ray):
                continue
            rays = index_ray + s
            tri[rays] = index_tri
            dd = dc[index_ray]
            t[rays] = ((loc - oc[index_ray]) * dd).sum(1) / np.maximum((dd * dd).sum(1), 1e-300)
            bary[rays] = barycentric(self.vertices[self.faces[index_tri]], loc)
        return Hits(torch.from_numpy(tri), torch.from_numpy(t), torch.from_numpy(bary))
