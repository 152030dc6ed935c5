"""Ray queries against a triangle mesh, with two implementations behind one interface.

`embree` (trimesh + embreex, CPU, multi-threaded) and `warp` (NVIDIA Warp's BVH: `wp.Mesh` and
`wp.mesh_query_ray` in one kernel launch for all rays of all views, on CUDA or on Warp's CPU device). Every mesh
pass, the texel lookup, the view planner and the bake cast their rays through a `RayQuery`, so the choice is made
once per job (`ray_backend`: auto | embree | warp) and written to its report.

`auto` picks Warp on a CUDA job device and Embree on the CPU: there Warp's CPU device casts 2-3x more rays a
second but whole stages gain at most ~10 % (the work around the casts dominates), less than Warp's kernel
compile on a machine's first job (~6 s); see docs/BENCHMARKS.md. `warp` on the CPU is there to ask for.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

BACKENDS = ("auto", "embree", "warp")
WARP_MISSING = ("ray_backend 'warp' needs NVIDIA Warp, which this backend's Python lacks: pip install warp-lang "
                "(it is in the backend extra: pip install 'likeness3d[backend]'), or set ray_backend to 'embree'")


@dataclass(frozen=True)
class RaySpec:
    """Which ray backend a job casts with, and its job device (Warp runs there; Embree always on the CPU)."""

    backend: str = "auto"
    """auto | embree | warp (see `resolve`)."""
    device: str = "cpu"
    """The job's torch device ("cpu", "cuda", "cuda:1")."""


@dataclass
class Hits:
    """The nearest hit of each of R rays (a miss: tri -1, t 0, bary 0)."""

    tri: Tensor
    """[R] int64 index of the hit triangle, -1 on a miss."""
    t: Tensor
    """[R] float64 ray parameter of the hit, in multiples of the direction's length."""
    bary: Tensor
    """[R, 3] float64 barycentric coordinates of the hit in its triangle (weights of its corners 0, 1, 2)."""


class RayQuery:
    """Nearest-hit queries against one mesh. Subclasses implement `cast`; `cast_cameras` may be overridden to
    make the camera rays where they are cast."""

    name: str = ""
    device: torch.device = torch.device("cpu")
    """Where `cast` and `cast_cameras` return their tensors."""

    def cast(self, origins: Tensor, directions: Tensor) -> Hits:
        """origins, directions [R, 3] (float64; the directions need not be unit)."""
        raise NotImplementedError

    def cast_cameras(self, Kinv: Tensor, rot_t: Tensor, eye: Tensor, height: int, width: int) -> Hits:
        """Rays through every pixel centre of C cameras: Kinv [C, 3, 3] (inverse intrinsics), rot_t [C, 3, 3]
        (camera-to-world rotation), eye [C, 3] (camera centres). Returns hits [C * H * W] in camera-major,
        row-major order; a ray's direction has camera z = 1, so t is the hit's camera depth."""
        dirs = camera_directions(Kinv.to(self.device), rot_t.to(self.device), height, width)  # [C, HW, 3]
        origins = eye.to(self.device, torch.float64)[:, None].expand_as(dirs)
        return self.cast(origins.reshape(-1, 3), dirs.reshape(-1, 3))


def camera_directions(Kinv: Tensor, rot_t: Tensor, height: int, width: int) -> Tensor:
    """[C, H * W, 3] float64 world directions through the pixel centres (integer coordinates), camera z = 1."""
    dev = Kinv.device
    ys, xs = torch.meshgrid(torch.arange(height, device=dev, dtype=torch.float64),
                            torch.arange(width, device=dev, dtype=torch.float64), indexing="ij")
    pix = torch.stack([xs.reshape(-1), ys.reshape(-1), torch.ones(height * width, device=dev, dtype=torch.float64)])
    return (rot_t.double() @ Kinv.double() @ pix).transpose(1, 2)


def warp_available() -> bool:
    return importlib.util.find_spec("warp") is not None


def resolve(backend: str, device: str | torch.device = "cpu") -> tuple[str, str]:
    """(implementation, why) for a `ray_backend` setting on a job device. Raises ValueError for an unknown name
    and ImportError (saying what to install) when Warp is asked for and missing."""
    if backend not in BACKENDS:
        raise ValueError(f"ray_backend must be one of {list(BACKENDS)}, got {backend!r}")
    cuda = torch.device(device).type == "cuda"
    if backend == "warp":
        if not warp_available():
            raise ImportError(WARP_MISSING)
        return "warp", "asked for"
    if backend == "embree":
        return "embree", "asked for"
    if cuda and warp_available():
        return "warp", "auto: the job runs on CUDA"
    if cuda:
        return "embree", "auto: the job runs on CUDA but warp-lang is not installed (Embree on the CPU, slower)"
    return "embree", "auto: the job runs on the CPU (Embree; Warp's CPU device gains little there)"


def ray_query(vertices: np.ndarray, faces: np.ndarray, spec: RaySpec = RaySpec()) -> RayQuery:
    """A `RayQuery` over vertices [V, 3] and faces [F, 3] (counter-clockwise), by `resolve`'s choice; Warp runs
    on the spec's device (a CUDA job device, or the CPU)."""
    kind, why = resolve(spec.backend, spec.device)
    if kind == "warp":
        from .warp_bvh import WarpRays

        q: RayQuery = WarpRays(vertices, faces, spec.device)
    else:
        from .embree import EmbreeRays

        q = EmbreeRays(vertices, faces)
    q.why = why
    return q


def describe(q: RayQuery) -> dict:
    """What report.json records of the ray backend that ran."""
    return {"backend": q.name, "device": str(q.device), "why": getattr(q, "why", "")}
