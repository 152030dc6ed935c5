"""Animated inputs from files: a static mesh plus a PC2 point cache (`--cache`), the `--frames START:END:STEP`
selection, and the frame each transforms.json photo belongs to (`frame` index, `time` in seconds, or D-NeRF's
normalised `time` in [0, 1] of the clip). Every problem is `invalid_asset` naming the file, the frame and the fix."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...protocol.assets import Mesh, Reference
from ...protocol.errors import BadMessage, InvalidAsset
from ...protocol.pc2 import read_pc2

_RANGE = re.compile(r"^\s*(-?\d+)\s*:\s*(-?\d+)\s*(?::\s*(\d+)\s*)?$")


def parse_frames(spec: str | None) -> tuple[int, int, int] | None:
    """'START:END[:STEP]' (END included) -> (start, end, step); None passes through."""
    if spec is None:
        return None
    m = _RANGE.match(str(spec))
    if not m or int(m.group(3) or 1) < 1 or int(m.group(2)) < int(m.group(1)):
        raise BadMessage(f"--frames {spec!r}: expected START:END or START:END:STEP with END >= START and STEP >= 1 "
                         "(scene frame numbers, END included), e.g. 1:48:1", field="--frames")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 1)


def select_frames(mesh: Mesh, frames: tuple[int, int, int] | None, source: str) -> Mesh:
    """The mesh with only the frames START:END:STEP of its animation (they must all exist)."""
    if frames is None or mesh.frames is None:
        if frames is not None:
            raise BadMessage(f"--frames needs an animated mesh; {source} has no animation (give --cache or an animated "
                             "glTF)", field="--frames")
        return mesh
    start, end, step = frames
    numbers = [int(n) for n in mesh.frame_numbers]
    wanted = list(range(start, end + 1, step))
    missing = [n for n in wanted if n not in numbers]
    if missing:
        raise BadMessage(f"--frames {start}:{end}:{step} asks for frame {missing[0]}, which {source} does not have "
                         f"(its frames: {numbers[0]}..{numbers[-1]}, {len(numbers)} frames)", field="--frames")
    rows = [numbers.index(n) for n in wanted]
    return replace(mesh, frames=np.ascontiguousarray(mesh.frames[rows]), frame_numbers=np.array(wanted, np.int32))


def attach_cache(mesh: Mesh, path: str | Path) -> Mesh:
    """The static mesh animated by a PC2 file: its vertex count must be the mesh's, its frames whole numbers."""
    path = Path(path)
    cache = read_pc2(path)
    T, V = cache.positions.shape[:2]
    if V != len(mesh.vertices):
        raise InvalidAsset(f"point cache {path} holds {V} vertices per frame but the mesh has {len(mesh.vertices)}: "
                           "write the cache from the same mesh (same vertex order; a glTF export splits vertices at UV "
                           "seams, so export the cache from the mesh as read here, or use a PLY/OBJ mesh)", field="cache")
    if not (float(cache.start).is_integer() and float(cache.sampling).is_integer() and cache.sampling >= 1):
        raise InvalidAsset(f"point cache {path} starts at frame {cache.start} with sampling {cache.sampling}: Likeness3D "
                           "reads caches of whole scene frames (start a whole number, sampling 1, 2, ...)", field="cache")
    numbers = (int(cache.start) + int(cache.sampling) * np.arange(T)).astype(np.int32)
    return replace(mesh, frames=np.ascontiguousarray(cache.positions, np.float32), frame_numbers=numbers)


def timings(path: str | Path) -> tuple[list[tuple[str, float] | None], str | None]:
    """Per frame of a transforms.json (in order): ("frame", n), ("time", t) or None; and the file's time_unit."""
    path = Path(path)
    path = path / "transforms.json" if path.is_dir() else path
    meta = json.loads(path.read_text())
    out = []
    for i, fr in enumerate(meta.get("frames", [])):
        where = f"{path}: frames[{i}]"
        if "frame" in fr:
            v = fr["frame"]
            if not isinstance(v, int) or isinstance(v, bool):
                raise InvalidAsset(f"{where}.frame is {v!r:.40}; it must be a whole scene frame number", field=f"frames[{i}].frame")
            out.append(("frame", v))
        elif "time" in fr:
            v = fr["time"]
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
                raise InvalidAsset(f"{where}.time is {v!r:.40}; it must be a finite number (seconds, or D-NeRF's [0, 1])",
                                   field=f"frames[{i}].time")
            out.append(("time", float(v)))
        else:
            out.append(None)
    unit = meta.get("time_unit")
    if unit not in (None, "seconds", "normalized"):
        raise InvalidAsset(f"{path}: time_unit is {unit!r:.40}; use 'seconds' or 'normalized' (D-NeRF)", field="time_unit")
    return out, unit


def assign_frames(refs: list[Reference], path: str | Path, mesh: Mesh, flag: str) -> tuple[list[Reference], str | None]:
    """The references of `path` with the frame each belongs to; returns them and how `time` was read (or None)."""
    times, unit = timings(path)
    if all(t is None for t in times):
        return refs, None
    if mesh.frames is None:
        raise InvalidAsset(f"{flag} {path} gives frames or times but the mesh is static: give the animation (--cache, or "
                           "an animated glTF)", field="frames")
    numbers = np.asarray(mesh.frame_numbers, np.int64)
    first, last = int(numbers[0]), int(numbers[-1])
    values = [t[1] for t in times if t is not None and t[0] == "time"]
    fps = mesh.fps
    if unit is None and values:
        normalised = min(values) >= 0 and max(values) <= 1 and (fps is None or (last - first) / fps > 1.0)
        unit = "normalized" if normalised else "seconds"
    if unit == "seconds" and values and fps is None:
        raise InvalidAsset(f"{flag} {path} gives times in seconds but the animation has no frame rate: add \"time_unit\": "
                           "\"normalized\" for D-NeRF clip times, or give each photo its \"frame\"", field="frames")
    out = []
    for i, (ref, t) in enumerate(zip(refs, times)):
        if t is None:
            out.append(ref)
            continue
        kind, v = t
        if kind == "frame":
            frame = int(v)
        else:
            exact = first + (v * fps if unit == "seconds" else v * (last - first))
            frame = int(numbers[np.abs(numbers - exact).argmin()])
            step = float(np.diff(numbers).max()) if len(numbers) > 1 else 1.0
            if abs(frame - exact) > step / 2 + 1e-6:
                span = f"0..{(last - first) / fps:.4g} s" if unit == "seconds" else "0..1 (normalized)"
                raise InvalidAsset(f"{flag} {path}: frames[{i}].time is {v:g}, outside the animation ({span}, frames "
                                   f"{first}..{last}): give a time inside the clip", field=f"frames[{i}].time")
        if frame not in set(numbers.tolist()):
            raise InvalidAsset(f"{flag} {path}: frames[{i}].frame is {frame}, which is not one of the animation's frames "
                               f"({first}..{last}, {len(numbers)} frames): give a frame inside the range",
                               field=f"frames[{i}].frame")
        out.append(replace(ref, frame=frame))
    return out, unit if values else None
