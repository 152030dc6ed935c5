"""A splat sequence without a mesh (`splats/frame_NNNN.ply`, the same Gaussians in the same order per frame)
plays through a frame-change handler over a memory-mapped cache.

At import the positions of every frame go into one `.npy` file next to the PLYs ([F, N, 3] float32, written
frame by frame, so memory holds one frame at a time); the splat object is the first frame with every 3DGS
field. On a frame change the handler copies that frame's rows from the mapped file into the points
(`foreach_set`): the operating system pages in only the frame shown. Between two cached frames the earlier
one holds; before the first or after the last, the nearest end. Colours, opacities, scales and rotations stay
the first frame's (the refinement fits the colours once for all frames).
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


def build_cache(files: list[tuple[int, Path]], cache_path: Path) -> Path:
    """Write the [F, N, 3] float32 positions of the sequence to `cache_path` (.npy); every frame must hold
    the first frame's number of Gaussians, else an InvalidAsset naming the file."""
    count = len(read_splats(files[0][1]))
    cache = np.lib.format.open_memmap(cache_path.with_suffix(".part.npy"), mode="w+", dtype=np.float32,
                                      shape=(len(files), count, 3))
    for i, (frame, path) in enumerate(files):
        splats = read_splats(path)
        if len(splats) != count:
            del cache
            cache_path.with_suffix(".part.npy").unlink()
            raise InvalidAsset(f"splat sequence: {path.name} (frame {frame}) holds {len(splats)} Gaussians but "
                               f"{files[0][1].name} holds {count}; a sequence keeps the same Gaussians in every frame",
                               field="splats")
        cache[i] = splats.positions
    cache.flush()
    del cache
    cache_path.with_suffix(".part.npy").replace(cache_path)
    _mapped.pop(str(cache_path), None)
    return cache_path


def import_sequence(paths, name: str, display_cap: int = DEFAULT_DISPLAY_CAP,
                    collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """The sequence among `paths` as one splat object that follows the scene frame."""
    files = sequence_files(paths)
    if not files:
        raise InvalidAsset("no splats/frame_NNNN.ply files to import as a sequence", field="splats")
    cache_path = build_cache(files, files[0][1].with_name(CACHE_NAME))
    obj = import_splat_file(files[0][1], name, collection, display_cap)
    obj[PROP] = {"cache": str(cache_path), "frames": [frame for frame, _ in files], "shown": -1}
    show_frame(obj, bpy.context.scene.frame_current)
    return obj


def _cache(path: str) -> np.ndarray:
    cache = _mapped.get(path)
    if cache is None:
        cache = _mapped[path] = np.load(path, mmap_mode="r")
    return cache


def show_frame(obj: bpy.types.Object, scene_frame: int) -> int:
    """Put the cached positions of `scene_frame` into the points of `obj`; the cache row shown."""
    info = obj[PROP]
    frames = np.asarray(info["frames"])
    row = int(np.clip(np.searchsorted(frames, scene_frame, side="right") - 1, 0, len(frames) - 1))
    if int(info["shown"]) == row:
        return row
    cache = _cache(info["cache"])
    if cache.shape[1] != len(obj.data.vertices):
        raise InvalidAsset(f"{info['cache']} holds {cache.shape[1]} Gaussians but {obj.name!r} has "
                           f"{len(obj.data.vertices)}", field="splats")
    set_positions(obj.data, np.ascontiguousarray(cache[row], dtype=np.float32).ravel())
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
