"""Animated meshes and per-frame references: validation names the field, the wire form round-trips."""

import numpy as np
import pytest

from compare import assert_same
from likeness3d.protocol.assets import Asset, Camera, Mesh, Reference, asset_from_wire, asset_to_wire
from likeness3d.protocol.errors import InvalidAsset

V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
F = np.array([[0, 1, 2]], np.int32)
K = np.array([[10.0, 0, 4], [0, 10, 4], [0, 0, 1]])
FRAMES = np.stack([V + [0, 0, 0.1 * t] for t in range(4)]).astype(np.float32)
NUMBERS = np.array([1, 3, 5, 7], np.int32)


def _ref(name, frame=None):
    return Reference(name, np.zeros((8, 8, 4), np.uint8), Camera(K, np.eye(4), 8, 8), frame)


def test_animated_asset_round_trips():
    mesh = Mesh(V, F, frames=FRAMES, frame_numbers=NUMBERS, fps=24)
    asset = Asset(mesh, (_ref("a", 3), _ref("b")))
    assert mesh.animated and mesh.fps == 24.0 and isinstance(mesh.fps, float)
    meta, arrays = asset_to_wire(asset)
    assert meta["fps"] == 24.0 and meta["references"][0]["frame"] == 3 and "frame" not in meta["references"][1]
    assert_same(asset_from_wire(meta, arrays), asset)
    static = Asset(Mesh(V, F))
    assert not static.mesh.animated
    assert set(asset_to_wire(static)[1]) == {"mesh.vertices", "mesh.faces"}


@pytest.mark.parametrize(
    "kwargs,match,field",
    [
        ({"frames": FRAMES[:, :2].copy()}, r"mesh.frames has shape \[4, 2, 3\]; expected \[T >= 1, 3, 3\]", "mesh.frames"),
        ({"frames": FRAMES.astype(np.float64)}, "mesh.frames has dtype float64", "mesh.frames"),
        ({"frame_numbers": None}, "without mesh.frame_numbers", "mesh.frame_numbers"),
        ({"frames": None}, "without mesh.frames", "mesh.frame_numbers"),
        ({"frame_numbers": NUMBERS[:3].copy()}, "has 3 entries but mesh.frames has 4", "mesh.frame_numbers"),
        ({"frame_numbers": np.array([1, 3, 3, 7], np.int32)}, "entry 2 is 3 after 3", "mesh.frame_numbers"),
        ({"fps": float("nan")}, r"mesh.fps must be a number in \(0, 1000\]", "mesh.fps"),
        ({"fps": 0}, r"mesh.fps must be a number", "mesh.fps"),
    ],
)
def test_animated_mesh_rejections(kwargs, match, field):
    args = {"vertices": V, "faces": F, "frames": FRAMES, "frame_numbers": NUMBERS} | kwargs
    with pytest.raises(InvalidAsset, match=match) as e:
        Mesh(**args)
    assert e.value.field == field


def test_nan_in_a_frame_names_the_frame():
    bad = FRAMES.copy()
    bad[2, 1, 0] = np.inf
    with pytest.raises(InvalidAsset, match=r"mesh.frames\[2, 1, 0\] is inf") as e:
        Mesh(V, F, frames=bad, frame_numbers=NUMBERS)
    assert e.value.field == "mesh.frames"


def test_reference_frame_outside_the_range_is_named():
    mesh = Mesh(V, F, frames=FRAMES, frame_numbers=NUMBERS)
    with pytest.raises(InvalidAsset, match=r"references\[1\].frame is 4, which is not one of the mesh's frames \(1..7, 4 frames\)") as e:
        Asset(mesh, (_ref("a", 1), _ref("b", 4)))
    assert e.value.field == "references[1].frame"
    with pytest.raises(InvalidAsset, match=r"references\[0\].frame is 2 but the mesh is static") as e:
        Asset(Mesh(V, F), (_ref("a", 2),))
    assert e.value.field == "references[0].frame"
    with pytest.raises(InvalidAsset, match=r"references\[a\].frame must be an int32"):
        _ref("a", 1.5)


def test_wire_rejects_a_bad_frame_field():
    meta, arrays = asset_to_wire(Asset(Mesh(V, F, frames=FRAMES, frame_numbers=NUMBERS), (_ref("a", 3),)))
    meta["references"][0]["frame"] = "3"
    with pytest.raises(InvalidAsset, match=r"references\[0\].frame must be an int frame number, got '3'") as e:
        asset_from_wire(meta, arrays)
    assert e.value.field == "references[0].frame"
    meta["references"][0]["frame"] = 3
    del arrays["mesh.frame_numbers"]
    with pytest.raises(InvalidAsset, match="without mesh.frame_numbers"):
        asset_from_wire(meta, arrays)
