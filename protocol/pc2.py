"""PC2 point caches (Blender's Mesh Cache modifier format): read and write, pure numpy.

Layout: a 32-byte little-endian header `<12siiffi` = (b"POINTCACHE2\\0", version 1, vertex count, start frame,
sampling, frame count), then float32 x y z per vertex per frame, frame after frame.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InvalidAsset

HEADER = struct.Struct("<12siiffi")
MAGIC = b"POINTCACHE2\0"


@dataclass(frozen=True)
class PointCache:
    """Per-frame vertex positions and where they sit on the timeline."""

    positions: np.ndarray
    """[T, V, 3] float32."""
    start: float
    """Frame number of the first cached frame."""
    sampling: float
    """Frames between two cached frames."""


def pc2_bytes(positions: np.ndarray, start: float, sampling: float = 1.0) -> bytes:
    """[T, V, 3] positions -> the bytes of a PC2 file."""
    pos = np.ascontiguousarray(positions, dtype="<f4")
    if pos.ndim != 3 or pos.shape[2] != 3 or pos.shape[0] < 1:
        raise ValueError(f"PC2 positions must be [T >= 1, V, 3], got {list(pos.shape)}")
    head = HEADER.pack(MAGIC, 1, pos.shape[1], float(start), float(sampling), pos.shape[0])
    return head + pos.tobytes()


def write_pc2(path: str | os.PathLike, positions: np.ndarray, start: float, sampling: float = 1.0) -> Path:
    """Write [T, V, 3] positions as a PC2 file (written whole, then renamed into place)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(pc2_bytes(positions, start, sampling))
    os.replace(tmp, path)
    return path


def read_pc2(path: str | os.PathLike, *, mmap: bool = False) -> PointCache:
    """A PC2 file -> PointCache; a malformed file is an InvalidAsset naming the file and what is wrong."""
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(HEADER.size)
    except OSError as e:
        raise InvalidAsset(f"cannot read the point cache {name}: {e.strerror or e}", field="cache") from None
    if len(head) < HEADER.size:
        raise InvalidAsset(f"{name} is {size} bytes, shorter than a PC2 header (32 bytes)", field="cache")
    magic, version, n_verts, start, sampling, n_frames = HEADER.unpack(head)
    if magic != MAGIC:
        raise InvalidAsset(f"{name} does not start with POINTCACHE2 (got {magic!r}); is it a PC2 file?", field="cache")
    if version != 1 or n_verts < 1 or n_frames < 1:
        raise InvalidAsset(f"{name}: PC2 header has version {version}, {n_verts} vertices, {n_frames} frames; "
                           f"expected version 1 and at least one vertex and frame", field="cache")
    want = HEADER.size + n_frames * n_verts * 12
    if size != want:
        raise InvalidAsset(f"{name} is {size} bytes but its header ({n_frames} frames x {n_verts} vertices) needs "
                           f"{want}", field="cache")
    if mmap:
        data = np.memmap(path, dtype="<f4", mode="r", offset=HEADER.size, shape=(n_frames, n_verts, 3))
    else:
        data = np.fromfile(path, dtype="<f4", offset=HEADER.size).reshape(n_frames, n_verts, 3)
        if not np.isfinite(data).all():
            t = int(np.argwhere(~np.isfinite(data))[0][0])
            raise InvalidAsset(f"{name} holds a non-finite position at cached frame {t}", field="cache")
        data = data.astype(np.float32, copy=False)
    return PointCache(data, float(start), float(sampling))
