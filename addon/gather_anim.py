"""Blender -> arrays over time: the target's evaluated vertex positions per frame, and each reference's frame.

Per frame: `scene.frame_set`, the evaluated object from the depsgraph (armature, shape keys, modifiers,
constraints, drivers all applied), one `foreach_get` of the vertex positions into the frame's slice of a
preallocated `[F, V, 3]` float32 array, and the frame's world transform applied in numpy. No per-vertex Python.
The topology must stay fixed: every frame is checked against the first (vertex count and corner vertices).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import bpy
import numpy as np

from .gather import GatherError

MAX_FRAMES = 10_000  # a guard against a typo such as 1..100000: the wire takes [F, V, 3] floats in one go


@dataclass
class FrameArrays:
    """The animated target as the wire wants it (see protocol.assets.Mesh: frames, frame_numbers, fps)."""

    frames: np.ndarray  # [F, V, 3] float32, Blender world space
    frame_numbers: np.ndarray  # [F] int32, strictly increasing scene frames
    fps: float  # the scene's frames per second


def scene_fps(scene: bpy.types.Scene) -> float:
    return float(scene.render.fps) / float(scene.render.fps_base or 1.0)


def frame_numbers(start: int, end: int, step: int = 1) -> np.ndarray:
    """[F] int32 frames start, start+step, ... <= end; a bad range is a GatherError naming it."""
    if step < 1:
        raise GatherError(f"frame step is {step}; it must be 1 or more")
    if end < start:
        raise GatherError(f"frame range {start}..{end} is empty: the end frame must not be before the start frame")
    numbers = np.arange(int(start), int(end) + 1, int(step), dtype=np.int64)
    if len(numbers) > MAX_FRAMES:
        raise GatherError(f"frame range {start}..{end} step {step} has {len(numbers)} frames; at most {MAX_FRAMES} "
                          "can be sent: raise the step or shorten the range")
    return numbers.astype(np.int32)


def panel_frame_numbers(scene: bpy.types.Scene) -> np.ndarray:
    """The frames the panel asks for: the scene's range, or the custom one."""
    props = scene.likeness
    if props.use_scene_range:
        return frame_numbers(scene.frame_start, scene.frame_end, props.frame_step)
    return frame_numbers(props.frame_start, props.frame_end, props.frame_step)


def _corner_vertices(mesh: bpy.types.Mesh) -> np.ndarray:
    """[L] int32 the vertex of each face corner (the `.corner_vert` attribute: far faster than `mesh.loops`)."""
    corners = np.empty(len(mesh.loops), dtype=np.int32)
    attr = mesh.attributes.get(".corner_vert")
    if attr is not None:
        attr.data.foreach_get("value", corners)
    else:
        mesh.loops.foreach_get("vertex_index", corners)
    return corners


def read_positions(mesh: bpy.types.Mesh, out: np.ndarray) -> None:
    """The vertex positions into `out` ([V*3] float32, contiguous), through the `position` attribute."""
    attr = mesh.attributes.get("position")
    if attr is not None:
        attr.data.foreach_get("vector", out)
    else:
        mesh.vertices.foreach_get("co", out)


