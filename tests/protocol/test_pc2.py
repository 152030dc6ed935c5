"""PC2 files: Blender's Mesh Cache layout byte for byte, and typed errors on bad files."""

import struct

import numpy as np
import pytest

from likeness3d.protocol.errors import InvalidAsset
from likeness3d.protocol.pc2 import pc2_bytes, read_pc2, write_pc2


def test_layout_and_round_trip(tmp_path):
    pos = np.random.default_rng(0).normal(size=(3, 5, 3)).astype(np.float32)
    raw = pc2_bytes(pos, start=10, sampling=2)
    assert raw[:32] == struct.pack("<12siiffi", b"POINTCACHE2\0", 1, 5, 10.0, 2.0, 3)
    assert len(raw) == 32 + 3 * 5 * 12
    np.testing.assert_array_equal(np.frombuffer(raw[32 + 12:32 + 24], "<f4"), pos[0, 1])  # frame-major, vertex-minor
    path = write_pc2(tmp_path / "a.pc2", pos, 10, 2)
    for mmap in (False, True):
        cache = read_pc2(path, mmap=mmap)
        np.testing.assert_array_equal(cache.positions, pos)
        assert (cache.start, cache.sampling) == (10.0, 2.0)


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"POINT", "shorter than a PC2 header"),
        (struct.pack("<12siiffi", b"NOTACACHE\0\0\0", 1, 1, 0, 1, 1) + bytes(12), "does not start with POINTCACHE2"),
        (struct.pack("<12siiffi", b"POINTCACHE2\0", 1, 2, 0, 1, 1) + bytes(12), "needs 56"),
        (struct.pack("<12siiffi", b"POINTCACHE2\0", 1, 1, 0, 1, 1) + np.array([0, np.nan, 0], "<f4").tobytes(), "non-finite"),
    ],
)
def test_bad_files_are_invalid_assets(tmp_path, raw, match):
    path = tmp_path / "bad.pc2"
    path.write_bytes(raw)
    with pytest.raises(InvalidAsset, match=match) as e:
        read_pc2(path)
    assert e.value.field == "cache" and "bad.pc2" in str(e.value)
