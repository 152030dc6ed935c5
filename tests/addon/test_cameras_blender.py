"""protocol.cameras against Blender's own projection (bpy_extras.object_utils.world_to_camera_view)."""

import itertools

import bpy
import numpy as np
import pytest
from bpy_extras.object_utils import world_to_camera_view
from mathutils import Euler, Vector

from likeness3d.protocol.cameras import blender_to_cv, project

CASES = [
    # sensor_fit, res_x, res_y, pct, pixel aspect (x, y), shift (x, y), lens, sensor (w, h)
    (fit, rx, ry, pct, asp, shift, lens, sensor)
    for fit, (rx, ry), pct, asp, shift, lens, sensor in itertools.product(
        ("AUTO", "HORIZONTAL", "VERTICAL"),
        ((640, 480), (480, 640)),
        (100, 50),
        ((1.0, 1.0), (1.0, 1.7), (2.0, 1.0)),
        ((0.0, 0.0), (0.13, -0.21)),
        (35.0,),
        ((36.0, 24.0),),
    )
] + [("AUTO", 1001, 999, 100, (1.3, 1.0), (-0.4, 0.3), 85.0, (23.5, 15.6))]


def _camera(fit, rx, ry, pct, asp, shift, lens, sensor):
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = rx, ry
    scene.render.resolution_percentage = pct
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = asp
    data = bpy.data.cameras.new("cam")
    data.lens, data.sensor_width, data.sensor_height = lens, *sensor
    data.sensor_fit = fit
    data.shift_x, data.shift_y = shift
    obj = bpy.data.objects.new("cam", data)
    scene.collection.objects.link(obj)
    obj.location = (0.3, -4.0, 1.2)
    obj.rotation_euler = Euler((1.3, 0.1, 0.2))
    obj.scale = (1.5, 1.5, 1.5)  # Blender ignores camera scale for projection; so must we
    bpy.context.view_layer.update()
    return scene, obj


@pytest.mark.parametrize("fit,rx,ry,pct,asp,shift,lens,sensor", CASES)
def test_projection_matches_world_to_camera_view(fit, rx, ry, pct, asp, shift, lens, sensor):
    scene, obj = _camera(fit, rx, ry, pct, asp, shift, lens, sensor)
    d = obj.data
    cam = blender_to_cv(
        np.array(obj.matrix_world), d.lens, d.sensor_width, d.sensor_height, d.sensor_fit, d.shift_x, d.shift_y,
        scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage,
        scene.render.pixel_aspect_x, scene.render.pixel_aspect_y,
    )
    assert (cam.width, cam.height) == (rx * pct // 100, ry * pct // 100)

    rng = np.random.default_rng(7)
    # points in front of the camera, spread over (and past) the frame
    local = np.column_stack([rng.uniform(-1.5, 1.5, 64), rng.uniform(-1.5, 1.5, 64), -rng.uniform(2, 9, 64)])
    world = np.array([list(obj.matrix_world.normalized() @ Vector(p)) for p in local])
    expected = []
    for p in world:
        ndc = world_to_camera_view(scene, obj, Vector(p))  # (0, 0) bottom-left corner, (1, 1) top-right
        expected.append((ndc.x * cam.width - 0.5, (1.0 - ndc.y) * cam.height - 0.5, ndc.z))
    expected = np.array(expected)

    pixels, depth = project(cam.K, cam.w2c, world)
    np.testing.assert_allclose(depth, expected[:, 2], rtol=1e-5)
    err = np.abs(pixels - expected[:, :2]).max()
    assert err < 0.5, f"max pixel error {err:.4f} for {fit} {rx}x{ry}@{pct}% aspect {asp} shift {shift}"
    assert err < 1e-3  # in fact it is exact up to float32 round-off


def test_percentage_truncation_follows_the_render_size():
    """At 37 % Blender renders int(1000 * 0.37) x int(999 * 0.37) = 370 x 369 pixels and computes the frame
    from that size (world_to_camera_view uses the 100 % frame, whose aspect differs by the truncation).
    So the converted camera equals the one of a 370 x 369 render at 100 %."""
    args = ("AUTO", 1000, 999, 37, (1.3, 1.0), (-0.4, 0.3), 85.0, (23.5, 15.6))
    scene, obj = _camera(*args)
    d = obj.data
    at_37 = blender_to_cv(np.array(obj.matrix_world), d.lens, d.sensor_width, d.sensor_height, d.sensor_fit,
                          d.shift_x, d.shift_y, 1000, 999, 37, 1.3, 1.0)
    assert (at_37.width, at_37.height) == (370, 369)
    test_projection_matches_world_to_camera_view("AUTO", 370, 369, 100, (1.3, 1.0), (-0.4, 0.3), 85.0, (23.5, 15.6))
    at_100 = blender_to_cv(np.array(obj.matrix_world), d.lens, d.sensor_width, d.sensor_height, d.sensor_fit,
                           d.shift_x, d.shift_y, 370, 369, 100, 1.3, 1.0)
    np.testing.assert_allclose(at_37.K, at_100.K)
