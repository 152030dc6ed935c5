"""View planning: views are added (from below too) until every used texel is seen."""

import torch

from likeness3d.backend.stages.texture.texels import texel_geometry
from likeness3d.backend.stages.views.cameras import bounding_sphere, orbit
from likeness3d.backend.stages.views.config import CoverageConfig
from likeness3d.backend.stages.views.mesh_passes import Raycaster
from likeness3d.backend.stages.views.plan import plan_views, seen_mask
from likeness3d.backend.synthetic.shapes import uv_sphere


def test_an_orbit_from_above_misses_the_underside_and_the_planner_adds_views_below():
    sphere = uv_sphere(1.0, 32, 16, texture_size=48)
    s = texel_geometry(sphere, 48, 48)
    caster = Raycaster(sphere)
    centre, radius = bounding_sphere(sphere.vertices)
    targets = orbit(centre, radius, [0, 90, 180, 270], [0.0, 30.0], 48, 48)
    p = caster.passes(targets)
    already = seen_mask(s.points, s.normals, targets, p.depth, p.mask, 0.2)
    assert (~already).sum() > 100  # the south cap
    plan = plan_views(caster, s.points, s.normals, already, centre, radius, 40.0, 48, CoverageConfig(budget=6))
    assert plan.added is not None and len(plan.added) == len(plan.report) <= 6
    assert any(v["elevation_deg"] < -20 for v in plan.report)
    # every used texel is now seen, checked again with the added views' own depth maps at their resolution
    pa = caster.passes(plan.added)
    again = already | seen_mask(s.points, s.normals, plan.added, pa.depth, pa.mask, 0.2)
    assert plan.seen.all() and again.float().mean() > 0.99
    assert sum(v["new_texels"] for v in plan.report) == int((~already).sum())


def test_no_view_is_added_when_everything_is_seen_or_the_budget_is_zero():
    sphere = uv_sphere(1.0, 24, 12, texture_size=32)
    s = texel_geometry(sphere, 32, 32)
    caster = Raycaster(sphere)
    centre, radius = bounding_sphere(sphere.vertices)
    everything = torch.ones(len(s), dtype=torch.bool)
    assert plan_views(caster, s.points, s.normals, everything, centre, radius, 40.0, 32).added is None
    nothing = torch.zeros(len(s), dtype=torch.bool)
    assert plan_views(caster, s.points, s.normals, nothing, centre, radius, 40.0, 32, CoverageConfig(budget=0)).added is None
