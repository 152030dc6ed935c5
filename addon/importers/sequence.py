"""A splat sequence without a mesh (`splats/frame_NNNN.ply`, the same Gaussians in the same order per frame)
plays through a frame-change handler over a memory-mapped cache.

At import the positions of every frame go into one `.npy` file next to the PLYs ([F, N, 3] float32, written
frame by frame, so memory holds one frame at a time), and so do the rotations ([F, N, 4] wxyz) and log scales
([F, N, 3]) where some frame's differ from the first's (a 4D asset's Gaussians turn and stretch with the
motion: a posed sequence of the backend's, 4DGaussians' exports); fields that never change are not cached. The
splat object is the first frame with every 3DGS field. On a frame change the handler copies that frame's rows
from the mapped files into the points (`foreach_set`): the operating system pages in only the frame shown.
Between two cached frames the earlier one holds; before the first or after the last, the nearest end.
Colours and opacities stay the first frame's (the refinement fits the colours once for all frames).
"""

from __future__ import annotations

import re
from pathlib import Path

import bpy
import numpy as np

from ...protocol.errors import InvalidAsset
from .mesh import set_positions
from .ply import read_splats
from .splats import DEFAULT_DISPLAY_CAP, import_splat_file

FRAME_FILE = re.compile(r"frame_(\d+)\.ply$")
CACHE_NAME = "splat_sequence.npy"
PROP = "likeness3d_sequence"
_mapped: dict[str, np.ndarray] = {}  # cache path -> its memory map, opened once per session


def sequence_files(paths) -> list[tuple[int, Path]]:
    """(frame, path) of every `frame_NNNN.ply` among `paths`, by frame."""
    found = [(int(m.group(1)), Path(p)) for p in paths if (m := FRAME_FILE.search(Path(p).name))]
    return sorted(found)


MOVING = {"rotation": ("rotations", 4, "QUATERNION"), "scale": ("scales", 3, "FLOAT_VECTOR")}
"""Per-frame fields besides the positions: attribute -> (Splats property, width, attribute type)."""


def _field_path(cache_path: Path, field: str) -> Path:
    return cache_path if field == "position" else cache_path.with_name(f"{cache_path.stem}_{field}.npy")


def build_cache(files: list[tuple[int, Path]], cache_path: Path) -> tuple[Path, list[str]]:
    """Write the [F, N, 3] float32 positions of the sequence to `cache_path` (.npy), and the rotations and log
    scales beside it where they change over the frames; every frame must hold the first frame's number of
    Gaussians, else an InvalidAsset naming the file. Returns (cache_path, the fields cached per frame)."""
    first = read_splats(files[0][1])
    count = len(first)
    widths = {"position": 3, **{f: w for f, (_, w, _) in MOVING.items()}}
    parts = {f: _field_path(cache_path, f).with_suffix(".part.npy") for f in widths}
    caches = {f: np.lib.format.open_memmap(parts[f], mode="w+", dtype=np.float32, shape=(len(files), count, w))
              for f, w in widths.items()}
    moves = {f: False for f in MOVING}
    try:
        for i, (frame, path) in enumerate(files):
            splats = first if i == 0 else read_splats(path)
            if len(splats) != count:
                raise InvalidAsset(f"splat sequence: {path.name} (frame {frame}) holds {len(splats)} Gaussians but "
                                   f"{files[0][1].name} holds {count}; a sequence keeps the same Gaussians in every "
                                   f"frame", field="splats")
            caches["position"][i] = splats.positions
            for f, (prop, _, _) in MOVING.items():
                values = getattr(splats, prop)
                caches[f][i] = values
                moves[f] = moves[f] or (i > 0 and not np.array_equal(values, caches[f][0]))
    except BaseException:
        caches.clear()
        for part in parts.values():
            part.unlink(missing_ok=True)
        raise
    for cache in caches.values():
        cache.flush()
    caches.clear()
    cached = ["position"] + [f for f in MOVING if moves[f]]
    for f, part in parts.items():
        final = _field_path(cache_path, f)
        _mapped.pop(str(final), None)
        if f in cached:
            part.replace(final)
        else:
            part.unlink()
            final.unlink(missing_ok=True)  # an earlier import's cache of a field that no longer moves
    return cache_path, cached


def import_sequence(paths, name: str, display_cap: int = DEFAULT_DISPLAY_CAP,
                    collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """The sequence among `paths` as one splat object that follows the scene frame."""
    files = sequence_files(paths)
    if not files:
        raise InvalidAsset("no splats/frame_NNNN.ply files to import as a sequence", field="splats")
    cache_path, cached = build_cache(files, files[0][1].with_name(CACHE_NAME))
    obj = import_splat_file(files[0][1], name, collection, display_cap)
    obj[PROP] = {"cache": str(cache_path), "frames": [frame for frame, _ in files], "shown": -1, "fields": cached}
    show_frame(obj, bpy.context.scene.frame_current)
    return obj


def _cache(path: str) -> np.ndarray:
    cache = _mapped.get(path)
    if cache is None:
        cache = _mapped[path] = np.load(path, mmap_mode="r")
    return cache


def show_frame(obj: bpy.types.Object, scene_frame: int) -> int:
    """Put the cached positions (and rotations, scales where they move) of `scene_frame` into the points of
    `obj`; the cache row shown."""
    info = obj[PROP]
    frames = np.asarray(info["frames"])
    row = int(np.clip(np.searchsorted(frames, scene_frame, side="right") - 1, 0, len(frames) - 1))
    if int(info["shown"]) == row:
        return row
    cache = _cache(info["cache"])
    mesh = obj.data
    if cache.shape[1] != len(mesh.vertices):
        raise InvalidAsset(f"{info['cache']} holds {cache.shape[1]} Gaussians but {obj.name!r} has "
                           f"{len(mesh.vertices)}", field="splats")
    set_positions(mesh, np.ascontiguousarray(cache[row], dtype=np.float32).ravel())
    for field in info.get("fields", ["position"])[1:]:
        values = np.ascontiguousarray(_cache(str(_field_path(Path(info["cache"]), field)))[row], dtype=np.float32)
        attr = mesh.attributes.get(field)
        if attr is not None:
            attr.data.foreach_set("vector" if MOVING[field][2] == "FLOAT_VECTOR" else "value", values.ravel())
        if field == "scale" and "splat_radius" in mesh.attributes:  # the display's radius follows the scales
            radius = np.exp(values.mean(axis=1)).astype(np.float32)
            mesh.attributes["splat_radius"].data.foreach_set("value", radius)
    obj.data.update()
    info["shown"] = row
    return row


@bpy.app.handlers.persistent
def on_frame_change(scene: bpy.types.Scene, _depsgraph=None) -> None:
    """frame_change_pre: before the depsgraph evaluates the new frame, so the viewport shows it at once."""
    for obj in scene.objects:
        if PROP in obj and obj.type == "MESH":
            try:
                show_frame(obj, scene.frame_current)
            except (OSError, ValueError) as exc:  # a moved or deleted cache: say so once, keep playing the rest
                print(f"Likeness3D: splat sequence {obj.name!r} cannot show frame {scene.frame_current}: {exc}")
                del obj[PROP]


def register() -> None:
    if on_frame_change not in bpy.app.handlers.frame_change_pre:
        bpy.app.handlers.frame_change_pre.append(on_frame_change)


def unregister() -> None:
    if on_frame_change in bpy.app.handlers.frame_change_pre:
        bpy.app.handlers.frame_change_pre.remove(on_frame_change)
    _mapped.clear()
