"""Gaussians bound to a triangle mesh (resplat, 4D): triangle, barycentric (u, v), offset along the unit normal,
rotation and log scale in the triangle's frame, so the splats follow any deformation of the mesh exactly.

The triangle's frame: x = unit(P1 - P0), z = the unit normal, y = z x x (not scaled). A splat's centre is
(1 - u - v) P0 + u P1 + v P2 + offset n, its rotation frame @ local, its scale the bound log scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .poses import unit_face_normals

EXTRA = ("bind_face", "bind_u", "bind_v", "bind_offset", "bind_rot_0", "bind_rot_1", "bind_rot_2", "bind_rot_3",
         "bind_scale_0", "bind_scale_1", "bind_scale_2")
"""The PLY properties of a binding (bind_face int32, the rest float32)."""


def triangle_frames(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[F, 3, 3] rotation of each triangle's frame (columns x, y, z) in world axes."""
    v = np.asarray(vertices, np.float64)
    tri = v[faces]
    x = tri[:, 1] - tri[:, 0]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-20)
    z = unit_face_normals(v, faces)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=2)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """[N, 4] quaternions wxyz (any length) -> [N, 3, 3]."""
    q = np.asarray(q, np.float64)
    w, x, y, z = (q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-20)).T
    return np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ], axis=1)


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """[N, 3, 3] rotations -> [N, 4] unit quaternions wxyz with w >= 0."""
    R = np.asarray(R, np.float64)
    t = np.stack([1 + R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2], 1 + R[:, 0, 0] - R[:, 1, 1] - R[:, 2, 2],
                  1 - R[:, 0, 0] + R[:, 1, 1] - R[:, 2, 2], 1 - R[:, 0, 0] - R[:, 1, 1] + R[:, 2, 2]], 1)
    k = t.argmax(1)
    s = 0.5 / np.sqrt(np.maximum(t[np.arange(len(R)), k], 1e-20))
    q = np.zeros((len(R), 4))
    c = [(R[:, 2, 1] - R[:, 1, 2]), (R[:, 0, 2] - R[:, 2, 0]), (R[:, 1, 0] - R[:, 0, 1])]
    a = [(R[:, 0, 1] + R[:, 1, 0]), (R[:, 0, 2] + R[:, 2, 0]), (R[:, 1, 2] + R[:, 2, 1])]
    rows = {
        0: lambda: np.stack([t[:, 0] * s, c[0] * s, c[1] * s, c[2] * s], 1),
        1: lambda: np.stack([c[0] * s, t[:, 1] * s, a[0] * s, a[1] * s], 1),
        2: lambda: np.stack([c[1] * s, a[0] * s, t[:, 2] * s, a[2] * s], 1),
        3: lambda: np.stack([c[2] * s, a[1] * s, a[2] * s, t[:, 3] * s], 1),
    }
    for case, make in rows.items():
        sel = k == case
        if sel.any():
            q[sel] = make()[sel]
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return np.where(q[:, :1] < 0, -q, q)


@dataclass
class Binding:
    """N splats bound to triangles."""

    face: np.ndarray
    """[N] int32 triangle index."""
    u: np.ndarray
    """[N] float32 barycentric weight of P1."""
    v: np.ndarray
    """[N] float32 barycentric weight of P2."""
    offset: np.ndarray
    """[N] float32 distance along the triangle's unit normal."""
    rot: np.ndarray
    """[N, 4] float32 wxyz rotation in the triangle's frame."""
    log_scale: np.ndarray
    """[N, 3] float32."""

    def to_extra(self) -> dict[str, np.ndarray]:
        """The PLY properties named in EXTRA."""
        out = {"bind_face": self.face.astype(np.int32), "bind_u": self.u, "bind_v": self.v, "bind_offset": self.offset}
        out |= {f"bind_rot_{i}": self.rot[:, i] for i in range(4)}
        out |= {f"bind_scale_{i}": self.log_scale[:, i] for i in range(3)}
        return {k: np.ascontiguousarray(v, np.int32 if k == "bind_face" else np.float32) for k, v in out.items()}

    def pose(self, vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres [N, 3], rotations wxyz [N, 4] and log scales [N, 3] of the splats on the mesh posed at `vertices`."""
        v = np.asarray(vertices, np.float64)
        f = np.asarray(faces, np.int64)[self.face]
        u, w = self.u.astype(np.float64)[:, None], self.v.astype(np.float64)[:, None]
        n = unit_face_normals(v, np.asarray(faces, np.int64))[self.face]
        centre = (1 - u - w) * v[f[:, 0]] + u * v[f[:, 1]] + w * v[f[:, 2]] + self.offset.astype(np.float64)[:, None] * n
        frames = triangle_frames(v, np.asarray(faces, np.int64))[self.face]
        rot = matrix_to_quat(frames @ quat_to_matrix(self.rot))
        return centre.astype(np.float32), rot.astype(np.float32), self.log_scale.astype(np.float32)


def bind(means: np.ndarray, quats: np.ndarray, log_scales: np.ndarray, vertices: np.ndarray, faces: np.ndarray,
         candidates: int = 16) -> Binding:
    """Bind N splats (means [N, 3], quats wxyz [N, 4], log_scales [N, 3]) to the nearest non-degenerate triangle of
    the mesh (vertices [V, 3], faces [F, 3]); the binding reproduces the given centre and rotation exactly."""
    from scipy.spatial import cKDTree

    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    p = np.asarray(means, np.float64)
    tri = v[f]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    usable = np.nonzero(area2 > 1e-12 * max(float(area2.max()), 1e-30))[0]
    if len(usable) == 0:
        raise ValueError("the mesh has no triangle with an area to bind splats to")
    k = min(candidates, len(usable))
    _, near = cKDTree(tri[usable].mean(1)).query(p, k=k)
    near = usable[np.asarray(near).reshape(len(p), k)]  # [N, k]
    a, b, c = tri[near, 0], tri[near, 1], tri[near, 2]  # [N, k, 3]
    e1, e2, d = b - a, c - a, p[:, None] - a
    d11, d12, d22 = (e1 * e1).sum(-1), (e1 * e2).sum(-1), (e2 * e2).sum(-1)
    d1, d2 = (d * e1).sum(-1), (d * e2).sum(-1)
    den = d11 * d22 - d12 * d12
    uu = (d22 * d1 - d12 * d2) / den
    vv = (d11 * d2 - d12 * d1) / den
    # distance to the triangle, approximately: to the clamped barycentric point
    cu, cv = np.clip(uu, 0, 1), np.clip(vv, 0, 1)
    over = cu + cv > 1
    tot = np.maximum(cu + cv, 1e-20)
    cu, cv = np.where(over, cu / tot, cu), np.where(over, cv / tot, cv)
    closest = a + cu[..., None] * e1 + cv[..., None] * e2
    best = np.linalg.norm(p[:, None] - closest, axis=-1).argmin(1)
    rows = np.arange(len(p))
    face = near[rows, best]
    u, w = uu[rows, best], vv[rows, best]
    n = unit_face_normals(v, f)[face]
    on_plane = a[rows, best] + u[:, None] * e1[rows, best] + w[:, None] * e2[rows, best]
    offset = ((p - on_plane) * n).sum(1)
    local = np.transpose(triangle_frames(v, f)[face], (0, 2, 1)) @ quat_to_matrix(quats)
    return Binding(face.astype(np.int32), u.astype(np.float32), w.astype(np.float32), offset.astype(np.float32),
                   matrix_to_quat(local).astype(np.float32), np.asarray(log_scales, np.float32))
