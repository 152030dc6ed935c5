"""Framing: header + zero-copy array frames, and every way a frame list can lie."""

import msgpack
import numpy as np
import pytest

from likeness3d.protocol.errors import BadMessage, TooLarge
from likeness3d.protocol.framing import decode, encode


def test_round_trip_all_dtypes_without_copies():
    arrays = {
        f"a{i}": (np.arange(24) % 7).astype(dt).reshape(2, 3, 4)
        for i, dt in enumerate([np.uint8, np.int32, np.int64, np.float16, np.float32, np.float64, np.bool_])
    }
    frames = encode({"v": 1, "type": "x"}, arrays)
    # the sender hands zmq the arrays' own memory
    assert np.shares_memory(np.frombuffer(frames[1], np.uint8), arrays["a0"])
    header, out = decode(frames)
    assert header == {"v": 1, "type": "x"}
    for k, a in arrays.items():
        assert out[k].dtype == a.dtype and out[k].shape == a.shape
        np.testing.assert_array_equal(out[k], a)
    # the receiver wraps the frame: no copy
    assert np.shares_memory(out["a1"], np.frombuffer(frames[2], np.uint8))


def test_non_contiguous_and_empty_arrays():
    a = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    header, out = decode(encode({}, {"a": a, "e": np.zeros((0, 3), np.float32)}))
    np.testing.assert_array_equal(out["a"], a)
    assert out["e"].shape == (0, 3)


def _frames(desc, payloads):
    return [msgpack.packb({"v": 1, "type": "ping", "id": 1, "arrays": desc}), *payloads]


@pytest.mark.parametrize(
    "desc,payloads,field",
    [
        ([{"name": "a", "dtype": "<f4", "shape": [10], "frame": 1}], [b"\0" * 39], "a"),  # lying shape
        ([{"name": "a", "dtype": "|O", "shape": [1], "frame": 1}], [b"\0" * 8], "a"),  # object dtype
        ([{"name": "a", "dtype": "<f4", "shape": [-1], "frame": 1}], [b"\0" * 4], "a"),
        ([{"name": "a", "dtype": "<f4", "shape": [1], "frame": 5}], [b"\0" * 4], "a"),  # frame out of range
        ([{"name": "a", "dtype": "<f4", "shape": [1]}], [b"\0" * 4], "arrays[0]"),  # missing key
        ([{"name": "a", "dtype": "<f4", "shape": [1], "frame": 1}], [], "arrays"),  # frame count
        ("nope", [b""], "arrays"),
    ],
)
def test_lying_descriptors_name_the_field(desc, payloads, field):
    with pytest.raises(BadMessage) as e:
        decode(_frames(desc, payloads))
    assert e.value.field == field
    assert e.value.code == "bad_message"


def test_garbage_header_and_limits():
    with pytest.raises(BadMessage, match="not valid msgpack"):
        decode([b"\xc1\xff\x00"])
    with pytest.raises(BadMessage, match="must be a map"):
        decode([msgpack.packb([1, 2])])
    with pytest.raises(BadMessage, match="empty message"):
        decode([])
    with pytest.raises(TooLarge, match="limit is 100"):
        decode([msgpack.packb({}), b"\0" * 200], max_bytes=100)
