"""4D gather: an armature-animated and a shape-key-animated mesh give their evaluated positions at every
frame; topology changes and reference frames outside the range are errors naming the frame; the panel's
Animated settings and the references' frames reach the Asset."""

import types

import bpy
import numpy as np
import pytest

from anim_scenes import evaluated_world, rigged_grid, shape_key_grid
from likeness3d.addon import panels
from likeness3d.addon.gather import GatherError, gather_camera
from likeness3d.addon.gather_anim import frame_numbers, gather_frames, shown_image_frame
from likeness3d.addon.request import build_asset
from scenes import camera, photo
from test_panels import Recorder


def _expected(obj, numbers):
    scene = bpy.context.scene
    out = []
    for n in numbers:
        scene.frame_set(int(n))
        out.append(evaluated_world(obj))
    return np.stack(out)


def _bbox_diagonal(frames) -> float:
    return float(np.linalg.norm(frames.reshape(-1, 3).max(0) - frames.reshape(-1, 3).min(0)))


@pytest.mark.parametrize("build", [rigged_grid, shape_key_grid], ids=["armature", "shape_key_constraint"])
def test_gather_equals_the_evaluated_positions_per_frame(build):
    obj = build()
    scene = bpy.context.scene
    scene.frame_set(2)
    numbers = frame_numbers(scene.frame_start, scene.frame_end)
    anim = gather_frames(obj, scene, numbers)
    assert scene.frame_current == 2  # restored
    assert anim.frames.dtype == np.float32 and anim.frames.shape == (len(numbers), len(obj.data.vertices), 3)
    assert anim.frame_numbers.dtype == np.int32 and anim.frame_numbers.tolist() == list(range(1, scene.frame_end + 1))
    assert anim.fps == pytest.approx(scene.render.fps / scene.render.fps_base)
    expected = _expected(obj, numbers)
    np.testing.assert_allclose(anim.frames, expected, atol=1e-5 * _bbox_diagonal(expected))
    moved = np.abs(anim.frames[-1] - anim.frames[0]).max()
    assert moved > 0.1, "the scene must actually deform over the range"


def test_gather_with_a_step_takes_every_nth_frame():
    obj = rigged_grid(frame_start=1, frame_end=7)
    numbers = frame_numbers(1, 7, 3)
    assert numbers.tolist() == [1, 4, 7]
    anim = gather_frames(obj, bpy.context.scene, numbers)
    np.testing.assert_allclose(anim.frames, _expected(obj, numbers), atol=1e-5 * _bbox_diagonal(anim.frames))


def test_topology_changing_between_frames_names_the_frame():
    obj = shape_key_grid()
    build = obj.modifiers.new("Build", "BUILD")  # removes faces (and their vertices) over frames 1..3
    build.frame_start, build.frame_duration = 1, 3
    with pytest.raises(GatherError, match=r"changes topology at frame 2: \d+ vertices"):
        gather_frames(obj, bpy.context.scene, frame_numbers(1, 4))
    assert bpy.context.scene.frame_current == 1


def test_bad_ranges_are_errors_naming_them():
    with pytest.raises(GatherError, match="frame range 5..2 is empty"):
        frame_numbers(5, 2)
    with pytest.raises(GatherError, match="frame step is 0"):
        frame_numbers(1, 5, 0)
    with pytest.raises(GatherError, match="at most 10000"):
        frame_numbers(1, 100_000)


def _animated_subject(ref_frames):
    obj = rigged_grid(frame_start=1, frame_end=5)
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    props = scene.likeness
    props.target, props.animated = obj, True
    cam = camera("Mover", location=(0.0, -6.0, 1.0))
    for frame, x in ((1, -2.0), (5, 2.0)):  # a moving camera
        cam.location.x = x
        cam.keyframe_insert("location", frame=frame)
    for i, frame in enumerate(ref_frames):
        ref = props.references.add()
        ref.image, ref.camera, ref.frame = photo(f"shot{i}", 64, 48, seed=i), cam, frame
    return obj, cam


