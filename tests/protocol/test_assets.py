"""Asset validation names the field and the value; the wire form round-trips exactly."""

import dataclasses

import numpy as np
import pytest

from compare import assert_same
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
    with pytest.raises(InvalidAsset, match=r"mesh.vertices\[1, 2\] is nan") as e:
        Mesh(v, F)
    assert e.value.field == "mesh.vertices"


@pytest.mark.parametrize(
    "kwargs,match,field",
    [
        ({"vertices": V.astype(np.float64)}, "mesh.vertices has dtype float64", "mesh.vertices"),
        ({"faces": F[:, :2].copy()}, r"mesh.faces has shape \[1, 2\]", "mesh.faces"),
        ({"uvs": np.zeros((2, 3, 2), np.float32)}, "mesh.uvs has 2 triangles but mesh.faces has 1", "mesh.uvs"),
        ({"texture": np.full((2, 2, 4), 2.0, np.float32)}, r"float images must lie in \[0, 1\]", "mesh.texture"),
        ({"texture": np.zeros((2, 2, 3), np.uint8)}, r"mesh.texture has shape \[2, 2, 3\]", "mesh.texture"),
        ({"faces": np.array([[0, -1, 2]], np.int32)}, "negative vertex index -1", "mesh.faces"),
    ],
)
def test_mesh_rejections(kwargs, match, field):
    args = {"vertices": V, "faces": F} | kwargs
    with pytest.raises(InvalidAsset, match=match) as e:
        Mesh(**args)
    assert e.value.field == field


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
    named = dataclasses.replace(asset, name="tetra")
    meta, arrays = asset_to_wire(named)
    assert_same(asset_from_wire(meta, arrays), named)  # mesh, UVs, texture, every reference's image and camera
    bare = Asset(Mesh(V, F))  # optional parts stay absent
    assert_same(asset_from_wire(*asset_to_wire(bare)), bare)
    # float32 images, and a rotated camera with fx != fy and cx != cy: a transposed or misordered matrix shows
    c, s = np.cos(0.3), np.sin(0.3)
    cam = Camera(np.array([[11.0, 0, 3.5], [0, 12.5, 2.25], [0, 0, 1]]),
                 np.array([[c, -s, 0, 0.5], [0, 0, -1, 0.25], [s, c, 0, 3.0], [0, 0, 0, 1]]), 6, 4)
    rng = np.random.default_rng(2)
    floats = Asset(Mesh(V, F, rng.random((1, 3, 2), dtype=np.float32), rng.random((2, 3, 4), dtype=np.float32)),
                   (Reference("r", rng.random((4, 6, 4), dtype=np.float32), cam),), "pebble", "floats")
    assert_same(asset_from_wire(*asset_to_wire(floats)), floats)


def test_wire_rejects_stray_arrays_and_bad_cameras(asset):
    meta, arrays = asset_to_wire(asset)
    with pytest.raises(InvalidAsset, match=r"arrays \['ref.9.image'\] belong to no part") as e:
        asset_from_wire(meta, arrays | {"ref.9.image": arrays["ref.0.image"]})
    assert e.value.field == "asset"
    bad = dict(meta, references=[dict(meta["references"][0], K=[1.0] * 8), meta["references"][1]])
    with pytest.raises(InvalidAsset, match=r"references\[0\].K must be 9 finite numbers") as e:
        asset_from_wire(bad, arrays)
    assert e.value.field == "references[0].K"
