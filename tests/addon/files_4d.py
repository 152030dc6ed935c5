"""Files of a 4D job for the add-on tests: PC2 written with the contract's exact layout, bound splats, splat
sequences, and the backend's own writers (mesh.glb, animation.pc2) run in the backend's Python."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from files import random_splats, write_ply


def write_contract_pc2(path: Path, frames: np.ndarray, start: int, sampling: int) -> Path:
    """The contract's layout, written here by hand: `<12siiffi` header, then float32 xyz per vertex per frame."""
    frames = np.ascontiguousarray(frames, dtype="<f4")
    head = struct.pack("<12siiffi", b"POINTCACHE2\0", 1, frames.shape[1], float(start), float(sampling), len(frames))
    path.write_bytes(head + frames.tobytes())
    return path


def triangle_frame_normals(points: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """[T, 3] unit normals of the triangles of `points` [V, 3]."""
    p0, p1, p2 = (points[faces[:, k]].astype(np.float64) for k in range(3))
    n = np.cross(p1 - p0, p2 - p0)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


def bound_centres(points: np.ndarray, faces: np.ndarray, face, u, v, offset) -> np.ndarray:
    """The contract's binding: (1-u-v) P[f0] + u P[f1] + v P[f2] + offset * unit normal, float64."""
    tri = faces[face]
    p0, p1, p2 = (points[tri[:, k]].astype(np.float64) for k in range(3))
    normal = triangle_frame_normals(points, faces)[face]
    return ((1 - u - v)[:, None] * p0 + u[:, None] * p1 + v[:, None] * p2 + offset[:, None] * normal)


def bound_splat_fields(rest: np.ndarray, faces: np.ndarray, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """n random Gaussians bound to the triangles of the rest mesh: standard 3DGS fields (their centres at the
    binding's rest point) plus bind_face, bind_u, bind_v, bind_offset, bind_rot_0..3, bind_scale_0..2."""
    rng = np.random.default_rng(seed)
    fields = random_splats(n, sh_degree=1, seed=seed)
    face = rng.integers(0, len(faces), size=n).astype(np.int32)
    a, b = rng.uniform(size=n), rng.uniform(size=n)
    flip = a + b > 1
    a[flip], b[flip] = 1 - a[flip], 1 - b[flip]
    offset = rng.uniform(-0.02, 0.02, size=n)
    centre = bound_centres(rest, faces, face, a, b, offset)
    for k, axis in enumerate("xyz"):
        fields[axis] = centre[:, k].astype(np.float32)
    fields["bind_face"] = face
    fields["bind_u"], fields["bind_v"] = a.astype(np.float32), b.astype(np.float32)
    fields["bind_offset"] = offset.astype(np.float32)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for k in range(4):
        fields[f"bind_rot_{k}"] = q[:, k].astype(np.float32)
    for k in range(3):
        fields[f"bind_scale_{k}"] = fields[f"scale_{k}"].copy()
    return fields


def write_sequence(folder: Path, frames: dict[int, np.ndarray], seed: int = 0) -> list[Path]:
    """splats/frame_NNNN.ply files: the same random Gaussians, their centres from `frames` {frame: [N, 3]}."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for frame, centres in frames.items():
        fields = random_splats(len(centres), sh_degree=0, seed=seed)
        for k, axis in enumerate("xyz"):
            fields[axis] = centres[:, k].astype(np.float32)
        paths.append(write_ply(folder / f"frame_{frame:04d}.ply", fields))
    return paths


_BACKEND_WRITE = """
import sys, numpy as np
from likeness3d.backend.export.glb import write_glb
from likeness3d.protocol.assets import Mesh
from likeness3d.protocol.pc2 import write_pc2
d = np.load(sys.argv[1])
write_glb(Mesh(d["vertices"], d["faces"], d["uvs"], d["texture"]), path=sys.argv[2])
write_pc2(sys.argv[3], d["frames"], float(d["start"]), float(d["sampling"]))
"""


def backend_writes(folder: Path, vertices, faces, uvs, texture, frames, start: int, sampling: int):
    """mesh.glb and animation.pc2 written by the backend's own writers, in the backend's Python."""
    python = os.environ.get("LIKENESS3D_TEST_SERVER_PYTHON")
    if not python:
        pytest.skip("the backend's writers need the backend's Python: set LIKENESS3D_TEST_SERVER_PYTHON")
    arrays = folder / "arrays.npz"
    np.savez(arrays, vertices=vertices, faces=faces, uvs=uvs, texture=texture, frames=frames,
             start=start, sampling=sampling)
    glb, pc2 = folder / "mesh.glb", folder / "animation.pc2"
    subprocess.run([python, "-c", _BACKEND_WRITE, str(arrays), str(glb), str(pc2)], check=True, timeout=300)
    return glb, pc2


_BACKEND_BIND = """
import sys, numpy as np
from pathlib import Path
from likeness3d.backend.export.ply import write_ply
from likeness3d.backend.stages.animation.binding import bind
d = np.load(sys.argv[1])
out = Path(sys.argv[2])
rng = np.random.default_rng(int(d["seed"]))
v, f, n = d["rest"].astype(np.float64), d["faces"].astype(np.int64), int(d["n"])
face = rng.integers(0, len(f), n)
a, b = rng.uniform(size=n), rng.uniform(size=n)
a, b = np.where(a + b > 1, 1 - a, a), np.where(a + b > 1, 1 - b, b)
tri = v[f[face]]
normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
normal /= np.linalg.norm(normal, axis=1, keepdims=True)
means = tri[:, 0] + a[:, None] * (tri[:, 1] - tri[:, 0]) + b[:, None] * (tri[:, 2] - tri[:, 0])
means += rng.uniform(-0.01, 0.01, size=(n, 1)) * normal
arrays = {"means": means.astype(np.float32), "quats": rng.normal(size=(n, 4)).astype(np.float32),
          "log_scales": rng.uniform(-5, -2, size=(n, 3)).astype(np.float32),
          "logit_opacities": rng.normal(size=n).astype(np.float32),
          "sh": rng.normal(0, 0.3, (n, 4, 3)).astype(np.float32)}
# as backend/pipelines/tire_4d.py export_animation writes a 4D job's splats
binding = bind(arrays["means"], arrays["quats"], arrays["log_scales"], v, f)
write_ply(out / "splats.ply", **arrays, pad_to_degree=1, extra=binding.to_extra())
(out / "splats").mkdir(exist_ok=True)
for frame, number in zip(d["frames"], d["numbers"].tolist()):
    centre, rot, scale = binding.pose(frame, f)
    write_ply(out / "splats" / f"frame_{number:04d}.ply", **(arrays | {"means": centre, "quats": rot}), pad_to_degree=1)
"""


def backend_bound_splats(folder: Path, rest, faces, frames, numbers, n: int, seed: int = 0) -> Path:
    """n random Gaussians near the rest mesh, bound by the backend's own `bind` and written as a 4D job writes
    them: `splats.ply` (rest, with the binding) and `splats/frame_NNNN.ply` (posed by the backend at each
    frame: the ground truth of a bound splat's centre, rotation and scale). Runs in the backend's Python."""
    python = os.environ.get("LIKENESS3D_TEST_SERVER_PYTHON")
    if not python:
        pytest.skip("the backend's binding needs the backend's Python: set LIKENESS3D_TEST_SERVER_PYTHON")
    arrays = folder / "binding.npz"
    np.savez(arrays, rest=rest, faces=faces, frames=frames, numbers=np.asarray(numbers), n=n, seed=seed)
    subprocess.run([python, "-c", _BACKEND_BIND, str(arrays), str(folder)], check=True, timeout=300)
    return folder / "splats.ply"


def shepperd_cases(points: np.ndarray, faces: np.ndarray) -> set[int]:
    """Which of the four quaternion candidates (w, x, y, z: the first with 4 q_k^2 >= 1) each triangle's
    frame (x = unit(P1 - P0), z = unit normal, y = z x x) takes: a test target should reach all four."""
    p0, p1, p2 = (points[faces[:, k]].astype(np.float64) for k in range(3))
    x = (p1 - p0) / np.linalg.norm(p1 - p0, axis=1, keepdims=True)
    z = triangle_frame_normals(points, faces)
    y = np.cross(z, x)
    tr = x[:, 0] + y[:, 1] + z[:, 2]
    t = np.stack([1 + tr, 1 + 2 * x[:, 0] - tr, 1 + 2 * y[:, 1] - tr, 1 + 2 * z[:, 2] - tr], axis=1)
    return set(np.argmax(t >= 1 - 1e-9, axis=1).tolist())
