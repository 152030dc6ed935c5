"""Framing: header + zero-copy array frames, and every way a frame list can lie."""

import msgpack
import numpy as np
import pytest

from compare import assert_same
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
    assert_same(header, {"v": 1, "type": "x"})
    assert_same(out, arrays)  # the same names, each with its dtype, shape and values
    # the receiver wraps the frame: no copy
    assert np.shares_memory(out["a1"], np.frombuffer(frames[2], np.uint8))


def test_non_contiguous_empty_and_big_endian_arrays():
    a = np.arange(20, dtype=np.float32).reshape(4, 5)[:, ::2]
    big = np.arange(6, dtype=">i4").reshape(2, 3)
    header, out = decode(encode({"k": [1, "x"]}, {"a": a, "e": np.zeros((0, 3), np.float32), "b": big}))
    assert_same(header, {"k": [1, "x"]})
    # a strided view arrives as its values; a big-endian array as the same values, little-endian
    assert_same(out, {"a": a.copy(), "e": np.zeros((0, 3), np.float32), "b": big.astype("<i4")})


def _frames(desc, payloads):
    return [msgpack.packb({"v": 1, "type": "ping", "id": 1, "arrays": desc}), *payloads]


@pytest.mark.parametrize(
    "desc,payloads,field,match",
    [
        ([{"name": "a", "dtype": "<f4", "shape": [10], "frame": 1}], [b"\0" * 39], "a",
         r"dtype <f4 x shape \(10,\) is 40 bytes but its frame has 39"),  # lying shape
        ([{"name": "a", "dtype": "|O", "shape": [1], "frame": 1}], [b"\0" * 8], "a", "dtype '|O' is not one of"),
        ([{"name": "a", "dtype": "<f4", "shape": [-1], "frame": 1}], [b"\0" * 4], "a",
         r"shape must be a list of at most 8 ints in \[0, 4294967296\], got \[-1\]"),
        ([{"name": "a", "dtype": "<f4", "shape": [1], "frame": 5}], [b"\0" * 4], "a",
         "frame index 5 is out of range"),
        ([{"name": "a", "dtype": "<f4", "shape": [1]}], [b"\0" * 4], "arrays[0]",
         r"arrays\[0\] must be a map with name, dtype, shape, frame"),  # missing key
        ([{"name": "a", "dtype": "<f4", "shape": [1], "frame": 1}], [], "arrays",
         "header describes 1 arrays but the message has 0 buffer frames"),
        ("nope", [b""], "arrays", "'arrays' must be a list, got str"),
    ],
)
def test_lying_descriptors_name_the_field(desc, payloads, field, match):
    with pytest.raises(BadMessage, match=match) as e:
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
