"""Contact sheets: layout, pixels, and validation."""

import io

import numpy as np
import pytest
from PIL import Image

from likeness3d.backend.export.sheet import LABEL_WIDTH, grid_sheet, to_uint8_rgb, turntable_sheet


def test_turntable_sheet_places_before_above_after(tmp_path):
    rng = np.random.default_rng(0)
    before = rng.integers(0, 256, size=(3, 10, 12, 3), dtype=np.uint8)
    after = rng.random((3, 10, 12, 4)).astype(np.float32)
    after[..., 3] = 1.0
    data = turntable_sheet(before, after, path=tmp_path / "sheet.png")
    assert (tmp_path / "sheet.png").read_bytes() == data
    img = np.asarray(Image.open(io.BytesIO(data)))
    gap = 2
    assert img.shape == (2 * (10 + gap), LABEL_WIDTH + 3 * (12 + gap), 3)
    x = LABEL_WIDTH + 2 * (12 + gap)
    assert np.array_equal(img[0:10, x:x + 12], before[2])
    assert np.array_equal(img[12:22, LABEL_WIDTH:LABEL_WIDTH + 12], to_uint8_rgb(after)[0])
    assert (img[0:10, 0:LABEL_WIDTH] < 128).any()  # the label is drawn


def test_rgba_is_composited_over_the_background():
    rgba = np.zeros((1, 2, 2, 4), np.float32)
    rgba[..., 0] = 1.0
    rgba[0, 0, 0, 3] = 1.0
    out = to_uint8_rgb(rgba)
    assert out[0, 0, 0].tolist() == [255, 0, 0] and out[0, 1, 1].tolist() == [255, 255, 255]


def test_sheet_validation():
    a = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match="one shape"):
        turntable_sheet(a, a[:1])
    with pytest.raises(ValueError, match="one size"):
        grid_sheet([a, np.zeros((2, 4, 8, 3), np.uint8)], ["a", "b"])
    with pytest.raises(ValueError, match="labels"):
        grid_sheet([a], ["a", "b"])
    with pytest.raises(ValueError, match="images"):
        to_uint8_rgb(np.zeros((8, 8, 3)))


def test_long_labels_widen_the_label_column():
    a = np.zeros((1, 8, 8, 3), np.uint8)
    short = np.asarray(Image.open(io.BytesIO(grid_sheet([a], ["a"]))))
    long = np.asarray(Image.open(io.BytesIO(grid_sheet([a], ["a rather long reference name"]))))
    assert short.shape[1] == LABEL_WIDTH + 10 and long.shape[1] > short.shape[1]
