"""transforms.json: round trip, per-frame overrides, masks, clear errors."""

import json

import numpy as np
import pytest

from compare import assert_same
from likeness3d.backend.synthetic.example import example_asset
from likeness3d.backend.inputs.transforms import read_transforms, write_transforms
from likeness3d.protocol.errors import InvalidAsset


def test_round_trip(tmp_path):
    refs = example_asset(image_size=32).references
    write_transforms(tmp_path / "transforms.json", list(refs))
    back = read_transforms(tmp_path / "transforms.json")
    # names, images (exact: PNG) and cameras (size exact; K and w2c through a matrix inverse, to 1e-9)
    assert_same(list(back), list(refs), atol=1e-9)


def test_blender_convention_by_hand(tmp_path):
    """A Blender camera at (0, -5, 0) with identity-like rotation looking +Y (rotation_euler 90,0,0)."""
    from PIL import Image

    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((20, 40), 255, np.uint8)).save(tmp_path / "a_mask.png")
    c2w = [[1, 0, 0, 0], [0, 0, -1, -5], [0, 1, 0, 0], [0, 0, 0, 1]]  # Blender camera: -Z looks along +Y
    meta = {"fl_x": 50, "fl_y": 50, "cx": 20, "cy": 10, "w": 40, "h": 20,
            "frames": [{"file_path": "a.png", "mask_path": "a_mask.png", "transform_matrix": c2w, "fl_y": 60}]}
    (tmp_path / "t.json").write_text(json.dumps(meta))
    (ref,) = read_transforms(tmp_path / "t.json")
    assert ref.camera.K[1, 1] == 60 and ref.camera.K[0, 2] == 19.5  # per-frame override; pixel-centre convention
    uv, z = ref.camera.project(np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.0]]))
    np.testing.assert_allclose(z, [5, 5])
    np.testing.assert_allclose(uv[0], [19.5, 9.5])
    assert uv[1, 1] < uv[0, 1]  # world +Z (up) is up in the image
    assert ref.image[..., 3].min() == 255


@pytest.mark.parametrize(
    "frame,match",
    [
        ({"file_path": "missing.png"}, "does not exist"),
        ({"file_path": "a.png", "w": 41}, "is 40x20 but its camera is 41x20"),
        ({"file_path": "a.png", "k1": 0.1}, "undistort"),
        ({"file_path": "a.png", "fl_x": -3}, "fl_x"),
        ({}, "file_path"),
        ({"file_path": "a.png", "w": 40.7}, r"frames\[0\]\.w is 40.7; the image width must be a whole number"),
        ({"file_path": "a.png", "k1": "x"}, r"frames\[0\]\.k1 is 'x'; it must be a finite number"),
        ({"file_path": "a.png", "transform_matrix": [[1, 0], [0, 1]]}, r"frames\[0\]\.transform_matrix .* 4 rows of 4"),
    ],
)
def test_errors_name_the_frame(tmp_path, frame, match):
    from PIL import Image

    Image.fromarray(np.zeros((20, 40, 4), np.uint8)).save(tmp_path / "a.png")
    meta = {"fl_x": 50, "fl_y": 50, "cx": 20, "cy": 10, "w": 40, "h": 20,
            "frames": [dict({"transform_matrix": np.eye(4).tolist()}, **frame)]}
    (tmp_path / "t.json").write_text(json.dumps(meta))
    with pytest.raises(InvalidAsset, match=match) as e:
        read_transforms(tmp_path / "t.json")
    assert "frames[0]" in str(e.value)
