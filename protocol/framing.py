"""Framing: a message is `[header, *buffers]`, a msgpack map plus one raw frame per array.

Arrays are described in the header's `arrays` list (name, dtype, shape, frame index) and travel without
copies: the sender passes the array's memory to zmq, the receiver wraps the frame with `np.frombuffer`.
Every check that can fail names the field and the value.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import msgpack
import numpy as np

from .errors import BadMessage, TooLarge, brief

DEFAULT_MAX_MESSAGE_BYTES = 1 << 30
"""1 GiB: a 1M-triangle textured mesh with 4K references is a few hundred MB."""

# Little-endian only, fixed width, no objects: what numpy can wrap from a buffer safely.
ALLOWED_DTYPES = frozenset(
    np.dtype(t).str for t in ("u1", "i1", "<u2", "<i2", "<u4", "<i4", "<i8", "<u8", "<f2", "<f4", "<f8", "?")
)
MAX_NDIM = 8
MAX_DIM = 1 << 40
"""The largest extent of one array axis (far above any mesh or image); bounds the arithmetic on shapes."""
MAX_HEADER_BYTES = 16 << 20
MAX_DEPTH = 32
"""How deeply header values may nest (a config tree is a few levels); deeper is refused before any check
that walks a value."""


def receive_limit(max_bytes: int) -> int:
    """The per-frame limit the server sets on its socket (libzmq's ZMQ_MAXMSGSIZE) for a message limit of
    `max_bytes`. libzmq drops the connection of a peer that sends a larger frame, without a word, so the
    socket reads frames up to the limit plus as much again (at least 1 GiB more) and `decode` answers
    `too_large` naming the limit; only a frame beyond that is cut off by libzmq. Our client never sends
    either: it learns the limit from `hello`."""
    return int(max_bytes) + max(int(max_bytes), 1 << 30)


def limit_text(max_bytes: int) -> str:
    """The limit as an operator sets it (`--max-message-mb`) and in bytes."""
    return f"{max_bytes} bytes (--max-message-mb {max_bytes / (1 << 20):g})"


def frame_len(frame: Any) -> int:
    """Byte length of a frame given as bytes, memoryview, numpy array or zmq.Frame."""
    if isinstance(frame, (bytes, bytearray)):
        return len(frame)
    if isinstance(frame, memoryview):
        return frame.nbytes
    if isinstance(frame, np.ndarray):
        return frame.nbytes
    buf = getattr(frame, "buffer", None)  # zmq.Frame
    if buf is not None:
        return memoryview(buf).nbytes
    return len(frame)


def _buffer(frame: Any) -> memoryview:
    if isinstance(frame, memoryview):
        return frame
    buf = getattr(frame, "buffer", None)  # zmq.Frame received with copy=False
    if buf is not None:
        return memoryview(buf)
    return memoryview(frame)


def encode(header: Mapping[str, Any], arrays: Mapping[str, np.ndarray] | None = None) -> list:
    """Header map and named arrays -> frame list. Arrays are sent from their own memory (no copy)
    when C-contiguous; others are made contiguous once."""
    header = dict(header)
    frames: list = [b""]
    descriptors = []
    for name, arr in (arrays or {}).items():
        arr = np.asarray(arr)
        if arr.dtype.str not in ALLOWED_DTYPES:
            if arr.dtype.byteorder == ">":
                arr = arr.astype(arr.dtype.newbyteorder("<"))
            else:
                raise BadMessage(f"array {name!r} has dtype {arr.dtype}, which the protocol does not carry", field=name)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        descriptors.append({"name": name, "dtype": arr.dtype.str, "shape": list(arr.shape), "frame": len(frames)})
        # reshape(-1) of a contiguous array is a view; memoryview of it hands zmq the array's own memory
        frames.append(memoryview(arr.reshape(-1).view(np.uint8)) if arr.size else b"")
    if descriptors:
        header["arrays"] = descriptors
    frames[0] = msgpack.packb(header, use_bin_type=True)
    return frames


def decode(frames: Sequence[Any], max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> tuple[dict, dict[str, np.ndarray]]:
    """Frame list -> (header, arrays). Arrays are read-only views of the received frames.

    Every error raised once the header is read carries the header's request id as `request_id`, so the
    reply answers the right request.
    """
    if not frames:
        raise BadMessage("empty message: expected [header, *buffers]", field="frames")
    sizes = [frame_len(f) for f in frames]
    total = sum(sizes)
    head = _buffer(frames[0])
    if total > max_bytes:
        exc = TooLarge(
            f"message is {total} bytes (its largest frame {max(sizes)}); the limit is {limit_text(max_bytes)}: send smaller images or a smaller mesh, or start the backend with a "
            "larger --max-message-mb",
            field="frames",
        )
        exc.request_id = _peek_id(head)
        raise exc
    if head.nbytes > MAX_HEADER_BYTES:
        raise TooLarge(f"header is {head.nbytes} bytes; the limit is {MAX_HEADER_BYTES}", field="header")
    header = _unpack(head)
    try:
        _check_depth(header)
        arrays = _decode_arrays(header.pop("arrays", None), frames)
    except BadMessage as exc:
        exc.request_id = request_id_of(header)
        raise
    return header, arrays


def _unpack(head: memoryview) -> dict:
    try:
        header = msgpack.unpackb(head, raw=False, strict_map_key=True, max_bin_len=MAX_HEADER_BYTES)
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise BadMessage(f"header is not valid msgpack: {type(exc).__name__}: {brief(str(exc), 200)}", field="header") from None
    if not isinstance(header, dict):
        raise BadMessage(f"header must be a map, got {type(header).__name__}", field="header")
    return header


def request_id_of(header: dict) -> int:
    """The header's request id when it is a valid one, else 0."""
    rid = header.get("id", 0)
    return rid if isinstance(rid, int) and not isinstance(rid, bool) and 0 <= rid < 2**63 else 0


def _peek_id(head: memoryview) -> int:
    """The request id of a message refused for its size, read from its header when that is small."""
    if head.nbytes > 1 << 20:
        return 0
    try:
        return request_id_of(_unpack(head))
    except BadMessage:
        return 0


def _check_depth(header: dict) -> None:
    """Refuse values nested deeper than MAX_DEPTH, naming the top-level field (walked without recursion;
    map keys are strings or bytes, msgpack's strict_map_key)."""
    containers = (list, dict)
    for key, value in header.items():
        stack = [(value, 1)] if isinstance(value, containers) else []
        while stack:
            v, depth = stack.pop()
            if depth > MAX_DEPTH:
                name = key if isinstance(key, str) else brief(key, 60)
                raise BadMessage(
                    f"field {brief(name, 60)} nests lists or maps more than {MAX_DEPTH} levels deep; "
                    "send plain values (a config tree is a few levels)",
                    field=name[:200],
                )
            children = v.values() if isinstance(v, dict) else v
            stack.extend((c, depth + 1) for c in children if isinstance(c, containers))


def _decode_arrays(descriptors: Any, frames: Sequence[Any]) -> dict[str, np.ndarray]:
    if descriptors is None:
        if len(frames) > 1:
            raise BadMessage(f"message has {len(frames) - 1} buffer frames but the header describes none", field="arrays")
        return {}
    if not isinstance(descriptors, list):
        raise BadMessage(f"'arrays' must be a list, got {type(descriptors).__name__}", field="arrays")
    if len(descriptors) != len(frames) - 1:
        raise BadMessage(
            f"header describes {len(descriptors)} arrays but the message has {len(frames) - 1} buffer frames",
            field="arrays",
        )
    arrays: dict[str, np.ndarray] = {}
    used: set[int] = set()
    for i, d in enumerate(descriptors):
        where = f"arrays[{i}]"
        if not isinstance(d, dict) or set(d) != {"name", "dtype", "shape", "frame"}:
            raise BadMessage(f"{where} must be a map with name, dtype, shape, frame; got {brief(d, 200)}", field=where)
        name, dtype, shape, index = d["name"], d["dtype"], d["shape"], d["frame"]
        if not isinstance(name, str) or not name or len(name) > 256 or name in arrays:
            raise BadMessage(f"{where}.name must be a new non-empty string of at most 256 characters, got {brief(name, 100)}", field=where)
        if not isinstance(dtype, str) or dtype not in ALLOWED_DTYPES:
            raise BadMessage(f"array {name!r}: dtype {brief(dtype, 50)} is not one of {sorted(ALLOWED_DTYPES)}", field=name)
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_DIM for s in shape)
        ):
            raise BadMessage(
                f"array {name!r}: shape must be a list of at most {MAX_NDIM} ints in [0, {MAX_DIM}], got {brief(shape, 100)}",
                field=name,
            )
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index < len(frames) or index in used:
            raise BadMessage(f"array {name!r}: frame index {brief(index, 50)} is out of range or reused", field=name)
        used.add(index)
        buf = _buffer(frames[index])
        itemsize = np.dtype(dtype).itemsize
        want = math.prod(shape) * itemsize  # Python ints: no int64 overflow whatever the shape
        if buf.nbytes != want or math.prod(max(s, 1) for s in shape) * itemsize > 1 << 48:
            raise BadMessage(
                f"array {name!r}: dtype {dtype} x shape {tuple(shape)} is {want} bytes but its frame has {buf.nbytes}",
                field=name,
            )
        arrays[name] = np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape) if want else np.zeros(shape, dtype)
    return arrays
