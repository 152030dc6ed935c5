"""Structure-aware fuzzing of the server's validation boundary (bench/fuzz_protocol.py and its CI test).

Unlike fuzz_frames (random bytes and headers), every message starts as a valid request of one type (a
submit with a real asset, a ping with an array, ...) and one named mutation class breaks one part of it:
an array descriptor's dtype or shape, a field's type, nesting or length, the asset's cameras, the config
tree, the frame list, or the size of one frame. `case(rng, rid, limit)` returns the class name, the
frames and the request id the reply must carry.
"""

from __future__ import annotations

import math
import random

import msgpack
import numpy as np

from likeness3d.protocol import PROTOCOL_VERSION
from likeness3d.protocol import messages as M
from likeness3d.protocol.assets import Asset, Camera, Mesh, Reference


def small_asset(n_refs: int) -> Asset:
    """A tetrahedron with UVs and a 4x4 texture, and `n_refs` 8 px references looking at it."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    uv = np.full((4, 3, 2), 0.5, np.float32)
    refs = []
    for i in range(n_refs):
        K = np.array([[8.0, 0, 3.5], [0, 8.0, 3.5], [0, 0, 1]])
        w2c = np.array([[1, 0, 0, -0.3], [0, 0, -1, 0.3], [0, 1, 0, 3.0 + i], [0, 0, 0, 1]], np.float64)
        refs.append(Reference(f"ref{i}", np.full((8, 8, 4), 200, np.uint8), Camera(K, w2c, 8, 8)))
    return Asset(Mesh(v, f, uv, np.full((4, 4, 4), 200, np.uint8)), tuple(refs), class_word="thing")


def deep(levels: int, leaf=1, as_map: bool = False):
    value = leaf
    for _ in range(levels):
        value = {"k": value} if as_map else [value]
    return value


NASTY = [
    None, True, False, 0, -1, 2**63 - 1, 2**63, 2**64 - 1, -(2**63), 1.5, math.nan, math.inf, -math.inf,
    "", "x" * 5000, "é" * 3000, b"\x00\xff" * 10, [], {}, [None] * 100, {"a": {"b": [1, {"c": None}]}},
    deep(33), deep(1000), deep(1000, as_map=True), {"k" * 5000: 1}, list(range(5000)), [[1.5, "a"], {"b": b"c"}],
]
DTYPES = [["<f4"], {"<f4": 1}, 4, None, "", "|O", ">f4", "<c8", "<f4" * 100, "<U4", "V8", b"<f4", 1.5, [["<f4"]]]
SHAPES = [
    [2**32, 2**32], [2**62 + 1, 4], [2**63, 0], [2**64 - 1], [-1], [True], [1.5], [[1]], ["3"], [None],
    [1] * 9, [2**31] * 7 + [0], [0, 2**32 + 1], [2**32], {}, "3", None, [3, -0], [2**16, 2**16, 2**16],
]
TYPES = ["hello", "submit", "cancel", "status", "list", "fetch", "attach", "release", "ping"]
JOB = "20990101-000000-deadbeef"


def _template(kind: str, rng: random.Random) -> tuple[dict, list[tuple[str, str, list, bytes]]]:
    """A valid request: its header (no envelope) and its arrays as (name, dtype, shape, bytes)."""
    arrays: list[tuple[str, str, list, bytes]] = []
    if kind == "submit":
        msg = M.Submit(pipeline=rng.choice(["inspect", "selftest", "tire"]), asset=small_asset(rng.randrange(3)),
                       config=rng.choice([{}, {"overlay_points": 5}, {"steps": 3}]))
        frames = msg.to_frames(0)
        header = msgpack.unpackb(frames[0])
        for d in header.pop("arrays"):
            arrays.append((d["name"], d["dtype"], d["shape"], bytes(frames[d["frame"]])))
        header = {k: v for k, v in header.items() if k not in ("v", "type", "id")}
        return header, arrays
    header = {
        "hello": {"client": "fuzz"}, "cancel": {"job": JOB}, "status": rng.choice([{}, {"job": JOB}]), "list": {},
        "fetch": {"job": JOB, "name": "mesh.glb"}, "attach": {"job": JOB}, "release": {}, "ping": {},
    }[kind]
    if kind == "ping" and rng.random() < 0.7:
        a = np.arange(rng.randrange(1, 64), dtype=np.float32)
        arrays.append(("data", "<f4", [a.size], a.tobytes()))
    return dict(header), arrays


def _frames(kind: str, header: dict, arrays: list, rid, envelope: dict | None = None) -> list:
    h = {"v": PROTOCOL_VERSION, "type": kind, "id": rid, **header, **(envelope or {})}
    if arrays:
        h["arrays"] = [{"name": n, "dtype": d, "shape": s, "frame": i + 1} for i, (n, d, s, _) in enumerate(arrays)]
    return [msgpack.packb(h, use_bin_type=True), *(b for *_, b in arrays)]


def _with_arrays(kind_choices: list[str], rng: random.Random) -> tuple[str, dict, list]:
    kind = rng.choice(kind_choices)
    header, arrays = _template(kind, rng)
    if not arrays:
        kind, (header, arrays) = "ping", ({}, [("data", "<f4", [4], bytes(16))])
    return kind, header, arrays


def _mutate_descriptor(rng, rid, key, values):
    kind, header, arrays = _with_arrays(["submit", "ping"], rng)
    i = rng.randrange(len(arrays))
    name, dtype, shape, data = arrays[i]
    value = rng.choice(values) if isinstance(values, list) else values
    arrays[i] = (name, value, shape, data) if key == "dtype" else (name, dtype, value, data)
    if key == "shape" and isinstance(value, list) and all(isinstance(s, int) for s in value):
        # a frame as long as an int64 product of the lying shape would say (the old overflow)
        n = int(np.prod(np.array(value, dtype=np.uint64).astype(np.int64), dtype=np.int64)) if all(0 <= s < 2**63 for s in value) else 0
        arrays[i] = (name, dtype, value, bytes(max(0, min(n * 4, 64))))
    return _frames(kind, header, arrays, rid)


def _field_value(rng, rid, values=None):
    kind = rng.choice(TYPES)
    header, arrays = _template(kind, rng)
    fields = [k for k in header] or ["job", "name", "client", "config", "pipeline"]
    header[rng.choice(fields + ["job", "client"])] = rng.choice(values or NASTY)
    return _frames(kind, header, arrays, rid)


def _asset_meta(rng, rid):
    header, arrays = _template("submit", rng)
    meta = header["asset"]
    target = rng.randrange(6)
    if target == 0 or not meta["references"]:
        meta[rng.choice(["name", "class_word", "references", "zzz"])] = rng.choice(NASTY)
    else:
        ref = rng.choice(meta["references"])
        key = rng.choice(["K", "w2c", "width", "height", "name", "extra"])
        if key in ("K", "w2c") and rng.random() < 0.6:
            vals = list(ref[key])
            vals[rng.randrange(len(vals))] = rng.choice([math.nan, math.inf, "x", None, [1.0], True, 2**64 - 1, 1e308 * 10])
            ref[key] = vals if rng.random() < 0.8 else vals[:-1]
        elif key in ("K",) and rng.random() < 0.5:
            ref["K"] = [1.0, 0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]  # skew
        else:
            ref[key] = rng.choice(NASTY + [0, 2**40, 65537, "16", 16.5])
    return _frames("submit", header, arrays, rid)


def _config(rng, rid):
    header, arrays = _template("submit", rng)
    choice = rng.randrange(6)
    if choice == 0:
        header["config"] = {"fit": deep(rng.choice([33, 200, 999]), as_map=rng.random() < 0.5)}
    elif choice == 1:
        header["config"] = {"k" * rng.choice([300, 5000, 100_000]): 1}
    elif choice == 2:
        header["config"] = {rng.choice(["overlay_points", "steps", "fit", "zzz", "preset"]): rng.choice(NASTY)}
    elif choice == 3:
        header["config"] = {"fit": {"steps": rng.choice(NASTY)}, "a.b": 1}
    elif choice == 4:
        header["config"] = rng.choice(NASTY)
    else:
        header["config"] = {"fit_steps": 3, "fit": {"steps": 4}}  # an old name beside its new one
    return _frames("submit", header, arrays, rid)


def _frame_list(rng, rid):
    kind, header, arrays = _with_arrays(["submit", "ping"], rng)
    frames = _frames(kind, header, arrays, rid)
    i = rng.randrange(1, len(frames))
    action = rng.randrange(4)
    if action == 0:
        frames[i] = frames[i][: rng.randrange(max(1, len(frames[i])))]
    elif action == 1:
        frames[i] = frames[i] + b"\x00" * rng.randrange(1, 9)
    elif action == 2:
        del frames[i]
    else:
        frames.append(b"x" * rng.randrange(0, 9))
    return frames


def _descriptor_map(rng, rid):
    kind, header, arrays = _with_arrays(["submit", "ping"], rng)
    frames = _frames(kind, header, arrays, rid)
    h = msgpack.unpackb(frames[0])
    d = h["arrays"][rng.randrange(len(h["arrays"]))]
    action = rng.randrange(6)
    if action == 0:
        d.pop(rng.choice(list(d)))
    elif action == 1:
        d["extra"] = 1
    elif action == 2:
        d["frame"] = rng.choice([0, len(frames), -1, True, "1", 2**64 - 1, None])
    elif action == 3:
        d["name"] = rng.choice(["", None, 3, "n" * 5000, h["arrays"][0]["name"], deep(40)])
    elif action == 4:
        h["arrays"] = rng.choice([{}, "x", None, [None], [[1]], deep(50)])
    else:
        h["arrays"].append(dict(d))
    frames[0] = msgpack.packb(h, use_bin_type=True)
    return frames


def _envelope(rng, rid):
    kind = rng.choice(TYPES)
    header, arrays = _template(kind, rng)
    key = rng.choice(["v", "type", "id"])
    return _frames(kind, header, arrays, rid, {key: rng.choice(NASTY + [PROTOCOL_VERSION + 1, "submit2", "welcome", "pong"])})


def _oversize(rng, rid, limit):
    size = rng.choice([limit + 1, limit + 1000, int(limit * 1.5), 2 * limit])
    h = {"v": PROTOCOL_VERSION, "type": "ping", "id": rid, "arrays": [{"name": "data", "dtype": "|u1", "shape": [size], "frame": 1}]}
    return [msgpack.packb(h), bytes(size)]


def _valid(rng, rid):
    kind = rng.choice(["hello", "status", "list", "ping", "cancel", "fetch", "attach"])
    header, arrays = _template(kind, rng)
    return _frames(kind, header, arrays, rid)


# every class of the hardening list by name, then the general ones; weights per class
CLASSES = {
    "dtype_list": (2, lambda rng, rid, lim: _mutate_descriptor(rng, rid, "dtype", [["<f4"], [["<f4"]], ["|u1", "<i4"]])),
    "dtype_map": (2, lambda rng, rid, lim: _mutate_descriptor(rng, rid, "dtype", [{"<f4": 1}, {}, {"a": [1]}])),
    "shape_2^32x2^32": (2, lambda rng, rid, lim: _mutate_descriptor(rng, rid, "shape", [2**32, 2**32])),
    "shape_2^62+1x4": (2, lambda rng, rid, lim: _mutate_descriptor(rng, rid, "shape", [2**62 + 1, 4])),
    "shape_2^63x0": (2, lambda rng, rid, lim: _mutate_descriptor(rng, rid, "shape", [2**63, 0])),
    "deep_1000_in_a_string_field": (2, lambda rng, rid, lim: _field_value(rng, rid, [deep(1000, "s"), deep(1000, "s", True)])),
    "field_name_over_4096": (2, lambda rng, rid, lim: _long_field(rng, rid)),
    "oversize_single_frame": (1, lambda rng, rid, lim: _oversize(rng, rid, lim)),
    "dtype_other": (3, lambda rng, rid, lim: _mutate_descriptor(rng, rid, "dtype", DTYPES)),
    "shape_other": (4, lambda rng, rid, lim: _mutate_descriptor(rng, rid, "shape", SHAPES)),
    "field_value": (12, lambda rng, rid, lim: _field_value(rng, rid)),
    "asset_meta": (12, lambda rng, rid, lim: _asset_meta(rng, rid)),
    "config": (10, lambda rng, rid, lim: _config(rng, rid)),
    "frame_list": (6, lambda rng, rid, lim: _frame_list(rng, rid)),
    "descriptor_map": (6, lambda rng, rid, lim: _descriptor_map(rng, rid)),
    "envelope": (6, lambda rng, rid, lim: _envelope(rng, rid)),
    "valid": (4, lambda rng, rid, lim: _valid(rng, rid)),
}


def _long_field(rng, rid):
    """An error whose field would be over 4096 characters: an unknown field, or config key, that long."""
    n = rng.choice([4097, 5000, 20_000])
    if rng.random() < 0.5:
        return _frames("hello", {"client": "fuzz", "f" * n: 1}, [], rid)
    header, arrays = _template("submit", rng)
    header["config"] = {"k" * n: 1}
    return _frames("submit", header, arrays, rid)


def case(rng: random.Random, rid: int, limit: int, name: str | None = None) -> tuple[str, list, int]:
    """One fuzz message: (class name, frames, the request id its reply must carry)."""
    if name is None:
        names = list(CLASSES)
        name = rng.choices(names, weights=[CLASSES[n][0] for n in names])[0]
    frames = CLASSES[name][1](rng, rid, limit)
    try:
        header = msgpack.unpackb(frames[0], strict_map_key=False)
        got = header.get("id") if isinstance(header, dict) else None
    except Exception:  # noqa: BLE001 - a header this fuzzer made unreadable
        got = None
    want = got if isinstance(got, int) and not isinstance(got, bool) and 0 <= got < 2**63 else 0
    return name, frames, want


def drive(sock, n: int, seed: int, limit: int, batch: int = 200, reply_timeout_s: float = 60.0, on_batch=None) -> dict:
    """Send `n` cases over a connected DEALER in batches; check that each gets one reply carrying its request
    id, readable by our own parser (replies are matched by id: a valid submit is answered once its inputs are
    stored, so later requests' replies may overtake it). Job events (of a submit that happened to be valid) are
    counted aside. `on_batch(stats)` runs after every batch (the benchmark samples the server's memory)."""
    from likeness3d.protocol.errors import ProtocolError

    rng = random.Random(seed)
    stats: dict = {"sent": 0, "answered": 0, "classes": {}, "codes": {}, "internal": [], "unreadable": [],
                   "wrong_id": [], "accepted": 0, "events": 0, "unanswered": 0}
    rid = 0
    while stats["sent"] < n:
        expected = []
        for _ in range(min(batch, n - stats["sent"])):
            rid += 1
            first = list(CLASSES)[stats["sent"]] if stats["sent"] < len(CLASSES) else None  # each class at least once
            name, frames, want = case(rng, rid, limit, first)
            sock.send_multipart(frames, copy=False)
            expected.append((name, want))
            stats["sent"] += 1
            stats["classes"][name] = stats["classes"].get(name, 0) + 1
        while expected:
            if not sock.poll(int(reply_timeout_s * 1000)):
                stats["unanswered"] = len(expected)
                return stats
            frames = sock.recv_multipart()
            try:
                reply_id, reply = M.parse(frames, 1 << 40)
            except ProtocolError as exc:
                name, _ = expected.pop(0)
                stats["answered"] += name != "cancel_accepted"
                stats["unreadable"].append((name, exc.message[:200]))
                continue
            if isinstance(reply, (M.Progress, M.Result)) or getattr(reply, "seq", None) is not None:
                stats["events"] += 1
                continue
            at = next((i for i, (_, w) in enumerate(expected) if w == reply_id), 0)
            name, want = expected.pop(at)
            stats["answered"] += name != "cancel_accepted"
            code = reply.code if isinstance(reply, M.Error) else reply.TYPE
            stats["codes"].setdefault(name, {})
            stats["codes"][name][code] = stats["codes"][name].get(code, 0) + 1
            if reply_id != want:
                stats["wrong_id"].append((name, want, reply_id))
            if code == "internal":
                stats["internal"].append((name, reply.message[:300]))
            if isinstance(reply, M.Accepted):
                stats["accepted"] += 1
                rid += 1  # cancel it: an accidentally valid job should not occupy the worker
                sock.send_multipart(M.Cancel(job=reply.job).to_frames(rid))
                expected.append(("cancel_accepted", rid))  # its reply is checked, not counted as a fuzz answer
        if on_batch is not None:
            on_batch(stats)
    return stats
