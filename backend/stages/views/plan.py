"""View planning from the geometry: after the orbit, add target views until every used texel is seen.

An orbit at a few elevations misses what faces down (undersides), what hides behind other parts (the inside
of a horn's curl, a chin) and what faces up past the top ring. Given the texels' surface points and normals,
the planner marks what the existing views (the orbit and the references) see at a usable angle, then adds
views greedily, each the candidate that sees the most texels no view saw yet: first directions evenly spread
over the whole sphere around the subject (below included), then views aimed along the mean normal of each
cluster of what is still unseen, placed outside the surface (a ray cast toward the camera decides how far it
can stand). It stops at the budget or when no candidate sees anything new.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .cameras import Cameras, intrinsics, look_at
from .config import CoverageConfig
from .mesh_passes import Raycaster
from .visibility import seen_by


@dataclass
class Plan:
    added: Cameras | None
    """The views added (at the target resolution), or None."""
    seen: Tensor
    """[T] bool: texels some view (existing or added) sees at a usable angle."""
    report: list[dict]
    """One entry per added view: its kind, azimuth and elevation (degrees, from the subject's centre) and
    how many texels it was the first to see."""


def seen_mask(points: Tensor, normals: Tensor, cameras: Cameras, depth: Tensor, mask: Tensor, min_cosine: float,
              tolerance_px: float = 2.0) -> Tensor:
    """[T] bool: points any of the cameras sees (depth [C, H, W], mask [C, H, W] of the mesh from them; on the
    points' device)."""
    out = torch.zeros(len(points), dtype=torch.bool, device=points.device)
    for c in range(len(cameras)):
        s = seen_by(points, normals, cameras[c], depth[c], mask[c], min_cosine, tolerance_px)
        out[s.index] = True
    return out


def fibonacci_directions(n: int) -> np.ndarray:
    """[n, 3] unit vectors spread evenly over the sphere (both poles' neighbourhoods included)."""
    i = np.arange(n) + 0.5
    z = 1 - 2 * i / n
    phi = math.pi * (3 - math.sqrt(5)) * i
    r = np.sqrt(1 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], 1)


def _camera(eye: np.ndarray, target: np.ndarray, fov_deg: float, size: int) -> Cameras:
    K = intrinsics(fov_deg, size, size)
    vm = look_at(torch.as_tensor(eye, dtype=torch.float32)[None], torch.as_tensor(target, dtype=torch.float32))
    return Cameras(K[None].clone(), vm, size, size)


def _angles(eye: np.ndarray, centre: np.ndarray) -> tuple[float, float]:
    d = eye - centre
    d = d / max(np.linalg.norm(d), 1e-12)
    return float(np.degrees(np.arctan2(d[0], -d[1])) % 360), float(np.degrees(np.arcsin(np.clip(d[2], -1, 1))))


def plan_views(caster: Raycaster, points: Tensor, normals: Tensor, already: Tensor, centre: Tensor, radius: float,
               fov_deg: float, resolution: int, config: CoverageConfig = CoverageConfig()) -> Plan:
    """points, normals [T, 3]: the used texels; already [T] bool: what the orbit and the references see. The
    visibility tests run where the rays are cast (`caster.device`); the plan's `seen` comes back on the CPU."""
    dev = caster.device
    points, normals, seen = points.to(dev), normals.to(dev), already.to(dev).clone()
    added: list[Cameras] = []
    report: list[dict] = []
    c = centre.double().numpy()
    P = config.planning_px
    half = math.atan(0.5 / (0.5 / math.tan(math.radians(fov_deg) / 2)))
    distance = 1.1 * radius / math.sin(half)

    def gain_of(cam: Cameras, todo: Tensor) -> Tensor:
        p = caster.passes(cam, device=dev)
        s = seen_by(points[todo], normals[todo], cam, p.depth[0], p.mask[0], config.min_cosine)
        return todo[s.index]

    def take(eye: np.ndarray, target: np.ndarray, kind: str, new: Tensor) -> None:
        seen[new] = True
        added.append(_camera(eye, target, fov_deg, resolution))
        az, el = _angles(eye, c)
        report.append({"kind": kind, "azimuth_deg": round(az, 1), "elevation_deg": round(el, 1),
                       "new_texels": int(len(new))})

    # 1. the sphere's directions, greedily
    dirs = fibonacci_directions(config.candidates) if config.candidates else np.zeros((0, 3))
    if len(dirs) and (~seen).any() and config.budget:
        todo = (~seen).nonzero()[:, 0]
        vis = []
        for d in dirs:
            k = _camera(c + distance * d, c, fov_deg, P)
            p = caster.passes(k, device=dev)
            s = seen_by(points[todo], normals[todo], k, p.depth[0], p.mask[0], config.min_cosine)
            v = torch.zeros(len(todo), dtype=torch.bool, device=dev)
            v[s.index] = True
            vis.append(v)
        V = torch.stack(vis)  # [K, U]
        left = torch.ones(len(todo), dtype=torch.bool, device=dev)
        while len(added) < config.budget and left.any():
            gains = (V & left).sum(1)
            best = int(gains.argmax())
            if int(gains[best]) < config.min_gain:
                break
            new = V[best] & left
            left &= ~new
            take(c + distance * dirs[best], c, "sphere", todo[new])
    # 2. aimed at what is still unseen: along a patch's mean normal, standing outside the surface
    given_up = torch.zeros_like(seen)
    while len(added) < config.budget and (~seen & ~given_up).any():
        todo = (~seen & ~given_up).nonzero()[:, 0]
        pts, nrm = points[todo].double().cpu().numpy(), normals[todo].double().cpu().numpy()
        near_np = np.linalg.norm(pts - pts[0], axis=1) < 0.25 * radius
        near = torch.from_numpy(near_np).to(dev)
        target, n = pts[near_np].mean(0), nrm[near_np].sum(0)
        if np.linalg.norm(n) < 1e-9:
            given_up[todo[near]] = True  # degenerate faces or a patch facing every way: no one view
            continue
        n = n / np.linalg.norm(n)
        tri, loc = caster.first_hits(target[None] + n[None] * 1e-3 * radius, n[None])
        stand = distance if tri[0] < 0 else 0.9 * float(np.linalg.norm(loc[0] - target))
        eye = target + n * max(stand, 1e-2 * radius)
        new = gain_of(_camera(eye, target, fov_deg, P), todo)
        if len(new) >= config.min_gain:
            take(eye, target, "aimed", new)
        else:
            given_up[todo[near]] = True
    out = Cameras.cat(added) if added else None
    return Plan(out, seen.cpu(), report)
