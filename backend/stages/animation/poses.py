"""An animated mesh of fixed topology: the rest pose the UVs and texture belong to, and its posed frames.

Surface identity is a (triangle, barycentric) pair: the same pair names the same surface point at every frame,
so a point seen at frame t is found at any other frame by interpolating that frame's vertex positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ....protocol.assets import Mesh


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[V, 3] area-weighted unit vertex normals of a triangle mesh (zero on an isolated vertex)."""
    v = np.asarray(vertices, np.float64)
    tri = v[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])  # length = twice the area
    out = np.zeros_like(v)
    for k in range(3):
        np.add.at(out, faces[:, k], fn)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-20)


def unit_face_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[F, 3] unit face normals (zero on a degenerate triangle)."""
    v = np.asarray(vertices, np.float64)
    tri = v[faces]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.where(length > 1e-20, n / np.maximum(length, 1e-30), 0.0)


@dataclass
class Animation:
    """The poses of an animated protocol Mesh. A frame of None is the rest pose (`mesh.vertices`)."""

    mesh: Mesh
    _casters: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.mesh.frames is None:
            raise ValueError("Animation needs a mesh with frames")
        self.faces = np.asarray(self.mesh.faces, np.int64)
        self.numbers = [int(n) for n in self.mesh.frame_numbers]
        self._row = {n: i for i, n in enumerate(self.numbers)}

    def __len__(self) -> int:
        return len(self.numbers)

    def vertices(self, frame: int | None) -> np.ndarray:
        """[V, 3] float64 positions at a scene frame (None: the rest pose)."""
        if frame is None:
            return np.asarray(self.mesh.vertices, np.float64)
        return np.asarray(self.mesh.frames[self._row[int(frame)]], np.float64)

    def posed(self, frame: int | None) -> Mesh:
        """The mesh at a frame: same faces, UVs and texture, that frame's positions, no animation."""
        m = self.mesh
        return Mesh(np.ascontiguousarray(self.vertices(frame), np.float32), m.faces, m.uvs, m.texture)

    def caster(self, frame: int | None):
        """A Raycaster of the posed mesh (built once per frame)."""
        if frame not in self._casters:
            from ..views.mesh_passes import Raycaster

            self._casters[frame] = Raycaster(self.posed(frame))
        return self._casters[frame]

    def points(self, frame: int | None, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """[N, 3] positions at `frame` of the surface points (tri [N], bary [N, 3])."""
        v = self.vertices(frame)
        return (v[self.faces[tri]] * np.asarray(bary, np.float64)[..., None]).sum(-2)

    def smooth_normals(self, frame: int | None, tri: np.ndarray, bary: np.ndarray) -> np.ndarray:
        """[N, 3] unit interpolated vertex normals at `frame` of the surface points."""
        vn = vertex_normals(self.vertices(frame), self.faces)
        n = (vn[self.faces[tri]] * np.asarray(bary, np.float64)[..., None]).sum(-2)
        return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-20)

    def face_normals(self, frame: int | None, tri: np.ndarray) -> np.ndarray:
        """[N, 3] unit face normals at `frame` of triangles `tri`."""
        return unit_face_normals(self.vertices(frame), self.faces)[tri]
