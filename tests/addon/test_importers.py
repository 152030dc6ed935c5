"""Import of textured meshes (arrays, result GLB, "Import from file") and of 3DGS splat PLYs (small and 1M)."""


import bpy
import numpy as np
import pytest

from files import grid_mesh, png_bytes, random_splats, write_glb, write_ply
from likeness3d.addon.importers import import_file, import_glb_arrays, import_result
from likeness3d.addon.importers.mesh import MeshImportError, import_textured_mesh
from likeness3d.addon.importers.ply import PlyError, read_splats
from likeness3d.addon.importers.splats import NODE_GROUP, import_splat_file
from scenes import cube


def _world_vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def _corner_uvs(obj) -> np.ndarray:
    uv = np.empty(len(obj.data.loops) * 2, np.float32)
    obj.data.uv_layers["UVMap"].data.foreach_get("uv", uv)
    return uv.reshape(-1, 3, 2)


def _attr(obj, name, width=1, prop="value"):
    attr = obj.data.attributes[name]
    out = np.empty(len(attr.data) * width, np.float32)
    attr.data.foreach_get(prop, out)
    return out.reshape(len(attr.data), width) if width > 1 else out


# ---------------------------------------------------------------------------------------------
# Textured mesh


def test_textured_mesh_from_arrays_lands_at_the_source():
    source = cube("Statue", location=(1, 2, 3), rotation=(0.1, 0.2, 0.3), scale=(2, 2, 2))
    vertices, faces, uv = grid_mesh(4)
    vertices = vertices + np.float32([1, 2, 3])
    uvs = uv[faces]
    texture = np.zeros((4, 8, 4), np.uint8)
    texture[0] = (255, 0, 0, 255)  # top row red
    texture[1:] = (0, 255, 0, 255)
    obj = import_textured_mesh("ignored", vertices, faces, uvs, texture, source=source)

    assert obj.name == "Statue_refined" and obj.data.name == "Statue_refined"
    np.testing.assert_allclose(np.array(obj.matrix_world), np.array(source.matrix_world), atol=1e-6)
    np.testing.assert_allclose(_world_vertices(obj), vertices, atol=1e-5)
    assert len(obj.data.polygons) == len(faces) and all(p.loop_total == 3 for p in obj.data.polygons[:10])
    loops = np.empty(len(obj.data.loops), np.int32)
    obj.data.loops.foreach_get("vertex_index", loops)
    np.testing.assert_array_equal(loops.reshape(-1, 3), faces)
    np.testing.assert_allclose(_corner_uvs(obj), uvs)
    assert obj.data.validate() is False  # nothing needed fixing

    material = obj.data.materials[0]
    tex = next(n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    image = tex.image
    assert image.packed_file is not None and tuple(image.size) == (8, 4)
    px = np.empty(8 * 4 * 4, np.float32)
    image.pixels.foreach_get(px)
    top_row = px.reshape(4, 8, 4)[-1]  # Blender stores rows bottom-up
    np.testing.assert_allclose(top_row, np.tile([1, 0, 0, 1], (8, 1)))
    assert tex.outputs["Color"].links[0].to_socket.name == "Base Color"

    assert source.name in bpy.data.objects and source.hide_get() and source.hide_render
    assert obj.users_collection[0] == source.users_collection[0]


def test_bad_arrays_name_the_field():
    v, f, _ = grid_mesh(2)
    with pytest.raises(MeshImportError, match="faces reference vertex 8 .* but there are 5 vertices"):
        import_textured_mesh("x", v[:5], f)
    bad = v.copy()
    bad[3, 1] = np.nan
    with pytest.raises(MeshImportError, match=r"vertices\[3\]"):
        import_textured_mesh("x", bad, f)
    with pytest.raises(MeshImportError, match="uvs must have shape"):
        import_textured_mesh("x", v, f, np.zeros((2, 3, 2), np.float32))


def test_result_glb_through_the_numpy_reader(tmp_path):
    source = cube("Vase", location=(0.5, 0, 0), rotation=(0, 0, 0.4), scale=(1, 1, 1))
    vertices, faces, uv = grid_mesh(6)
    tex = np.zeros((16, 16, 4), np.uint8)
    tex[..., 0], tex[..., 3] = np.arange(16, dtype=np.uint8)[:, None] * 16, 255
    path = write_glb(tmp_path / "mesh.glb", vertices, faces, uv, png_bytes(tex))
    obj = import_glb_arrays(path, source, "Vase")
    assert obj.name == "Vase_refined"
    np.testing.assert_allclose(_world_vertices(obj), vertices, atol=1e-5)  # glTF Y up converted back
    np.testing.assert_allclose(_corner_uvs(obj), uv[faces], atol=1e-6)
    image = obj.data.materials[0].node_tree.nodes["Image Texture"].image
    assert image.packed_file is not None and tuple(image.size) == (16, 16)
    px = np.empty(16 * 16 * 4, np.float32)
    image.pixels.foreach_get(px)
    np.testing.assert_allclose(px.reshape(16, 16, 4)[::-1, 0, 0] * 255, tex[:, 0, 0], atol=0.5)


def test_import_from_file_glb_uses_blenders_gltf_importer_and_agrees(tmp_path):
    vertices, faces, uv = grid_mesh(5)
    path = write_glb(tmp_path / "asset.glb", vertices, faces, uv, png_bytes(np.full((4, 4, 4), 200, np.uint8)))
    objects = import_file(path)
    assert len(objects) == 1 and objects[0].type == "MESH"
    ours = import_glb_arrays(path, None, "ours")
    theirs = _world_vertices(objects[0])
    # same surface, in the same place: compare as sorted point sets (the importer may merge or split)
    a = np.unique(np.round(theirs, 5), axis=0)
    b = np.unique(np.round(_world_vertices(ours), 5), axis=0)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_import_result_ignores_non_geometry(tmp_path):
    (tmp_path / "inspect.json").write_text("{}")
    assert import_result([tmp_path / "inspect.json"], None) == []


# ---------------------------------------------------------------------------------------------
# Splats


@pytest.mark.parametrize("sh_degree", [0, 1, 3])
@pytest.mark.parametrize("fmt", ["binary_little_endian", "binary_big_endian", "ascii"])
def test_small_splat_ply_carries_every_field(tmp_path, sh_degree, fmt):
    fields = random_splats(500, sh_degree, seed=sh_degree)
    fields["confidence"] = np.linspace(0, 1, 500).astype(np.float32)  # an extra field, kept
    fields["segment"] = (np.arange(500) % 7).astype(np.int32)  # an extra integer field
    path = write_ply(tmp_path / "splats.ply", fields, fmt)
    obj = import_splat_file(path, display_cap=200)

    assert obj.type == "MESH" and len(obj.data.vertices) == 500 and len(obj.data.polygons) == 0
    co = np.empty(1500, np.float32)
    obj.data.vertices.foreach_get("co", co)
    np.testing.assert_allclose(co.reshape(-1, 3), np.column_stack([fields["x"], fields["y"], fields["z"]]), rtol=1e-6)
    f_dc = _attr(obj, "f_dc", 3, "vector")
    np.testing.assert_allclose(f_dc, np.column_stack([fields[f"f_dc_{i}"] for i in range(3)]), rtol=1e-6)
    n_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    for i in range(n_rest):
        np.testing.assert_allclose(_attr(obj, f"f_rest_{i}"), fields[f"f_rest_{i}"], rtol=1e-6, atol=1e-7)
    assert f"f_rest_{n_rest}" not in obj.data.attributes
    np.testing.assert_allclose(_attr(obj, "opacity"), fields["opacity"], rtol=1e-6)
    np.testing.assert_allclose(_attr(obj, "scale", 3, "vector"),
                               np.column_stack([fields[f"scale_{i}"] for i in range(3)]), rtol=1e-6)
    assert obj.data.attributes["rotation"].data_type == "QUATERNION"
    np.testing.assert_allclose(_attr(obj, "rotation", 4),
                               np.column_stack([fields[f"rot_{i}"] for i in range(4)]), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_attr(obj, "confidence"), fields["confidence"], atol=1e-7)
    assert obj.data.attributes["segment"].data_type == "INT"
    for name in ("nx", "ny", "nz"):
        assert name in obj.data.attributes
    assert obj["likeness3d_splats"]["sh_degree"] == sh_degree
    rgba = _attr(obj, "splat_color", 4, "color")
    np.testing.assert_allclose(rgba[:, 3], 1 / (1 + np.exp(-fields["opacity"])), rtol=1e-5)

    # viewport: Geometry Nodes shows at most 200 coloured points with the splat material
    mod = obj.modifiers["Likeness3D Splats"]
    assert mod.type == "NODES" and mod.node_group.name == NODE_GROUP
    pointcloud = _evaluated_pointcloud(obj)
    assert len(pointcloud.points) == len(range(0, 500, 3))  # every k-th point, k = ceil(500 / 200)
    assert pointcloud.materials[0].name == "Likeness3D Splat"
    assert "splat_color" in pointcloud.attributes


def _evaluated_pointcloud(obj):
    """The point cloud the Geometry Nodes modifier makes (an instance of the evaluated object)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    for inst in depsgraph.object_instances:
        if inst.object.original == obj and inst.object.type == "POINTCLOUD":
            return inst.object.data
    raise AssertionError("no evaluated point cloud")


def test_one_million_splats(tmp_path):
    path = write_ply(tmp_path / "big.ply", random_splats(1_000_000, 3, seed=9))
    obj = import_splat_file(path, display_cap=250_000)
    assert len(obj.data.vertices) == 1_000_000
    assert len(obj.data.attributes) >= 3 + 45 + 1 + 1 + 1 + 3 + 2  # f_dc, f_rest, opacity, scale, rot, nx..nz, display
    assert len(_evaluated_pointcloud(obj).points) == 250_000  # every 4th point shown; all kept in the mesh
    # its speed is bench/blender_io.py's to measure


def test_plys_that_are_not_3dgs_are_named(tmp_path):
    fields = random_splats(10)
    del fields["opacity"]
    path = write_ply(tmp_path / "partial.ply", fields)
    with pytest.raises(PlyError, match=r"\['opacity'\] are missing"):
        read_splats(path)
    (tmp_path / "text.ply").write_text("hello")
    with pytest.raises(PlyError, match="not a PLY file"):
        read_splats(tmp_path / "text.ply")
    good = random_splats(10)
    path = write_ply(tmp_path / "short.ply", good)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(PlyError, match="header promises 10 vertices"):
        read_splats(path)


def test_import_from_file_routes_plys(tmp_path):
    splats = write_ply(tmp_path / "cloud.ply", random_splats(50))
    (obj,) = import_file(splats)
    assert "f_dc" in obj.data.attributes
    # a plain point PLY (no 3DGS fields) goes to Blender's own PLY importer
    plain = write_ply(tmp_path / "points.ply", {"x": np.zeros(3, np.float32), "y": np.ones(3, np.float32),
                                                "z": np.arange(3, dtype=np.float32)})
    (mesh_obj,) = import_file(plain)
    assert len(mesh_obj.data.vertices) == 3 and "f_dc" not in mesh_obj.data.attributes
    with pytest.raises(ValueError, match="expected a .glb, .gltf or .ply"):
        import_file(tmp_path / "notes.txt")


def test_display_shows_every_point_up_to_max_points_and_every_kth_above(tmp_path):
    """Up to Max Points the selection is constant (Mesh to Points shares the arrays); above it, every k-th."""
    fields = random_splats(60, 0, seed=2)
    obj = import_splat_file(write_ply(tmp_path / "splats.ply", fields), display_cap=60)
    cloud = _evaluated_pointcloud(obj)
    pos = np.empty(60 * 3, np.float32)
    cloud.attributes["position"].data.foreach_get("vector", pos)
    np.testing.assert_array_equal(pos.reshape(-1, 3), np.column_stack([fields[k] for k in "xyz"]))
    assert "splat_color" in cloud.attributes and "rotation" in cloud.attributes
    mod = obj.modifiers["Likeness3D Splats"]
    ident = next(i.identifier for i in mod.node_group.interface.items_tree
                 if i.item_type == "SOCKET" and i.in_out == "INPUT" and i.name == "Max Points")
    mod[ident] = 59
    obj.update_tag()
    assert len(_evaluated_pointcloud(obj).points) == 30  # k = ceil(60 / 59) = 2