def test_animated_asset_carries_frames_and_each_reference_its_frame_and_pose():
    obj, cam = _animated_subject([2, 5])
    scene = bpy.context.scene
    scene.frame_set(3)
    asset = build_asset(bpy.context, scene)
    assert scene.frame_current == 3
    mesh = asset.mesh
    assert mesh.frames.shape == (5, len(obj.data.vertices), 3) and mesh.frame_numbers.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(mesh.vertices, mesh.frames[0], atol=1e-5)  # the rest mesh is the first frame
    assert mesh.uvs.shape == (len(mesh.faces), 3, 2) and mesh.texture is not None
    assert [r.frame for r in asset.references] == [2, 5]
    for ref in asset.references:  # the camera's pose at the reference's frame
        scene.frame_set(ref.frame)
        want = gather_camera(cam, scene, (64, 48), "FIT")
        np.testing.assert_allclose(ref.camera.w2c, want.w2c, atol=1e-6)
    assert not np.allclose(asset.references[0].camera.w2c, asset.references[1].camera.w2c)


def test_custom_range_and_a_reference_outside_it():
    _animated_subject([4])
    props = bpy.context.scene.likeness
    props.use_scene_range, props.frame_start, props.frame_end, props.frame_step = False, 1, 5, 2
    with pytest.raises(GatherError, match=r"references\[0\]\.frame is 4, outside the gathered frames 1\.\.5 step 2"):
        build_asset(bpy.context)
    props.references[0].frame = 5
    assert build_asset(bpy.context).mesh.frame_numbers.tolist() == [1, 3, 5]


def test_static_target_sends_no_frames():
    _animated_subject([2])
    bpy.context.scene.likeness.animated = False
    asset = build_asset(bpy.context)
    assert asset.mesh.frames is None and asset.references[0].frame is None


def test_image_user_frame_mapping():
    image = bpy.data.images.new("clip", 4, 4)
    cam = camera("Bg")
    bg = cam.data.background_images.new()
    bg.image = image
    user = bg.image_user
    user.frame_duration, user.frame_start, user.frame_offset = 10, 5, 0
    assert shown_image_frame(user, 5) == 1 and shown_image_frame(user, 9) == 5
    assert shown_image_frame(user, 40) == 10 and shown_image_frame(user, 1) == 1  # held at the ends
    user.use_cyclic = True
    assert shown_image_frame(user, 16) == 2


def test_animation_panel_draws():
    _animated_subject([2])
    shown = []
    layout = Recorder(shown)
    ctx = types.SimpleNamespace(layout=layout)
    panels.LIKENESS_PT_animation.draw_header(ctx, bpy.context)
    panels.LIKENESS_PT_animation.draw(ctx, bpy.context)
    assert "animated=True" in shown and "use_scene_range=True" in shown and "frame_step=1" in shown
    assert "Frames 1..5 (the scene's range)" in shown and "frame=2" in shown
    bpy.context.scene.likeness.use_scene_range = False
    shown.clear()
    panels.LIKENESS_PT_animation.draw(ctx, bpy.context)
    assert "frame_start=1" in shown and "frame_end=250" in shown


def test_reference_from_a_background_image_sequence_takes_the_shown_frame(tmp_path):
    from files import png_bytes

    for frame in (1, 2, 3):
        px = np.zeros((6, 8, 4), np.uint8)
        px[..., 0], px[..., 3] = 80 * frame, 255
        (tmp_path / f"shot_{frame:04d}.png").write_bytes(png_bytes(px))
    clip = bpy.data.images.load(str(tmp_path / "shot_0001.png"))
    clip.source = "SEQUENCE"
    cam = camera("Witness")
    bg = cam.data.background_images.new()
    bg.image = clip
    bg.image_user.frame_duration, bg.image_user.frame_start = 3, 10  # scene frame 10 shows shot 1
    scene = bpy.context.scene
    scene.camera = cam
    scene.frame_set(11)
    assert bpy.ops.likeness.reference_add(camera=cam.name) == {"FINISHED"}
    ref = scene.likeness.references[0]
    assert ref.frame == 11 and ref.image is not clip and ref.image.packed_file is not None
    assert bpy.path.basename(ref.image.filepath) == "shot_0002.png"
    px = np.empty(6 * 8 * 4, np.float32)
    ref.image.pixels.foreach_get(px)
    assert np.allclose(px.reshape(-1, 4)[:, 0], 160 / 255, atol=1e-3)
