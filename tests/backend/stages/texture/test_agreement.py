"""The agreement test's parts (stages.texture.agreement) and the hidden colour continuation
(stages.texture.continuation): outline residuals are not disagreements, a patch is; a cast that continues an
observed material moves back toward it, a differently shaped hidden side is left alone."""

import numpy as np
import torch

from likeness3d.backend.stages.texture.agreement import formed_render, local_tolerance, persistent, persistent_area
from likeness3d.backend.stages.texture.continuation import continue_colours
from likeness3d.backend.stages.texture.texels import texel_geometry
from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.views.mesh_passes import Raycaster, mesh_rgba
from likeness3d.backend.synthetic.shapes import uv_sphere


def test_opening_drops_thin_lines_and_keeps_a_patch_whole():
    d = torch.zeros(40, 40)
    d[5, 2:38] = 0.8  # a one-pixel outline residual
    d[10:12, 2:38] = 0.8  # two pixels wide
    d[20:30, 20:30] = 0.5  # a wrong patch
    out = persistent(d, 2)
    assert out[5].max() == 0 and out[10:12].max() == 0
    assert torch.equal(out[20:30, 20:30], d[20:30, 20:30])
    assert persistent_area(d, 50)[5].max() == 0 and persistent_area(d, 30)[5].max() > 0


def test_tolerance_grows_with_local_contrast_only():
    img = torch.full((20, 20, 3), 0.5)
    img[:, 10:] = 0.9
    tol = local_tolerance(img, torch.ones(20, 20, dtype=torch.bool), 0.25)
    assert float(tol[:, :8].max()) == 0.0 and abs(float(tol[5, 10]) - 0.1) < 1e-5


def test_formed_render_matches_the_box_filtered_one_on_smooth_colour():
    sphere = uv_sphere(1.0, 48, 24, texture_size=64, seed=1)
    caster = Raycaster(sphere)
    cam = orbit((0, 0, 0), 1.0, [0.0], [10.0], 48, 48)
    a, b = formed_render(caster, cam, 4, 3.0), mesh_rgba(caster, cam, 2)[0]
    inner = (a[..., 3] > 0.999) & (b[..., 3] > 0.999)
    assert a.shape == b.shape and int(inner.sum()) > 500
    assert float((a - b)[..., :3].abs()[inner].mean()) < 0.05


def _sphere_case(hidden_rgb):
    s = texel_geometry(uv_sphere(1.0, 48, 24, texture_size=64), 64, 64)
    rng = np.random.default_rng(0)
    pink = np.array([0.9, 0.55, 0.65])
    truth = np.clip(pink + 0.03 * rng.standard_normal((len(s), 3)), 0, 1).astype(np.float32)
    x = s.points.numpy()[:, 0]
    observed = x < 0
    ramp = np.clip(x / 0.5, 0, 1)[:, None]
    initial = np.where(observed[:, None], truth, (1 - ramp) * truth + ramp * hidden_rgb(truth)).astype(np.float32)
    return s, truth, initial, observed


def test_a_washed_out_hidden_side_moves_back_to_the_observed_colours():
    s, truth, initial, observed = _sphere_case(lambda t: 0.3 * t + 0.6)  # grey-white
    out, report = continue_colours(s, initial, initial.copy(), np.where(observed[:, None], truth, 0), observed,
                                   edge_de=8.0)
    hid = ~observed
    before, after = np.abs(initial[hid] - truth[hid]).mean(), np.abs(out[hid] - truth[hid]).mean()
    assert report["texels_moved"] > 0 and after < 0.5 * before
    assert np.array_equal(out[observed], initial[observed])


def test_a_hidden_side_of_another_shape_is_left_alone():
    # the hidden side is a two-colour pattern (half dark blue, half white), not a cast of the pink
    s, truth, initial, observed = _sphere_case(lambda t: np.where(np.arange(len(t))[:, None] % 7 < 2, 0.95, 0.0)
                                               + np.array([0.0, 0.0, 0.4]) * (np.arange(len(t))[:, None] % 7 >= 2))
    out, report = continue_colours(s, initial, initial.copy(), np.where(observed[:, None], truth, 0), observed,
                                   edge_de=8.0)
    far = s.points.numpy()[:, 0] > 0.6
    assert np.array_equal(out[far], initial[far])


def test_a_hidden_side_of_another_hue_is_not_taken_for_a_cast():
    # the same pattern and spread, but green where the observed side is pink: another colour, not a cast
    s, truth, initial, observed = _sphere_case(lambda t: np.clip(t[:, [1, 0, 2]] * [0.7, 1.4, 0.8], 0, 1))
    out, report = continue_colours(s, initial, initial.copy(), np.where(observed[:, None], truth, 0), observed,
                                   edge_de=16.0)
    far = s.points.numpy()[:, 0] > 0.6
    assert np.abs(out[far] - initial[far]).max() < 2e-3  # (the Lab round trip of an identity band)
    bands = [b for r in report["per_region"] for b in r["bands"]]
    # the far bands' shapes agree (a per-channel transform would map them), their hue does not
    far_bands = [b for b in bands if b["hue_gap_deg"] > 45]
    assert far_bands and all(b["shape"] <= 0.35 and not b["moved"] for b in far_bands)
