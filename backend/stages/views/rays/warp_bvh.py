"""Ray queries with NVIDIA Warp: a BVH over the mesh (`wp.Mesh`) and `wp.mesh_query_ray`, all rays of all views
in one kernel launch, on CUDA or on Warp's CPU device. Tensors cross to and from torch without copies."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

import warp as wp

from . import Hits, RayQuery

wp.config.log_level = wp.LOG_WARNING  # no greeting, no per-module load lines

MAX_RAYS = 1 << 25
"""Rays per launch (33M: 64 views at 720 px); more are cast in several launches."""


@wp.kernel
def _cast_rays(mesh: wp.uint64, origins: wp.array(dtype=wp.vec3d), dirs: wp.array(dtype=wp.vec3d),
               tri: wp.array(dtype=wp.int64), t: wp.array(dtype=wp.float64), bary: wp.array(dtype=wp.vec3d)):
    i = wp.tid()
    o, d = origins[i], dirs[i]
    q = wp.mesh_query_ray(mesh, wp.vec3(float(o[0]), float(o[1]), float(o[2])),
                          wp.vec3(float(d[0]), float(d[1]), float(d[2])), 1.0e30)
    if q.result:
        tri[i] = wp.int64(q.face)
        t[i] = wp.float64(q.t)
        # Warp's u, v weigh the triangle's corners 0 and 1; corner 2 takes the rest
        bary[i] = wp.vec3d(wp.float64(q.u), wp.float64(q.v), wp.float64(1.0 - q.u - q.v))
    else:
        tri[i] = wp.int64(-1)


@wp.kernel
def _cast_cameras(mesh: wp.uint64, kinv: wp.array(dtype=wp.mat33), rot_t: wp.array(dtype=wp.mat33),
                  eye: wp.array(dtype=wp.vec3), width: int,
                  tri: wp.array(dtype=wp.int64), t: wp.array(dtype=wp.float64), bary: wp.array(dtype=wp.vec3d)):
    c, p = wp.tid()
    y = p // width
    x = p - y * width
    d = rot_t[c] @ (kinv[c] @ wp.vec3(float(x), float(y), 1.0))  # camera z = 1: t is the depth
    q = wp.mesh_query_ray(mesh, eye[c], d, 1.0e30)
    i = c * (tri.shape[0] // kinv.shape[0]) + p  # camera-major, then row-major pixels
    if q.result:
        tri[i] = wp.int64(q.face)
        t[i] = wp.float64(q.t)
        bary[i] = wp.vec3d(wp.float64(q.u), wp.float64(q.v), wp.float64(1.0 - q.u - q.v))
    else:
        tri[i] = wp.int64(-1)


class WarpRays(RayQuery):
    name = "warp"

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, device: str | torch.device = "cpu"):
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        self.device = dev
        self.wp_device = "cpu" if dev.type == "cpu" else f"cuda:{dev.index}"
        wp.init()
        pts = wp.array(np.ascontiguousarray(vertices, np.float32), dtype=wp.vec3, device=self.wp_device)
        idx = wp.array(np.ascontiguousarray(faces, np.int32).reshape(-1), dtype=wp.int32, device=self.wp_device)
        self.mesh = wp.Mesh(points=pts, indices=idx)
        self._keep = (pts, idx)  # the BVH refers to these arrays

    def _outputs(self, R: int) -> tuple[Tensor, Tensor, Tensor]:
        return (torch.full((R,), -1, dtype=torch.int64, device=self.device),
                torch.zeros(R, dtype=torch.float64, device=self.device),
                torch.zeros(R, 3, dtype=torch.float64, device=self.device))

    def cast(self, origins: Tensor, directions: Tensor) -> Hits:
        o = torch.as_tensor(origins).to(self.device, torch.float64).contiguous()
        d = torch.as_tensor(directions).to(self.device, torch.float64).contiguous()
        tri, t, bary = self._outputs(len(o))
        for s in range(0, len(o), MAX_RAYS):
            e = min(s + MAX_RAYS, len(o))
            wp.launch(_cast_rays, dim=e - s, device=self.wp_device,
                      inputs=[self.mesh.id, wp.from_torch(o[s:e], dtype=wp.vec3d), wp.from_torch(d[s:e], dtype=wp.vec3d)],
                      outputs=[wp.from_torch(tri[s:e]), wp.from_torch(t[s:e]), wp.from_torch(bary[s:e], dtype=wp.vec3d)])
        wp.synchronize_device(self.wp_device)
        return Hits(tri, t, bary)

    def cast_cameras(self, Kinv: Tensor, rot_t: Tensor, eye: Tensor, height: int, width: int) -> Hits:
        C, P = len(Kinv), height * width
        tri, t, bary = self._outputs(C * P)
        mats = [torch.as_tensor(m).to(self.device, torch.float32).contiguous() for m in (Kinv, rot_t, eye)]
        per = max(1, MAX_RAYS // max(P, 1))
        for s in range(0, C, per):
            e = min(s + per, C)
            wp.launch(_cast_cameras, dim=(e - s, P), device=self.wp_device,
                      inputs=[self.mesh.id, wp.from_torch(mats[0][s:e], dtype=wp.mat33),
                              wp.from_torch(mats[1][s:e], dtype=wp.mat33), wp.from_torch(mats[2][s:e], dtype=wp.vec3),
                              width],
                      outputs=[wp.from_torch(tri[s * P:e * P]), wp.from_torch(t[s * P:e * P]),
                               wp.from_torch(bary[s * P:e * P], dtype=wp.vec3d)])
        wp.synchronize_device(self.wp_device)
        return Hits(tri, t, bary)
