"""4D import: animation.pc2 through Blender's Mesh Cache modifier reproduces the gathered frames; the artist's
object comes back as a copy (rig, shape keys, modifiers) with the refined texture; bound splats follow the
evaluated mesh at every frame; a splat sequence plays through the frame-change handler."""

import bpy
import numpy as np
import pytest

from anim_scenes import evaluated_world, rigged_grid, shape_key_grid, turning_cube
from files import png_bytes, write_glb, write_ply
from files_4d import (backend_bound_splats, backend_writes, bound_centres, bound_splat_fields, shepperd_cases,
                      write_contract_pc2, write_sequence)
from likeness3d.addon.gather import gather_mesh
from likeness3d.addon.gather_anim import frame_numbers, gather_frames
from likeness3d.addon.importers import import_result
from likeness3d.addon.importers.anim import MESH_CACHE, cached_mesh
from likeness3d.addon.importers.bound import BIND_MODIFIER
from likeness3d.addon.importers.bound_nodes import POSE_ROTATIONS
from likeness3d.addon.importers.ply import read_splats
from likeness3d.protocol.errors import InvalidAsset
from scenes import cube

REFINED = np.zeros((4, 4, 4), np.uint8)
REFINED[..., 0], REFINED[..., 3] = 255, 255  # a red texture: the refined one


def _gathered(obj, numbers):
    scene = bpy.context.scene
    anim = gather_frames(obj, scene, numbers)
    scene.frame_set(int(numbers[0]))
    rest = gather_mesh(obj, bpy.context.evaluated_depsgraph_get(), with_texture=False)
    return anim, rest


