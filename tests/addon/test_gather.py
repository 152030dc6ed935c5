"""gather: known meshes (modifiers, no UVs, textures, mirrored transforms) give the expected arrays."""

import bpy
import numpy as np
import pytest

from likeness3d.addon.gather import GatherError, gather_camera, gather_mesh
from likeness3d.addon.request import build_asset
from likeness3d.protocol.assets import Asset
from likeness3d.protocol.cameras import blender_to_cv, reframe_intrinsics
from scenes import camera, cube, mesh_without_uvs, subject_scene, textured_material


def _depsgraph():
    return bpy.context.evaluated_depsgraph_get()


def _reference_triangles(obj):
    """World-space corners of the evaluated mesh, computed the slow, obvious way (mathutils, per vertex)."""
    ev = obj.evaluated_get(_depsgraph())
    mesh = ev.to_mesh()
    mesh.calc_loop_triangles()
    mw = ev.matrix_world.copy()
    tris = np.array([[list(mw @ mesh.vertices[v].co) for v in t.vertices] for t in mesh.loop_triangles])
    normals = np.array([list((mw.to_3x3().inverted().transposed() @ t.normal).normalized()) for t in mesh.loop_triangles])
    ev.to_mesh_clear()
    return tris, normals


def test_cube_with_subdivision_modifier_in_world_space():
    obj = cube()
    mod = obj.modifiers.new("Subdivision", "SUBSURF")
    mod.levels = 1
    arrays = gather_mesh(obj, _depsgraph())
    # Catmull-Clark level 1 of a cube: 8 + 12 + 6 vertices, 24 quads -> 48 triangles
    assert arrays.vertices.shape == (26, 3) and arrays.faces.shape == (48, 3)
    assert arrays.vertices.dtype == np.float32 and arrays.faces.dtype == np.int32
    tris, _ = _reference_triangles(obj)
    np.testing.assert_allclose(arrays.vertices[arrays.faces], tris, atol=1e-5)
    assert arrays.uvs.shape == (48, 3, 2) and arrays.uv_source == "uv:UVMap"
    assert len(obj.data.vertices) == 8  # the user's mesh keeps its own shape


def test_array_modifier_triples_the_mesh_and_uvs_follow_loops():
    obj = cube(location=(0, 0, 0), rotation=(0, 0, 0), scale=(1, 1, 1))
    obj.modifiers.new("Array", "ARRAY").count = 3
    arrays = gather_mesh(obj, _depsgraph())
    assert arrays.faces.shape == (36, 3)
    # per-corner UVs are the loops' UVs, read the slow way for comparison
    ev = obj.evaluated_get(_depsgraph())
    mesh = ev.to_mesh()
    mesh.calc_loop_triangles()
    expected = np.array([[list(mesh.uv_layers.active.data[lp].uv) for lp in t.loops] for t in mesh.loop_triangles])
    ev.to_mesh_clear()
    np.testing.assert_allclose(arrays.uvs, expected)
    assert arrays.vertices[:, 0].max() == pytest.approx(5.0)  # 3 cubes of size 2, offset by their width


def test_mesh_without_uvs_is_unwrapped_on_a_copy():
    obj = mesh_without_uvs()
    before = {k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "scenes")}
    arrays = gather_mesh(obj, _depsgraph())
    assert arrays.uv_source == "smart_uv_project"
    assert arrays.uvs.shape == (len(arrays.faces), 3, 2)
    assert arrays.uvs.min() >= 0.0 and arrays.uvs.max() <= 1.0
    # islands cover the square: not all corners at one point
    assert np.ptp(arrays.uvs[..., 0]) > 0.5 and np.ptp(arrays.uvs[..., 1]) > 0.5
    assert len(obj.data.uv_layers) == 0  # the user's mesh is untouched
    assert {k: len(getattr(bpy.data, k)) for k in ("objects", "meshes", "scenes")} == before
    assert bpy.context.scene.name == "Scene" and obj.mode == "OBJECT"


def test_texture_comes_through_nodes_top_down():
    obj = cube()
    pixels = np.zeros((2, 4, 4), np.float32)
    pixels[0] = (1.0, 0.0, 0.0, 1.0)  # top row red
    pixels[1] = (0.0, 0.0, 1.0, 0.5)  # bottom row blue, half transparent
    obj.data.materials.append(textured_material("Paint", pixels))
    arrays = gather_mesh(obj, _depsgraph())
    assert arrays.texture.shape == (2, 4, 4) and arrays.texture.dtype == np.uint8
    np.testing.assert_array_equal(arrays.texture[0, :, :], np.tile([255, 0, 0, 255], (4, 1)))
    np.testing.assert_array_equal(arrays.texture[1, :, :], np.tile([0, 0, 255, 128], (4, 1)))
    assert arrays.texture_name == "Paint_tex"


