"""Framing: a message is `[header, *buffers]`, a msgpack map plus one raw frame per array.

Arrays are described in the header's `arrays` list (name, dtype, shape, frame index) and travel without
copies: the sender passes the array's memory to zmq, the receiver wraps the frame with `np.frombuffer`.
Every check that can fail names the field and the value.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import msgpack
import numpy as np

from .errors import BadMessage, TooLarge

DEFAULT_MAX_MESSAGE_BYTES = 1 << 30
"""1 GiB: a 1M-triangle textured mesh with 4K references is a few hundred MB."""

# Little-endian only, fixed width, no objects: what numpy can wrap from a buffer safely.
ALLOWED_DTYPES = frozenset(
    np.dtype(t).str for t in ("u1", "i1", "<u2", "<i2", "<u4", "<i4", "<i8", "<u8", "<f2", "<f4", "<f8", "?")
)
MAX_NDIM = 8
MAX_HEADER_BYTES = 16 << 20


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
    """Frame list -> (header, arrays). Arrays are read-only views of the received frames."""
    if not frames:
        raise BadMessage("empty message: expected [header, *buffers]", field="frames")
    total = sum(frame_len(f) for f in frames)
    if total > max_bytes:
        raise TooLarge(f"message is {total} bytes; the limit is {max_bytes}", field="frames")
    head = _buffer(frames[0])
    if head.nbytes > MAX_HEADER_BYTES:
        raise TooLarge(f"header is {head.nbytes} bytes; the limit is {MAX_HEADER_BYTES}", field="header")
    try:
        header = msgpack.unpackb(head, raw=False, strict_map_key=True, max_bin_len=MAX_HEADER_BYTES)
    except Exception as exc:  # msgpack raises several unrelated types for malformed input
        raise BadMessage(f"header is not valid msgpack: {type(exc).__name__}: {exc}", field="header") from None
    if not isinstance(header, dict):
        raise BadMessage(f"header must be a map, got {type(header).__name__}", field="header")
    arrays = _decode_arrays(header.pop("arrays", None), frames)
    return header, arrays


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
            raise BadMessage(f"{where} must be a map with name, dtype, shape, frame; got {d!r:.200}", field=where)
        name, dtype, shape, index = d["name"], d["dtype"], d["shape"], d["frame"]
        if not isinstance(name, str) or not name or name in arrays:
            raise BadMessage(f"{where}.name must be a new non-empty string, got {name!r:.100}", field=where)
        if dtype not in ALLOWED_DTYPES:
            raise BadMessage(f"array {name!r}: dtype {dtype!r:.50} is not one of {sorted(ALLOWED_DTYPES)}", field=name)
        if (
            not isinstance(shape, list)
            or len(shape) > MAX_NDIM
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
        ):
            raise BadMessage(f"array {name!r}: shape must be a list of <= {MAX_NDIM} non-negative ints, got {shape!r:.100}", field=name)
        if not isinstance(index, int) or isinstance(index, bool) or not 1 <= index < len(frames) or index in used:
            raise BadMessage(f"array {name!r}: frame index {index!r:.50} is out of range or reused", field=name)
        used.add(index)
        buf = _buffer(frames[index])
        want = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if buf.nbytes != want:
            raise BadMessage(
                f"array {name!r}: dtype {dtype} x shape {tuple(shape)} is {want} bytes but its frame has {buf.nbytes}",
                field=name,
            )
        arrays[name] = np.frombuffer(buf, dtype=np.dtype(dtype)).reshape(shape) if want else np.zeros(shape, dtype)
    return arrays
