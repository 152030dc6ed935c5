"""Img2img pseudo views of the refine stage: cameras, strengths, targets, and their loss (tiny models, 32 px)."""

from __future__ import annotations

import pytest
import torch

from likeness3d.backend.config import ConfigError
from likeness3d.backend.synthetic.example import example_case
from likeness3d.backend.stages.views.cameras import bounding_sphere
from likeness3d.backend.stages.customize.deferred import DeferredPoints
from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.customize.refine_points import PointRefineConfig, refine_points
from likeness3d.backend.stages.customize.pointcloud import surface_points
from likeness3d.backend.stages.customize.pseudo_views import (
    PseudoViewConfig, build_img2img, draw_strengths, enhance_views, make_pseudo_views, pseudo_view_cameras, render_views,
)

pytestmark = pytest.mark.usefixtures("one_thread")
PROMPT = "a rgb photo of sks pebble"


@pytest.fixture(scope="module")
def scene():
    case = example_case(image_size=32, texture_size=32)
    cloud = surface_points(case.initial, 1500, seed=0)
    center, radius = bounding_sphere(case.initial.vertices)
    return case, cloud, center, radius


def _model(cloud):
    rgb = torch.rand(len(cloud), 3, generator=torch.Generator().manual_seed(0))
    return DeferredPoints(cloud.points, rgb, features=4, radius_px=1.5, seed=0)


def test_cameras_spread_around_the_subject(scene):
    _, _, center, radius = scene
    cams = pseudo_view_cameras(center, radius, 33, 32)
    assert len(cams) == 33 and cams.width == cams.height == 32
    d = cams.centers - center
    az = torch.rad2deg(torch.atan2(d[:, 0], -d[:, 1])) % 360
    polar = torch.rad2deg(torch.acos(d[:, 2] / d.norm(dim=-1)))
    assert torch.allclose(torch.sort(az).values, torch.arange(33) * 360 / 33, atol=1e-3)  # even ring
    assert polar.min() >= 70 - 1e-3 and polar.max() <= 110 + 1e-3 and polar.max() - polar.min() > 30  # both heights


def test_strengths_in_range_as_whole_denoising_steps():
    cfg = PseudoViewConfig()
    s = draw_strengths(400, cfg, torch.Generator().manual_seed(0))
    # the configured 0.05-0.15, both ends, in whole steps of 100: what diffusers actually runs
    assert sorted(set(round(v * 100) for v in s)) == list(range(5, 16))
    assert all(abs(v * 100 - round(v * 100)) < 1e-9 for v in s)
    coarse = draw_strengths(400, PseudoViewConfig(num_inference_steps=50), torch.Generator().manual_seed(0))
    assert sorted(set(round(v * 50) for v in coarse)) == [3, 4, 5, 6, 7]  # 0.06-0.14: inside the range, never 0.04
    with pytest.raises(ConfigError, match=r"strength must be \[lo, hi\].*\(0.2, 0.1\)"):
        PseudoViewConfig(strength=(0.2, 0.1))
    with pytest.raises(ConfigError, match="whole number of denoising steps"):
        PseudoViewConfig(strength=(0.001, 0.009))


def test_pseudo_views_have_the_right_shape_and_loss(scene):
    _, cloud, center, radius = scene
    comp = load_components("base", "tiny")
    model = _model(cloud)
    seen = []
    pv = make_pseudo_views(model, comp, PROMPT, center, radius, 32, PseudoViewConfig(views=5), seed=2,
                           progress=lambda s, n, t: seen.append((s, n, t)))
    assert len(pv) == 5 and pv.targets.shape == (5, 32, 32, 3) and pv.renders.shape == (5, 32, 32, 3)
    assert pv.alphas.shape == (5, 32, 32) and len(pv.cameras) == 5 and len(pv.strengths) == 5
    assert pv.targets.min() >= 0 and pv.targets.max() <= 1 and torch.isfinite(pv.targets).all()
    assert all(0.05 <= s <= 0.15 for s in pv.strengths)
    assert 0.05 < pv.alphas.mean() < 0.95  # the subject covers part of each view
    assert seen[-1][0] == seen[-1][1] and "img2img pseudo views" in seen[-1][2]
    # the renders are the model's own views, made before any refining
    again, _ = render_views(model, pv.cameras)
    torch.testing.assert_close(again, pv.renders)
    summary = pv.summary()
    assert summary["views"] == 5 and summary["mean_abs_change_in_coverage"] > 0
    # one step: the L1 of one view, with a gradient into the points' colours; each view once per epoch
    loss = pv.loss(model, 0)
    loss.backward()
    assert loss.ndim == 0 and loss > 0 and model.rgb.grad.abs().sum() > 0
    assert len({pv.next_view() for _ in range(4)}) == 4  # the first epoch's other four views
    assert sorted(pv.next_view() for _ in range(5)) == [0, 1, 2, 3, 4]


def test_the_change_grows_with_strength(scene):
    # With random weights the VAE does not reconstruct, so every output is far from the render; compared with
    # the weakest enhancement (1 of 50 steps) of the same render and noise, the change grows with the strength.
    _, cloud, center, radius = scene
    comp = load_components("base", "tiny")
    renders, alphas = render_views(_model(cloud), pseudo_view_cameras(center, radius, 3, 32))
    pipe = build_img2img(comp)
    cfg = PseudoViewConfig(views=3)
    a = alphas[..., None]

    def enhanced(s):
        return enhance_views(pipe, renders, PROMPT, [s] * 3, cfg, seed=0)

    weakest = enhanced(0.02)
    change = [float(((enhanced(s) - weakest).abs() * a).sum() / (3 * a.sum())) for s in (0.06, 0.15, 0.5)]
    assert 0 < change[0] < change[1] < change[2], change
    # results do not depend on how views are batched
    torch.testing.assert_close(enhance_views(pipe, renders, PROMPT, [0.1, 0.04, 0.1], PseudoViewConfig(batch_size=1), seed=5),
                               enhance_views(pipe, renders, PROMPT, [0.1, 0.04, 0.1], PseudoViewConfig(batch_size=8), seed=5))


def test_refining_against_the_pseudo_views_lowers_their_loss(scene):
    case, cloud, center, radius = scene
    comp = load_components("base", "tiny")
    model = _model(cloud)
    pv = make_pseudo_views(model, comp, PROMPT, center, radius, 32, PseudoViewConfig(views=3), seed=0)

    def total():
        with torch.no_grad():
            return sum(float(pv.loss(model, 0)) for _ in range(3))

    before = total()
    ref = case.references[0]
    from likeness3d.backend.stages.views.cameras import Cameras

    img = torch.from_numpy(ref.image.astype("float32") / 255)[None]
    cfg = PointRefineConfig(steps=30, learning_rate=1e-2, reference_weight=0.0, drift_weight=0.0)
    refine_points(model, img[..., :3], img[..., 3] > 0.5, Cameras.from_protocol([ref.camera]), cfg, novel_loss=pv.loss)
    assert total() < 0.8 * before
