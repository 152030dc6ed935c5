"""Mesh files land in the Blender frame as Blender's importers put them: glTF/OBJ Y up, PLY Z up."""

import numpy as np
import pytest
import trimesh

from compare import assert_same
from likeness3d.backend.export.glb import write_glb
from likeness3d.backend.inputs.mesh import read_mesh
from likeness3d.protocol.errors import InvalidAsset

V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 2]], np.float32)
F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)


def test_glb_round_trip_in_blender_frame(tmp_path, asset):
    write_glb(asset.mesh, path=tmp_path / "m.glb")
    m = read_mesh(tmp_path / "m.glb")
    np.testing.assert_allclose(m.vertices[m.faces], asset.mesh.vertices[asset.mesh.faces], atol=1e-6)
    np.testing.assert_allclose(m.uvs, asset.mesh.uvs, atol=1e-6)
    assert_same(m.texture, asset.mesh.texture)  # the base colour comes back losslessly, as uint8


def test_obj_is_y_up_and_ply_is_z_up(tmp_path):
    trimesh.Trimesh(V, F, process=False).export(tmp_path / "m.obj")
    trimesh.Trimesh(V, F, process=False).export(tmp_path / "m.ply")
    obj, ply = read_mesh(tmp_path / "m.obj"), read_mesh(tmp_path / "m.ply")
    np.testing.assert_allclose(obj.vertices, np.stack([V[:, 0], -V[:, 2], V[:, 1]], 1), atol=1e-6)  # (x, -z, y)
    np.testing.assert_allclose(ply.vertices, V, atol=1e-6)


def test_bad_files(tmp_path):
    with pytest.raises(InvalidAsset, match="does not exist"):
        read_mesh(tmp_path / "none.glb")
    (tmp_path / "x.stl").write_text("solid")
    with pytest.raises(InvalidAsset, match="expected .glb"):
        read_mesh(tmp_path / "x.stl")
    (tmp_path / "broken.glb").write_bytes(b"glTF garbage")
    with pytest.raises(InvalidAsset, match="cannot read mesh"):
        read_mesh(tmp_path / "broken.glb")