def gather_frames(obj: bpy.types.Object, scene: bpy.types.Scene, numbers: np.ndarray,
                  context: bpy.types.Context | None = None) -> FrameArrays:
    """The evaluated world-space vertex positions of `obj` at each scene frame of `numbers`.

    The scene's current frame is restored afterwards. A frame whose evaluated mesh has another vertex count
    or other corner vertices than the first is a GatherError naming that frame.
    """
    if obj is None or obj.type != "MESH":
        raise GatherError(f"target must be a mesh object, got {getattr(obj, 'name', None)!r}")
    numbers = np.asarray(numbers, dtype=np.int32)
    if numbers.ndim != 1 or len(numbers) == 0 or np.any(np.diff(numbers) <= 0):
        raise GatherError(f"frame numbers must be a non-empty strictly increasing list, got {numbers.tolist()[:8]}")
    context = context or bpy.context
    current, subframe = scene.frame_current, scene.frame_subframe
    out: np.ndarray | None = None
    corners0 = None
    try:
        for i, number in enumerate(numbers.tolist()):
            scene.frame_set(number)
            obj_eval = obj.evaluated_get(context.evaluated_depsgraph_get())
            mesh = obj_eval.data
            n_verts = len(mesh.vertices)
            if out is None:
                out = np.empty((len(numbers), n_verts, 3), dtype=np.float32)
                corners0 = _corner_vertices(mesh)
                first = number
            elif n_verts != out.shape[1] or len(mesh.loops) != len(corners0):
                raise GatherError(
                    f"target {obj.name!r} changes topology at frame {number}: {n_verts} vertices and "
                    f"{len(mesh.loops)} face corners, frame {first} had {out.shape[1]} and {len(corners0)}; "
                    "4D needs a fixed topology (disable modifiers that add or remove geometry, such as "
                    "Remesh, Decimate, Build or Geometry Nodes that change the mesh)")
            elif not np.array_equal(_corner_vertices(mesh), corners0):
                raise GatherError(
                    f"target {obj.name!r} changes topology at frame {number}: its faces connect other vertices "
                    f"than at frame {first}; 4D needs a fixed topology")
            read_positions(mesh, out[i].reshape(-1))
            matrix = np.array(obj_eval.matrix_world, dtype=np.float32)
            if not np.allclose(matrix, np.eye(4, dtype=np.float32)):
                out[i] = out[i] @ matrix[:3, :3].T + matrix[:3, 3]
    finally:
        scene.frame_set(current, subframe=subframe)
    if not np.all(np.isfinite(out)):
        frame = int(numbers[np.argwhere(~np.isfinite(out))[0][0]])
        raise GatherError(f"target {obj.name!r} has non-finite vertex positions at frame {frame}")
    return FrameArrays(out, numbers, scene_fps(scene))


def check_reference_frame(index: int, frame: int, numbers: np.ndarray) -> None:
    """A reference's frame must be one of the gathered frames; else a GatherError naming the field."""
    if frame not in set(numbers.tolist()):
        step = int(numbers[1] - numbers[0]) if len(numbers) > 1 else 1
        raise GatherError(
            f"references[{index}].frame is {frame}, outside the gathered frames {int(numbers[0])}..{int(numbers[-1])} "
            f"step {step}: set the reference's frame to one of them, or widen the frame range")


# ---------------------------------------------------------------------------------------------
# The frame a camera background movie or image sequence shows


def shown_image_frame(image_user: bpy.types.ImageUser, scene_frame: int) -> int:
    """The movie / sequence frame an image user shows at `scene_frame` (Blender's image user frame mapping:
    offset by Start and Offset, clamped to Frames, or wrapped when Cyclic)."""
    duration = max(1, int(image_user.frame_duration))
    frame = int(scene_frame) - int(image_user.frame_start)
    if image_user.use_cyclic:
        frame %= duration
    else:
        frame = min(max(frame, 0), duration - 1)
    return frame + 1 + int(image_user.frame_offset)


_DIGITS = re.compile(r"(\d+)(?!.*\d)")


def sequence_frame_path(image: bpy.types.Image, frame: int) -> Path:
    """The file of frame `frame` of an image sequence (the last run of digits in the file name is the frame)."""
    path = Path(bpy.path.abspath(image.filepath))
    match = _DIGITS.search(path.name)
    if match is None:
        raise GatherError(f"image sequence {image.name!r}: file name {path.name!r} has no frame number")
    digits = match.group(1)
    name = path.name[: match.start()] + str(frame).zfill(len(digits)) + path.name[match.end():]
    return path.with_name(name)


def still_of_shown_frame(image: bpy.types.Image, image_user: bpy.types.ImageUser, scene_frame: int) -> bpy.types.Image:
    """A still (packed) image of the frame a background image sequence shows at `scene_frame`.

    Movies are read by frame through their sequence of stills only; a movie file is a GatherError saying so.
    """
    if image.source == "MOVIE":
        raise GatherError(f"camera background {image.name!r} is a movie file; Likeness3D reads video frames from an "
                          "image sequence: export the movie as PNG frames and load them as an Image Sequence")
    frame = shown_image_frame(image_user, scene_frame)
    path = sequence_frame_path(image, frame)
    if not path.is_file():
        raise GatherError(f"image sequence {image.name!r}: frame {frame} (file {str(path)!r}) does not exist")
    still = bpy.data.images.load(str(path), check_existing=True)
    still.pack()
    return still
