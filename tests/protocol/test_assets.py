"""Asset validation names the field and the value; the wire form round-trips exactly."""

import numpy as np
import pytest

from likeness3d.protocol.assets import Asset, Camera, Mesh, Reference, asset_from_wire, asset_to_wire
from likeness3d.protocol.errors import InvalidAsset

V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
F = np.array([[0, 1, 2]], np.int32)
K = np.array([[10.0, 0, 4], [0, 10, 4], [0, 0, 1]])


def test_face_index_out_of_range_names_the_vertex():
    with pytest.raises(InvalidAsset, match="references vertex 7 but the mesh has 3 vertices") as e:
        Mesh(V, np.array([[0, 1, 7]], np.int32))
    assert e.value.field == "mesh.faces"


def test_nan_vertex_is_reported_with_its_index():
    v = V.copy()
    v[1, 2] = np.nan
    with pytest.raises(InvalidAsset, match=r"mesh.vertices\[1, 2\] is nan"):
        Mesh(v, F)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"vertices": V.astype(np.float64)}, "mesh.vertices has dtype float64"),
        ({"faces": F[:, :2].copy()}, r"mesh.faces has shape \[1, 2\]"),
        ({"uvs": np.zeros((2, 3, 2), np.float32)}, "mesh.uvs has 2 triangles but mesh.faces has 1"),
        ({"texture": np.full((2, 2, 4), 2.0, np.float32)}, r"float images must lie in \[0, 1\]"),
        ({"texture": np.zeros((2, 2, 3), np.uint8)}, r"mesh.texture has shape \[2, 2, 3\]"),
        ({"faces": np.array([[0, -1, 2]], np.int32)}, "negative vertex index -1"),
    ],
)
def test_mesh_rejections(kwargs, match):
    args = {"vertices": V, "faces": F} | kwargs
    with pytest.raises(InvalidAsset, match=match):
        Mesh(**args)


def test_camera_and_reference_rejections():
    with pytest.raises(InvalidAsset, match="camera.K must be"):
        Camera(np.eye(3) * -1, np.eye(4), 8, 8)
    with pytest.raises(InvalidAsset, match="not a proper rotation"):
        Camera(K, np.diag([1.0, 1, -1, 1]), 8, 8)
    with pytest.raises(InvalidAsset, match=r"camera.width must be an int in \[1, 65536\], got 0"):
        Camera(K, np.eye(4), 0, 8)
    cam = Camera(K, np.eye(4), 8, 8)
    with pytest.raises(InvalidAsset, match="is 9x8 but its camera is 8x8"):
        Reference("r", np.zeros((8, 9, 4), np.uint8), cam)
    ref = Reference("r", np.zeros((8, 8, 4), np.uint8), cam)
    with pytest.raises(InvalidAsset, match="repeated"):
        Asset(Mesh(V, F), (ref, ref))


def test_camera_projects_like_opencv():
    cam = Camera(K, np.eye(4), 8, 8)
    uv, z = cam.project(np.array([[0.0, 0.0, 2.0], [0.2, -0.4, 2.0]]))
    np.testing.assert_allclose(uv, [[4, 4], [5, 2]])
    np.testing.assert_allclose(z, [2, 2])


def test_wire_round_trip(asset):
    meta, arrays = asset_to_wire(asset)
    back = asset_from_wire(meta, arrays)
    np.testing.assert_array_equal(back.mesh.vertices, asset.mesh.vertices)
    np.testing.assert_array_equal(back.mesh.uvs, asset.mesh.uvs)
    assert [r.name for r in back.references] == [r.name for r in asset.references]
    np.testing.assert_array_equal(back.references[1].camera.w2c, asset.references[1].camera.w2c)
    assert back.class_word == "thing"


def test_wire_rejects_stray_arrays_and_bad_cameras(asset):
    meta, arrays = asset_to_wire(asset)
    with pytest.raises(InvalidAsset, match="belong to no part"):
        asset_from_wire(meta, arrays | {"ref.9.image": arrays["ref.0.image"]})
    bad = dict(meta, references=[dict(meta["references"][0], K=[1.0] * 8), meta["references"][1]])
    with pytest.raises(InvalidAsset, match=r"references\[0\].K must be 9 finite numbers"):
        asset_from_wire(bad, arrays)
