"""TIRE's target views (step 1): the orbit, then views the planner adds until every used texel is seen, and
the mesh passes of them all."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .cameras import Cameras, bounding_sphere, orbit
from .config import CoverageConfig
from .mesh_passes import MeshPasses, Raycaster
from .plan import Plan, plan_views, seen_mask


@dataclass
class Targets:
    cameras: Cameras
    passes: MeshPasses
    """Smooth-normal passes of every target view."""
    plan: Plan


def target_views(caster: Raycaster, points: Tensor, normals: Tensor, sources: list, resolution: int, azimuths: int,
                 elevations_deg: tuple[float, ...], fov_deg: float, coverage: CoverageConfig,
                 seen: Tensor | None = None) -> Targets:
    """points, normals [T, 3]: the used texels; sources: known views (`camera`, `depth` [H, W]) that already see;
    seen [T] bool: texels known to be seen otherwise (an animated mesh's photos, each at its own frame)."""
    center, radius = bounding_sphere(caster.mesh.vertices)
    az = [360.0 * i / azimuths for i in range(azimuths)]
    targets = orbit(center, radius, az, list(elevations_deg), resolution, resolution, fov_deg)
    tp = caster.passes(targets, normals="smooth")
    dev = caster.device  # the visibility tests run where the rays are cast
    pts, nrm = points.to(dev), normals.to(dev)
    already = seen_mask(pts, nrm, targets, tp.depth.to(dev), tp.mask.to(dev), coverage.min_cosine)
    if seen is not None:
        already |= seen.to(dev)
    for s in sources:
        depth = s.depth.to(dev)
        already |= seen_mask(pts, nrm, s.camera, depth[None], (depth > 0)[None], coverage.min_cosine)
    plan = plan_views(caster, points, normals, already, center, radius, fov_deg, resolution, coverage)
    if plan.added is not None:
        added = caster.passes(plan.added, normals="smooth")  # only the added views are cast again
        targets = Cameras.cat([targets, plan.added])
        tp = MeshPasses(**{k: torch.cat([getattr(tp, k), getattr(added, k)]) for k in tp.__dataclass_fields__})
    return Targets(targets, tp, plan)
