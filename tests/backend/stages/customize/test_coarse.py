"""Coarse stage: shading modes and their prompts, view sampling, a few SDS steps with the tiny base model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from likeness3d.backend.synthetic.example import example_case
from likeness3d.backend.stages.views.cameras import Cameras, bounding_sphere
from likeness3d.backend.stages.customize.coarse import (
    CoarseConfig, coarse_stage, mode_prompt, sample_views, shade, shading_mode,
)
from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.splats.gaussians import from_mesh
from likeness3d.backend.stages.diffusion.sds import SDSConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def test_modes_follow_the_schedule():
    cfg = CoarseConfig(steps=100, normal_frac=0.1, albedo_frac=0.3)
    g = torch.Generator().manual_seed(0)
    modes = [shading_mode(i, 100, cfg, g) for i in range(100)]
    assert set(modes[:10]) == {"normal"} and set(modes[10:30]) == {"albedo"}
    assert set(modes[30:]) == {"albedo", "textureless", "lambertian"}
    assert mode_prompt("normal", "cat") == "a normal map of sks cat"
    assert mode_prompt("lambertian", "cat") == mode_prompt("albedo", "cat") == "a rgb photo of sks cat"
    with pytest.raises(ValueError, match="normal_frac"):
        CoarseConfig(normal_frac=0.5, albedo_frac=0.3)


def test_views_within_polar_and_distance_ranges():
    cfg = CoarseConfig()
    center = torch.tensor([0.1, 0.2, 0.3])
    cams = sample_views(center, 1.0, 64, 32, cfg, torch.Generator().manual_seed(0))
    d = cams.centers - center
    dist = d.norm(dim=-1)
    polar = torch.rad2deg(torch.acos(d[:, 2] / dist))
    assert polar.min() >= 70 - 1e-3 and polar.max() <= 110 + 1e-3
    base = 1.0 / math.sin(math.radians(30))
    assert dist.min() >= base * 1.0 - 1e-4 and dist.max() <= base * 1.5 + 1e-4
    assert cams.Ks[0, 0, 0] == pytest.approx(16 / math.tan(math.radians(30)))
    # any centre (float64, part of a graph; on the GPU the pipeline passes a CUDA one): cameras on the CPU
    c64 = center.double().requires_grad_(True)
    again = sample_views(c64, 1.0, 2, 32, cfg, torch.Generator().manual_seed(0))
    assert again.device.type == "cpu" and again.viewmats.dtype == torch.float32


def test_shading_modes():
    case = example_case(image_size=32, texture_size=32)
    g = from_mesh(case.initial, count=300)
    center, radius = bounding_sphere(case.initial.vertices)
    cam = sample_views(center, radius, 1, 32, CoarseConfig(), torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(0)
    normal = shade(g, cam, "normal", gen)
    assert normal.min() >= 0 and normal.max() <= 1 and normal[:, 2].min() >= 0.5  # all face the viewer
    tl = shade(g, cam, "textureless", gen)
    assert torch.allclose(tl[:, 0], tl[:, 1]) and tl.min() >= 0.3 - 1e-6
    assert torch.equal(shade(g, cam, "albedo", gen), g.rgb.clamp(0, 1))
    with pytest.raises(ValueError, match="mode"):
        shade(g, cam, "metallic", gen)


def test_coarse_steps_run_every_mode_and_fit_the_reference():
    case = example_case(image_size=32, texture_size=32)
    ref = case.references[0]
    cams = Cameras.from_protocol([ref.camera])
    rgba = torch.as_tensor(ref.image[None].astype(np.float32) / 255)
    g = from_mesh(case.initial, count=800)
    center, radius = bounding_sphere(case.initial.vertices)
    comp = load_components("base", "tiny")
    cfg = CoarseConfig(steps=8, normal_frac=0.25, albedo_frac=0.5, resolution=32, mix=(1, 1, 1))
    seen = []
    r = coarse_stage(g, comp, rgba[..., :3], rgba[..., 3] > 0.5, cams, class_word="pebble", center=center,
                     radius=radius, config=cfg, sds=SDSConfig(schedule="sqrt"), progress=lambda s, n, m: seen.append(m))
    assert len(r.losses) == 8 and sum(r.modes.values()) == 8 and r.modes["normal"] == 2 and r.skipped == 0
    assert "(normal" in seen[0] and "(normal" not in seen[-1]
    # every step's text shows that step's reference L1 (a number, not the NaN placeholder of a log not yet read)
    shown = [float(m.rpartition("reference L1 ")[2]) for m in seen]
    assert len(shown) == 8 and all(math.isfinite(v) and v >= 0 for v in shown), seen
    assert torch.equal(r.gaussians.means, g.means)  # geometry given: centres untouched
    assert not torch.equal(r.gaussians.sh, g.sh)
    assert r.losses[-1] < r.losses[0]


def test_depth_correlation_loss_is_scale_free_and_signed():
    from likeness3d.backend.stages.customize.coarse import depth_correlation_loss

    gen = torch.Generator().manual_seed(0)
    target = 1 + torch.rand(2, 8, 9, generator=gen)
    mask = torch.rand(2, 8, 9, generator=gen) > 0.3
    assert float(depth_correlation_loss(target, target, mask)) == pytest.approx(0, abs=1e-6)
    assert float(depth_correlation_loss(3 * target + 2, target, mask)) == pytest.approx(0, abs=1e-6)
    assert float(depth_correlation_loss(-target, target, mask)) == pytest.approx(2, abs=1e-6)
    noisy = depth_correlation_loss(target + torch.rand(2, 8, 9, generator=gen), target, mask)
    assert 0 < float(noisy) < 1
    # pixels outside the mask do not count; a view with no masked pixel adds 0
    wild = torch.where(mask, target, torch.full_like(target, 1e3))
    assert float(depth_correlation_loss(wild, target, mask)) == pytest.approx(0, abs=1e-5)
    empty = torch.zeros_like(mask)
    assert float(depth_correlation_loss(target, target, empty)) == 0.0
    with pytest.raises(ValueError, match="depth_weight"):
        CoarseConfig(depth_weight=-1.0)
