"""Views masked to white and square-padded; the fewest conditioning views covering the circle."""

import numpy as np

from likeness3d.backend.stages.video.views import azimuths, covering_subset, prepare_view, subject_centre


def _ring(degrees, radius=3.0, centre=(0.5, -0.2, 0.3)):
    """OpenCV camera-to-world matrices on a circle about `centre`, each looking at it."""
    out = []
    for a in np.radians(degrees):
        eye = np.array(centre) + radius * np.array([np.cos(a), np.sin(a), 0.2])
        z = np.array(centre) - eye
        z /= np.linalg.norm(z)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        m = np.eye(4)
        m[:3, :3] = np.stack([x, y, z], 1)
        m[:3, 3] = eye
        out.append(m)
    return np.stack(out)


def test_background_masked_to_white_and_padded_to_a_centred_square():
    img = np.zeros((20, 40, 4), np.uint8)
    img[..., 0] = 200  # red subject ...
    img[5:15, 10:30, 3] = 255  # ... opaque in the middle only
    out, masked = prepare_view(img, 16)
    assert masked and out.shape == (16, 16, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, :], 1.0, atol=1e-6)  # the padding band: white
    np.testing.assert_allclose(out[:, 0], 1.0, atol=1e-6)  # transparent background: white
    centre = out[7:9, 7:9]
    assert np.all(centre[..., 0] > 0.7) and np.all(centre[..., 1:] < 0.05)
    _, opaque = prepare_view(np.full((8, 8, 4), 255, np.uint8), 16)
    assert not opaque  # no mask: said so


def test_centre_and_azimuths_from_the_cameras():
    c2w = _ring([0, 90, 180, 270])
    np.testing.assert_allclose(subject_centre(c2w), [0.5, -0.2, 0.3], atol=1e-6)
    np.testing.assert_allclose(azimuths(c2w), [0, 90, 180, 270], atol=1e-6)


def test_fewest_views_covering_360_degrees():
    az = azimuths(_ring([0, 30, 60, 90, 120, 180, 200, 270, 300, 330]))
    chosen, gap = covering_subset(az, 90.0, 2, 8)
    assert gap == 0 and len(chosen) == 4
    covered = np.zeros(360, bool)
    for i in chosen:
        for d in range(-45, 46):
            covered[int(round(az[i] + d)) % 360] = True
    assert covered.all()
    # a wider arc per view needs fewer
    assert len(covering_subset(az, 130.0, 2, 8)[0]) == 3


def test_references_on_one_side_leave_a_gap_said_in_degrees():
    az = azimuths(_ring([250, 270, 290]))
    chosen, gap = covering_subset(az, 90.0, 2, 4)
    assert len(chosen) == 3 and abs(gap - (360 - 40 - 90)) < 1e-6
    assert len(covering_subset(az, 90.0, 2, 2)[0]) == 2  # capped


def test_no_four_views_cover_when_no_four_are_90_degrees_apart():
    az = azimuths(_ring([0, 30, 60, 95, 120, 185, 200, 275, 300, 330]))
    chosen, gap = covering_subset(az, 90.0, 2, 8)
    assert gap == 0 and len(chosen) == 5


def test_arcs_that_meet_within_float32_rounding_count_as_covering():
    az = np.array([0.0, 90.0 + 4e-5, 180.0 - 3e-5, 270.0 + 2e-5], np.float32).astype(np.float64)
    chosen, gap = covering_subset(az, 90.0, 2, 4)
    assert len(chosen) == 4 and gap == 0.0


def test_asset_renders_join_the_views_around_the_mesh():
    from likeness3d.backend.stages.video.views import choose_conditioning, mesh_views
    from likeness3d.backend.synthetic.example import example_case

    mesh = example_case(image_size=32, texture_size=32).initial
    rgba, c2w = mesh_views(mesh, 8, 15.0, 32)
    assert rgba.shape == (8, 32, 32, 4) and 0 < rgba[..., 3].mean() < 1  # the asset on transparent ground
    centre = (mesh.vertices.min(0) + mesh.vertices.max(0)) / 2
    az = azimuths(c2w, centre)
    np.testing.assert_allclose(np.sort(az), np.sort((np.arange(8) * 45.0 + 270.0) % 360), atol=1e-3)
    refs = np.array([250.0, 270.0])
    chosen, gap = choose_conditioning(refs, np.concatenate([refs, az]), 90.0, 2, 4)
    assert gap == 0.0 and len(chosen) == 4 and any(i >= 2 for i in chosen)
    only_refs = choose_conditioning(refs, refs, 90.0, 2, 4)
    assert only_refs[1] > 0 and sorted(only_refs[0]) == [0, 1]