def test_uv_map_named_by_the_texture_is_used():
    obj = cube()
    second = obj.data.uv_layers.new(name="Baked")
    uv = np.random.default_rng(3).uniform(size=len(obj.data.loops) * 2).astype(np.float32)
    second.data.foreach_set("uv", uv)
    obj.data.materials.append(textured_material("Paint", np.ones((2, 2, 4), np.float32), uv_map="Baked"))
    arrays = gather_mesh(obj, _depsgraph())
    assert arrays.uv_source == "uv:Baked"
    assert set(np.round(arrays.uvs.ravel(), 6)) <= set(np.round(uv, 6))


def test_mirrored_transform_keeps_front_faces_counter_clockwise():
    obj = cube(scale=(-1.0, 1.0, 1.0))
    arrays = gather_mesh(obj, _depsgraph())
    tri = arrays.vertices[arrays.faces].astype(np.float64)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    _, expected = _reference_triangles(obj)  # Blender's own (outward) normals, in world space
    assert np.all(np.einsum("ij,ij->i", normals, expected) > 0)


def test_edit_mode_changes_are_gathered():
    obj = cube(location=(0, 0, 0), rotation=(0, 0, 0), scale=(1, 1, 1))
    bpy.context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    import bmesh

    bm = bmesh.from_edit_mesh(obj.data)
    for v in bm.verts:
        v.co.z += 10.0
    bmesh.update_edit_mesh(obj.data)
    arrays = gather_mesh(obj, _depsgraph())
    bpy.ops.object.mode_set(mode="OBJECT")
    assert arrays.vertices[:, 2].min() == pytest.approx(9.0)


def test_bad_targets_are_named():
    cam = camera()
    with pytest.raises(GatherError, match="'Camera' of type 'CAMERA'"):
        gather_mesh(cam, _depsgraph())
    empty = bpy.data.objects.new("Flat", bpy.data.meshes.new("Flat"))
    bpy.context.scene.collection.objects.link(empty)
    with pytest.raises(GatherError, match="'Flat' has no faces"):
        gather_mesh(empty, _depsgraph())


def test_gather_camera_matches_the_pure_function_and_reframes_photos():
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 800, 600
    cam = camera(lens=35.0)
    cam.data.shift_x = 0.05
    direct = blender_to_cv(np.array(cam.matrix_world), 35.0, 36.0, 24.0, "AUTO", 0.05, 0.0, 800, 600)
    got = gather_camera(cam, scene)
    np.testing.assert_allclose(got.K, direct.K)
    np.testing.assert_allclose(got.w2c, direct.w2c, atol=1e-6)
    # a 400 x 600 portrait photo fitted into the 800 x 600 frame
    photo = gather_camera(cam, scene, (400, 600), "FIT")
    assert (photo.width, photo.height) == (400, 600)
    np.testing.assert_allclose(photo.K, reframe_intrinsics(direct.K, (800, 600), (400, 600), "FIT"))
    cam.data.type = "ORTHO"
    with pytest.raises(GatherError, match="ORTHO"):
        gather_camera(cam, scene)


def test_build_asset_from_the_scene():
    subject_scene(n_refs=2)
    asset = build_asset(bpy.context)
    assert isinstance(asset, Asset)
    assert asset.class_word == "box" and asset.name == "Cube"
    assert asset.mesh.faces.shape == (12, 3) and asset.mesh.texture.shape == (8, 8, 4)
    assert [r.name for r in asset.references] == ["photo0", "photo1"]
    for ref in asset.references:
        assert ref.image.shape == (48, 64, 4) and ref.image.dtype == np.uint8
        # the cube's centre projects near the image centre: the cameras look at it
        uv, z = ref.camera.project(np.zeros((1, 3)))
        assert z[0] > 0 and np.allclose(uv[0], (31.5, 23.5), atol=1.0)


def test_build_asset_names_what_is_missing():
    scene = bpy.context.scene
    with pytest.raises(GatherError, match="no target mesh"):
        build_asset(bpy.context)
    subject_scene(n_refs=1)
    scene.likeness.references[0].camera = None
    with pytest.raises(GatherError, match="reference 1 .*'photo0'.* has no camera"):
        build_asset(bpy.context)
