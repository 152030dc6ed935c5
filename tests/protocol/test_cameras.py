"""protocol.cameras: hand-worked Blender camera cases, inverses, nerfstudio frames, background-image reframing.

The comparison with Blender's own projection (world_to_camera_view) needs bpy and lives in
tests/addon/test_cameras_blender.py."""

import numpy as np
import pytest

from compare import assert_same
from likeness3d.protocol.cameras import (
    CameraError,
    PinholeCamera,
    blender_to_cv,
    c2w_blender_to_cv,
    c2w_cv_to_blender,
    camera_from_nerfstudio,
    cv_to_blender,
    nerfstudio_frame,
    project,
    reframe_intrinsics,
    render_size,
    transform_matrix_from_w2c,
    w2c_from_transform_matrix,
)


def _look_matrix(rng) -> np.ndarray:
    """A random rigid camera-to-world."""
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = q, rng.normal(size=3) * 3
    return m


def test_hand_worked_default_camera():
    # Blender's default: 50 mm lens, 36 mm sensor, 1920 x 1080, camera at the origin looking down -Z
    cam = blender_to_cv(np.eye(4), 50.0, 36.0, 24.0, "AUTO", 0.0, 0.0, 1920, 1080)
    f = 50.0 / 36.0 * 1920  # 2666.67 px
    np.testing.assert_allclose(cam.K, [[f, 0, 959.5], [0, f, 539.5], [0, 0, 1]])
    np.testing.assert_allclose(cam.w2c, np.diag([1.0, -1.0, -1.0, 1.0]))
    # a point 10 m ahead, 1 m right and 1 m up in Blender lands right of and above the centre
    uv, depth = project(cam.K, cam.w2c, [[1.0, 1.0, -10.0]])
    np.testing.assert_allclose(uv, [[959.5 + f / 10, 539.5 - f / 10]])
    np.testing.assert_allclose(depth, [10.0])


def test_hand_worked_vertical_fit_shift_and_pixel_aspect():
    # VERTICAL fit: the 24 mm sensor height spans the frame height (times pixel aspect ycor = 2)
    cam = blender_to_cv(np.eye(4), 30.0, 36.0, 24.0, "VERTICAL", 0.1, 0.2, 800, 600, 100, 1.0, 2.0)
    view = 2.0 * 600  # ycor * height, in x pixels
    fx = 30.0 / 24.0 * view
    np.testing.assert_allclose(cam.K[0, 0], fx)
    np.testing.assert_allclose(cam.K[1, 1], fx / 2.0)
    np.testing.assert_allclose(cam.K[0, 2], 399.5 - 0.1 * view)
    np.testing.assert_allclose(cam.K[1, 2], 299.5 + 0.2 * view / 2.0)


def test_auto_fit_picks_the_longer_displayed_side():
    # portrait render: AUTO behaves as VERTICAL but still uses sensor_width as the sensor size
    auto = blender_to_cv(np.eye(4), 50.0, 36.0, 10.0, "AUTO", 0, 0, 600, 800)
    np.testing.assert_allclose(auto.K[1, 1], 50.0 / 36.0 * 800)
    # landscape pixels make a 600 x 500 frame display wider than tall: horizontal
    wide = blender_to_cv(np.eye(4), 50.0, 36.0, 10.0, "AUTO", 0, 0, 500, 600, 100, 2.0, 1.0)
    np.testing.assert_allclose(wide.K[0, 0], 50.0 / 36.0 * 500)


def test_render_size_truncates_like_blender():
    assert render_size(1000, 999, 37) == (370, 369)
    assert render_size(1920, 1080, 50) == (960, 540)


def test_camera_scale_is_ignored():
    rng = np.random.default_rng(1)
    m = _look_matrix(rng)
    scaled = m.copy()
    scaled[:3, :3] *= 2.5
    a = blender_to_cv(m, 35, 36, 24, "AUTO", 0.1, 0, 640, 480)
    b = blender_to_cv(scaled, 35, 36, 24, "AUTO", 0.1, 0, 640, 480)
    np.testing.assert_allclose(a.w2c, b.w2c, atol=1e-12)


@pytest.mark.parametrize("fit", ["AUTO", "HORIZONTAL", "VERTICAL"])
@pytest.mark.parametrize("aspect", [(1.0, 1.0), (1.0, 1.4), (1.6, 1.0)])
def test_cv_to_blender_inverts_blender_to_cv(fit, aspect):
    rng = np.random.default_rng(3)
    m = _look_matrix(rng)
    cam = blender_to_cv(m, 42.0, 36.0, 24.0, fit, 0.07, -0.12, 720, 540, 100, *aspect)
    settings = cv_to_blender(cam)
    again = blender_to_cv(
        settings["matrix_world"], settings["lens"], settings["sensor_width"], 24.0, settings["sensor_fit"],
        settings["shift_x"], settings["shift_y"], settings["resolution_x"], settings["resolution_y"], 100,
        settings["pixel_aspect_x"], settings["pixel_aspect_y"],
    )
    assert_same(again, cam, atol=1e-9)  # K, w2c and the pixel size
    np.testing.assert_allclose(settings["matrix_world"], m, atol=1e-9)


