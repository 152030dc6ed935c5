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
         r"shape must be a list of at most 8 ints in \[0, 1099511627776\], got \[-1\]"),
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


@pytest.mark.parametrize(
    "dtype,shape,payload,match",
    [
        (["<f4"], [1], 4, r"dtype \['<f4'\] is not one of"),  # unhashable: a TypeError before
        ({"<f4": 1}, [1], 4, r"dtype \{'<f4': 1\} is not one of"),
        ("|u1", [2**32, 2**32], 0, "is 18446744073709551616 bytes but its frame has 0"),  # int64 product: 0
        ("|u1", [2**62 + 1, 4], 4, r"shape must be a list of at most 8 ints"),  # int64 product: 4 bytes
        ("|u1", [2**63, 0], 0, r"shape must be a list of at most 8 ints"),  # past int64
        ("|u1", [2**40] * 7 + [0], 0, "is 0 bytes but its frame has 0"),  # empty, yet too vast for numpy
    ],
)
def test_dtypes_and_shapes_that_crashed_the_checks_name_the_array(dtype, shape, payload, match):
    with pytest.raises(BadMessage, match=match) as e:
        decode(_frames([{"name": "a", "dtype": dtype, "shape": shape, "frame": 1}], [b"\0" * payload]))
    assert e.value.field == "a" and e.value.request_id == 1


def test_deep_values_are_refused_without_recursion_and_errors_keep_the_request_id():
    deep = "x"
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(BadMessage, match="field 'client' nests lists or maps more than 32 levels deep") as e:
        decode([msgpack.packb({"v": 1, "type": "hello", "id": 7, "client": deep})])
    assert e.value.field == "client" and e.value.request_id == 7
    with pytest.raises(TooLarge, match=r"the limit is 100 bytes \(--max-message-mb 9.53674e-05\)") as e:
        decode([msgpack.packb({"id": 8}), b"\0" * 200], max_bytes=100)
    assert e.value.request_id == 8 and e.value.field == "frames"


def test_brief_bounds_any_value():
    from likeness3d.protocol.errors import brief

    deep = "x"
    for _ in range(5000):
        deep = {"k": [deep]}
    assert brief(deep, 80).startswith("{'k': [{'k': [{'k': [") and len(brief(deep, 80)) <= 80
    assert brief("y" * 10**6, 50) == "'" + "y" * 46 + "..." and brief([1, 2], 80) == "[1, 2]"
