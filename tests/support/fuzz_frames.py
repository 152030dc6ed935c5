"""Malformed multipart messages for fuzzing the server (used by the test and by bench/fuzz_server.py)."""

from __future__ import annotations

import random

import msgpack

from likeness3d.protocol import PROTOCOL_VERSION
from likeness3d.protocol import messages as M

TYPES = sorted(M.MESSAGES) + ["", "nope", "submit", "submit"]
VALUES = [None, True, -1, 0, 2**70 // 2**8, 1.5, float("nan"), "", "x" * 5000, b"\x00\xff", [], {}, [1, "a"], {"k": [None]}]


def _value(rng: random.Random):
    return rng.choice(VALUES)


def _header(rng: random.Random) -> dict:
    h = {"v": PROTOCOL_VERSION, "type": rng.choice(TYPES), "id": rng.randrange(1 << 30)}
    for _ in range(rng.randrange(4)):
        h[rng.choice(["job", "name", "pipeline", "config", "asset", "data", "seq", "zzz", "arrays", "field"])] = _value(rng)
    for key in rng.sample(["v", "type", "id"], rng.randrange(3) if rng.random() < 0.3 else 0):
        h[key] = _value(rng)
    return h


def _lying_arrays(rng: random.Random) -> list:
    n = rng.randrange(1, 4)
    desc, frames = [], []
    for i in range(n):
        shape = [rng.randrange(0, 5) for _ in range(rng.randrange(0, 3))]
        dtype = rng.choice(["<f4", "|u1", "<i4", "|O", ">f8", "<f4"])
        desc.append({"name": rng.choice(["mesh.vertices", "mesh.faces", "data", "preview", f"a{i}"]), "dtype": dtype,
                     "shape": shape, "frame": rng.choice([i + 1, i + 1, 0, 9])})
        frames.append(bytes(rng.randrange(0, 40)))
    h = _header(rng)
    h["arrays"] = desc
    return [msgpack.packb(h)] + frames


def _submit_with_bad_asset(rng: random.Random) -> list:
    meta = {"name": "a", "class_word": "c", "references": rng.choice([[], [{"name": "r"}], "x", [None]])}
    h = {"v": PROTOCOL_VERSION, "type": "submit", "id": 1, "pipeline": rng.choice(["inspect", "nope", 3]), "asset": meta,
         "config": rng.choice([{}, {"zzz": 1}, [], {"overlay_points": "x"}])}
    vcount = rng.randrange(0, 4)
    verts = bytes(12 * vcount)
    faces = bytes(12)
    h["arrays"] = [{"name": "mesh.vertices", "dtype": "<f4", "shape": [vcount, 3], "frame": 1},
                   {"name": "mesh.faces", "dtype": "<i4", "shape": [1, 3], "frame": 2}]
    if rng.random() < 0.5:
        faces = (7).to_bytes(4, "little") * 3  # index out of range
    return [msgpack.packb(h), verts, faces]


def malformed(rng: random.Random) -> list:
    """One malformed (or occasionally accidentally valid) message as a frame list."""
    kind = rng.randrange(7)
    if kind == 0:  # random frames
        return [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 4))]
    if kind == 1:  # truncated msgpack
        raw = msgpack.packb(_header(rng))
        return [raw[: rng.randrange(0, max(1, len(raw)))]]
    if kind == 2:  # wrong types / unknown fields
        return [msgpack.packb(_header(rng))]
    if kind == 3:  # lying array shapes and dtypes
        return _lying_arrays(rng)
    if kind == 4:  # a non-map header
        return [msgpack.packb(rng.choice([[1, 2], "str", 5, None, {1: 2}]))]
    if kind == 5:
        return _submit_with_bad_asset(rng)
    # extra frames nobody described
    return [msgpack.packb({"v": PROTOCOL_VERSION, "type": "ping", "id": 3})] + [b"x"] * rng.randrange(1, 3)