def _world(obj) -> np.ndarray:
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    co = np.empty(len(ev.data.vertices) * 3, np.float32)
    ev.data.vertices.foreach_get("co", co)
    m = np.array(ev.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def _glb_of(tmp_path, rest):
    """A result GLB of the rest mesh with per-vertex UVs (no seams), holding the red refined texture."""
    uv = np.zeros((len(rest.vertices), 2), np.float32)
    uv[rest.faces.ravel()] = rest.uvs.reshape(-1, 2)
    return write_glb(tmp_path / "mesh.glb", rest.vertices, rest.faces, uv, png_bytes(REFINED))


def test_contract_pc2_through_the_mesh_cache_reproduces_every_gathered_frame(tmp_path):
    obj = rigged_grid(frame_start=3, frame_end=11)
    numbers = frame_numbers(3, 11, 2)
    anim, rest = _gathered(obj, numbers)
    pc2 = write_contract_pc2(tmp_path / "animation.pc2", anim.frames, start=3, sampling=2)
    result = cached_mesh(_glb_of(tmp_path, rest), pc2, "FromFile")
    mod = result.modifiers[MESH_CACHE]
    assert mod.type == "MESH_CACHE" and mod.cache_format == "PC2" and mod.time_mode == "FRAME"
    scene = bpy.context.scene
    for i, n in enumerate(numbers.tolist()):
        scene.frame_set(n)
        np.testing.assert_allclose(_world(result), anim.frames[i], atol=1e-5, err_msg=f"scene frame {n}")
    scene.frame_set(4)  # between two cached frames: their linear mix
    np.testing.assert_allclose(_world(result), 0.5 * (anim.frames[0] + anim.frames[1]), atol=1e-5)


def test_backend_writers_glb_split_at_seams_and_pc2_come_back_welded(tmp_path):
    obj = cube("Seamed", location=(0, 0, 0), rotation=(0, 0, 0), scale=(1, 1, 1))
    obj.shape_key_add(name="Basis")
    key = obj.shape_key_add(name="Squash")
    co = np.empty(len(key.data) * 3, np.float32)
    key.data.foreach_get("co", co)
    key.data.foreach_set("co", (co.reshape(-1, 3) * [1.5, 1.0, 0.5]).ravel())
    for frame, value in ((1, 0.0), (4, 1.0)):
        key.value = value
        key.keyframe_insert("value", frame=frame)
    numbers = frame_numbers(1, 4)
    anim, rest = _gathered(obj, numbers)
    glb, pc2 = backend_writes(tmp_path, rest.vertices, rest.faces, rest.uvs, REFINED, anim.frames, 1, 1)
    objects = import_result([glb, pc2], None)
    result = objects[0]
    assert len(result.data.vertices) == 8 and MESH_CACHE in result.modifiers  # 24 GLB vertices welded to 8
    for i, n in enumerate(numbers.tolist()):
        bpy.context.scene.frame_set(n)
        np.testing.assert_allclose(_world(result), anim.frames[i], atol=1e-5, err_msg=f"scene frame {n}")


def test_pc2_with_another_vertex_count_is_invalid_asset_naming_the_file(tmp_path):
    obj = rigged_grid()
    anim, rest = _gathered(obj, frame_numbers(1, 3))
    pc2 = write_contract_pc2(tmp_path / "animation.pc2", anim.frames[:, :-1], start=1, sampling=1)
    with pytest.raises(InvalidAsset, match=r"animation.pc2 holds \d+ vertices but mesh.glb has \d+"):
        import_result([_glb_of(tmp_path, rest), pc2], None)


@pytest.mark.parametrize("build", [rigged_grid, shape_key_grid], ids=["armature", "shape_key_constraint"])
def test_scene_object_comes_back_as_a_copy_driven_by_its_own_rig(tmp_path, build):
    source = build()
    numbers = frame_numbers(1, bpy.context.scene.frame_end)
    anim, rest = _gathered(source, numbers)
    pc2 = write_contract_pc2(tmp_path / "animation.pc2", anim.frames, start=1, sampling=1)
    old_material = source.data.materials[0]
    copy = import_result([_glb_of(tmp_path, rest), pc2], source)[0]
    assert copy.name == f"{source.name}_refined" and copy.data is not source.data
    assert [m.type for m in copy.modifiers] == [m.type for m in source.modifiers]
    assert [c.type for c in copy.constraints] == [c.type for c in source.constraints]
    if source.data.shape_keys:
        assert [k.name for k in copy.data.shape_keys.key_blocks] == ["Basis", "Wave"]
    assert source.hide_get() and source.data.materials[0] == old_material  # the source is untouched
    image = next(n.image for n in copy.material_slots[0].material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    px = np.empty(4 * 4 * 4, np.float32)
    image.pixels.foreach_get(px)
    np.testing.assert_allclose(px.reshape(-1, 4), np.tile([1.0, 0, 0, 1], (16, 1)))
    for i, n in enumerate(numbers.tolist()):
        bpy.context.scene.frame_set(n)
        np.testing.assert_allclose(_world(copy), anim.frames[i], atol=1e-5, err_msg=f"frame {n}")


def _splat_centres(obj) -> np.ndarray:
    """The Geometry Nodes result's point positions (the display modifier's point cloud)."""
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    cloud = geometry.pointcloud
    assert cloud is not None, "the splat object evaluates to a point cloud"
    pos = np.empty(len(cloud.points) * 3, np.float32)
    cloud.attributes["position"].data.foreach_get("vector", pos)
    return pos.reshape(-1, 3)


def _evaluated(obj, name: str, prop: str, width: int) -> np.ndarray:
    """[N, width] a point attribute of the splats' evaluated point cloud (what the display draws)."""
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    cloud = geometry.pointcloud  # valid while `geometry` lives
    assert cloud is not None and name in cloud.attributes, f"the splats evaluate to a point cloud with {name!r}"
    values = np.empty(len(cloud.points) * width, np.float32)
    cloud.attributes[name].data.foreach_get(prop, values)
    return values.reshape(-1, width)


@pytest.mark.parametrize("build", [rigged_grid, shape_key_grid, turning_cube],
                         ids=["armature", "shape_key_constraint", "turning_cube"])
def test_bound_splats_follow_the_evaluated_mesh_at_every_frame(tmp_path, build):
    """Centre, rotation and scale of every bound splat, evaluated by Blender at each frame, equal the backend's
    own posing of the same binding (its splats/frame_NNNN.ply)."""
    source = build()
    numbers = frame_numbers(1, bpy.context.scene.frame_end)
    anim, rest = _gathered(source, numbers)
    pc2 = write_contract_pc2(tmp_path / "animation.pc2", anim.frames, start=1, sampling=1)
    ply = backend_bound_splats(tmp_path, rest.vertices, rest.faces, anim.frames, numbers, 300, seed=4)
    copy, splats = import_result([_glb_of(tmp_path, rest), pc2, ply], source)
    assert splats.modifiers[0].name == BIND_MODIFIER and len(splats.modifiers) == 2
    attrs = splats.data.attributes
    assert attrs["bind_v0"].data_type == "INT" and attrs["bind_face"].data_type == "INT"
    face, cases = read_splats(ply).column("bind_face"), set()
    for i, n in enumerate(numbers.tolist()):
        bpy.context.scene.frame_set(n)
        want = read_splats(tmp_path / "splats" / f"frame_{n:04d}.ply")  # the backend's posed splats
        points = anim.frames[i]
        cases |= shepperd_cases(points, rest.faces[face])
        diag = float(np.linalg.norm(points.max(0) - points.min(0)))
        np.testing.assert_allclose(_evaluated(splats, "position", "vector", 3), want.positions,
                                   atol=1e-4 * diag, err_msg=f"centres at frame {n}")
        got = _evaluated(splats, "rotation", "value", 4)
        q = want.rotations / np.linalg.norm(want.rotations, axis=1, keepdims=True)
        dot = np.abs((got.astype(np.float64) * q).sum(1))
        assert dot.min() > 1 - 1e-4, f"frame {n}: splat {int(dot.argmin())} is turned {got[dot.argmin()]} " \
                                     f"where the backend has {q[dot.argmin()]} (|dot| {dot.min():.6f})"
        np.testing.assert_allclose(_evaluated(splats, "scale", "vector", 3), want.scales, atol=1e-6,
                                   err_msg=f"log scales at frame {n}")
    assert np.abs(anim.frames[-1] - anim.frames[0]).max() > 0.1  # they did move
    if build is turning_cube:
        assert cases == {0, 1, 2, 3}, f"the cube's frames reach quaternion branches {sorted(cases)}, not all four"


def test_pose_rotations_off_keeps_the_imported_rotations_and_still_moves_the_centres(tmp_path):
    source = rigged_grid(n=4)
    numbers = frame_numbers(1, 5)
    anim, rest = _gathered(source, numbers)
    pc2 = write_contract_pc2(tmp_path / "animation.pc2", anim.frames, start=1, sampling=1)
    ply = backend_bound_splats(tmp_path, rest.vertices, rest.faces, anim.frames, numbers, 80, seed=5)
    copy, splats = import_result([_glb_of(tmp_path, rest), pc2, ply], source)
    mod = splats.modifiers[BIND_MODIFIER]
    mod[next(i.identifier for i in mod.node_group.interface.items_tree if i.name == POSE_ROTATIONS)] = False
    splats.update_tag()
    bpy.context.scene.frame_set(5)
    want = read_splats(tmp_path / "splats" / "frame_0005.ply")
    diag = float(np.linalg.norm(anim.frames[-1].max(0) - anim.frames[-1].min(0)))
    np.testing.assert_allclose(_evaluated(splats, "position", "vector", 3), want.positions, atol=1e-4 * diag)
    np.testing.assert_allclose(_evaluated(splats, "rotation", "value", 4), read_splats(ply).rotations, atol=1e-7)
    assert np.abs((want.rotations * read_splats(ply).rotations).sum(1)).min() < 0.99  # posing would turn them


@pytest.mark.parametrize("damage, match", [
    ("drop", r"have no bind_rot_0, bind_rot_1, bind_rot_2, bind_rot_3"),
    ("zero", r"bind_rot of splat 7 is \[0.0, 0.0, 0.0, 0.0\], not a rotation"),
])
def test_bound_splats_without_a_usable_bind_rot_are_invalid_asset(tmp_path, damage, match):
    source = rigged_grid(n=3)
    anim, rest = _gathered(source, frame_numbers(1, 3))
    pc2 = write_contract_pc2(tmp_path / "animation.pc2", anim.frames, start=1, sampling=1)
    fields = bound_splat_fields(rest.vertices, rest.faces, 20, seed=2)
    for k in range(4):
        if damage == "drop":
            del fields[f"bind_rot_{k}"]
        else:
            fields[f"bind_rot_{k}"][7] = 0.0
    with pytest.raises(InvalidAsset, match=match) as info:
        import_result([_glb_of(tmp_path, rest), pc2, write_ply(tmp_path / "splats.ply", fields)], source)
    assert info.value.field == "splats.ply"


def test_bound_splats_follow_an_edited_animation(tmp_path):
    """The binding samples the live mesh: a change to the rig after import moves the splats too."""
    source = rigged_grid(n=4)
    anim, rest = _gathered(source, frame_numbers(1, 5))
    pc2 = write_contract_pc2(tmp_path / "animation.pc2", anim.frames, start=1, sampling=1)
    fields = bound_splat_fields(rest.vertices, rest.faces, 50, seed=1)
    copy, splats = import_result([_glb_of(tmp_path, rest), pc2, write_ply(tmp_path / "splats.ply", fields)], source)
    bpy.context.scene.frame_set(3)
    before = _splat_centres(splats)
    rig = copy.modifiers["Armature"].object
    rig.location.z += 1.0  # an edit of the rig (not animated, so it holds at every frame)
    rig.pose.bones["root"].rotation_quaternion = (0.9, 0.3, 0.0, 0.0)
    after = _splat_centres(splats)
    assert np.abs(after - before).max() > 0.5
    points = evaluated_world(copy)
    want = bound_centres(points, rest.faces, fields["bind_face"], fields["bind_u"], fields["bind_v"],
                         fields["bind_offset"])
    np.testing.assert_allclose(after, want, atol=1e-4 * float(np.linalg.norm(points.max(0) - points.min(0))))


def test_splat_sequence_plays_through_the_frame_change_handler(tmp_path):
    rng = np.random.default_rng(0)
    centres = {f: rng.normal(size=(40, 3)).astype(np.float32) for f in (1, 3, 5)}
    paths = write_sequence(tmp_path / "splats", centres)
    bpy.context.scene.frame_set(1)
    (obj,) = import_result(paths, None)
    for scene_frame, shown in ((3, 3), (4, 3), (5, 5), (9, 5), (1, 1), (0, 1)):
        bpy.context.scene.frame_set(scene_frame)
        co = np.empty(40 * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        np.testing.assert_array_equal(co.reshape(-1, 3), centres[shown], err_msg=f"scene frame {scene_frame}")


def test_splat_sequence_whose_counts_differ_names_the_file(tmp_path):
    rng = np.random.default_rng(0)
    paths = write_sequence(tmp_path / "splats", {1: rng.normal(size=(10, 3)), 2: rng.normal(size=(9, 3))})
    with pytest.raises(InvalidAsset, match=r"frame_0002.ply \(frame 2\) holds 9 Gaussians but frame_0001.ply holds 10"):
        import_result(paths, None)
