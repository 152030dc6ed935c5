"""video.mp4 is H.264 (libx264) and decodes back to its frames."""

import numpy as np
import pytest

from likeness3d.backend.stages.video.mp4 import read_mp4, write_mp4


def test_h264_round_trip(tmp_path):
    frames = np.zeros((9, 32, 48, 3), np.uint8)
    for i in range(9):
        frames[i, :, : 5 * (i + 1)] = (40 * (i % 6), 255, 128)
    info = write_mp4(tmp_path / "v.mp4", frames, fps=8)
    assert info["codec"] == "h264" and info["frames"] == 9
    decoded, codec = read_mp4(tmp_path / "v.mp4")
    assert codec == "h264" and decoded.shape == frames.shape
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 12  # lossy, but the same pictures


def test_odd_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        write_mp4(tmp_path / "v.mp4", np.zeros((2, 31, 32, 3), np.uint8), fps=8)