def test_c2w_axis_flips_are_inverse_and_match_design():
    rng = np.random.default_rng(4)
    m = _look_matrix(rng)
    np.testing.assert_allclose(c2w_blender_to_cv(m), m @ np.diag([1, -1, -1, 1]))
    np.testing.assert_allclose(c2w_cv_to_blender(c2w_blender_to_cv(m)), m)
    w2c = np.linalg.inv(c2w_blender_to_cv(m))
    np.testing.assert_allclose(transform_matrix_from_w2c(w2c), m, atol=1e-12)
    np.testing.assert_allclose(w2c_from_transform_matrix(m), w2c, atol=1e-12)


def test_nerfstudio_frame_round_trip_and_pixel_corner_convention():
    rng = np.random.default_rng(5)
    cam = blender_to_cv(_look_matrix(rng), 35.0, 36.0, 24.0, "AUTO", 0.0, 0.0, 640, 480)
    frame = nerfstudio_frame(cam)
    assert frame["cx"] == pytest.approx(320.0) and frame["cy"] == pytest.approx(240.0)  # image centre, corner origin
    assert (frame["w"], frame["h"]) == (640, 480)
    back = camera_from_nerfstudio({"transform_matrix": frame["transform_matrix"]},
                                  defaults={k: v for k, v in frame.items() if k != "transform_matrix"})
    assert_same(back, cam, atol=1e-12)  # K, w2c, width and height
    with pytest.raises(CameraError, match="fl_y"):
        camera_from_nerfstudio({"fl_x": 1, "cx": 1, "cy": 1, "w": 2, "h": 2, "transform_matrix": np.eye(4)})


def test_reframe_stretch_scales_each_axis():
    K = np.array([[1000.0, 0, 319.5], [0, 1000.0, 239.5], [0, 0, 1]])
    K2 = reframe_intrinsics(K, (640, 480), (1280, 1440), "STRETCH")
    np.testing.assert_allclose(K2, [[2000.0, 0, 639.5], [0, 3000.0, 719.5], [0, 0, 1]])


@pytest.mark.parametrize("method", ["FIT", "CROP"])
def test_reframe_fit_and_crop_keep_square_image_pixels_centred(method):
    K = np.array([[500.0, 0, 399.5], [0, 500.0, 299.5], [0, 0, 1]])
    image = (300, 600)  # portrait image in an 800 x 600 landscape frame
    K2 = reframe_intrinsics(K, (800, 600), image, method)
    assert K2[0, 0] == pytest.approx(K2[1, 1])  # square image pixels
    np.testing.assert_allclose(K2[:2, 2], [149.5, 299.5])  # frame centre = image centre
    # FIT: the image's full height is the frame height (600 image rows over 600 frame rows);
    # CROP: its full width is the frame width (300 image columns over 800 frame columns)
    expected_scale = 600 / 600 if method == "FIT" else 300 / 800
    np.testing.assert_allclose(K2[0, 0], 500.0 * expected_scale)


def test_reframe_identity_for_the_same_size():
    K = np.array([[700.0, 0, 300.2], [0, 650.0, 200.1], [0, 0, 1]])
    for method in ("STRETCH", "FIT", "CROP"):
        np.testing.assert_allclose(reframe_intrinsics(K, (640, 480), (640, 480), method), K, atol=1e-12)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"lens": 0.0}, "lens"),
        ({"sensor_fit": "DIAGONAL"}, "sensor_fit"),
        ({"pixel_aspect_y": -1.0}, "pixel_aspect_y"),
        ({"resolution_x": 0}, "resolution"),
        ({"matrix_world": np.full((4, 4), np.nan)}, "matrix_world"),
        ({"matrix_world": np.eye(3)}, "matrix_world"),
    ],
)
def test_bad_parameters_name_the_field_and_value(kwargs, field):
    args = dict(matrix_world=np.eye(4), lens=50.0, sensor_width=36.0, sensor_height=24.0, sensor_fit="AUTO",
                shift_x=0.0, shift_y=0.0, resolution_x=64, resolution_y=48)
    args.update(kwargs)
    with pytest.raises(CameraError, match=field):
        blender_to_cv(**args)


def test_pinhole_camera_fields():
    cam = blender_to_cv(np.eye(4), 50.0, 36.0, 24.0, "AUTO", 0.0, 0.0, 64, 48)
    assert isinstance(cam, PinholeCamera)
    assert cam.K.dtype == np.float64 and cam.w2c.dtype == np.float64
