"""The video pipeline's result in Blender: video.mp4 as a movie clip, and a plane beside the asset whose
material plays it (a movie image texture, cyclic, auto-refreshed with the scene frame)."""

from __future__ import annotations

from pathlib import Path

import bpy

from ..materials import new_node_material

VIDEO_ARTIFACT = "video.mp4"
FIRST_FRAME = "frame_0000.png"
GAP = 0.25
"""Metres between the asset's bounds and the plane."""


def _bounds(obj: bpy.types.Object) -> tuple[list[float], list[float]]:
    """World-space min and max corners of the object's bounding box."""
    corners = [obj.matrix_world @ _vec(c) for c in obj.bound_box]
    lo = [min(c[i] for c in corners) for i in range(3)]
    hi = [max(c[i] for c in corners) for i in range(3)]
    return lo, hi


def _vec(c):
    from mathutils import Vector

    return Vector(c)


def _load_media(path: Path) -> tuple[bpy.types.MovieClip, bpy.types.Image]:
    """The movie clip and the movie image of one file (the clip for the editors, the image for the material)."""
    clip = bpy.data.movieclips.load(str(path))
    image = bpy.data.images.load(str(path))
    if image.source not in ("MOVIE", "SEQUENCE"):
        image.source = "MOVIE" if path.suffix.lower() == ".mp4" else "SEQUENCE"
    return clip, image


def _plane(name: str, width: float, height: float) -> bpy.types.Object:
    """An upright plane (in the X-Z plane, facing -Y) of width x height metres with a 0-1 UV map."""
    mesh = bpy.data.meshes.new(name)
    w, h = width / 2, height / 2
    mesh.from_pydata([(-w, 0, -h), (w, 0, -h), (w, 0, h), (-w, 0, h)], [], [(0, 1, 2, 3)])
    uv = mesh.uv_layers.new(name="UVMap")
    for loop, co in zip(uv.data, [(0, 0), (1, 0), (1, 1), (0, 1)]):
        loop.uv = co
    mesh.update()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _movie_material(name: str, image: bpy.types.Image, frames: int) -> bpy.types.Material:
    material = new_node_material(name)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = nodes["Principled BSDF"]
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    user = tex.image_user
    user.frame_duration, user.frame_start, user.frame_offset = frames, 1, 0
    user.use_cyclic, user.use_auto_refresh = True, True
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    emission = bsdf.inputs.get("Emission Color")
    if emission is not None:  # the video shows as it is, whatever the lighting
        links.new(tex.outputs["Color"], emission)
        bsdf.inputs["Emission Strength"].default_value = 1.0
    return material


def import_video(paths: list[Path], source: bpy.types.Object | None, name: str | None = None) -> list[bpy.types.Object]:
    """Import a video result: the movie clip (`<name>_video`) and a plane playing it, standing beside `source`
    (to its +X side, bottoms level, as tall as the asset) or at the origin without one. Returns [plane]."""
    by_name = {Path(p).name: Path(p) for p in paths}
    media = by_name.get(VIDEO_ARTIFACT) or by_name.get(FIRST_FRAME)
    if media is None:
        raise FileNotFoundError(f"a video result holds {VIDEO_ARTIFACT} (or {FIRST_FRAME}...); got {sorted(by_name)}")
    base = name or (source.name if source is not None else "likeness3d")
    clip, image = _load_media(media)
    clip.name = image.name = f"{base}_video"
    frames = max(int(clip.frame_duration), 1)
    width_px, height_px = (int(v) for v in clip.size)
    if source is not None:
        lo, hi = _bounds(source)
        height = max(hi[2] - lo[2], 1e-3)
    else:
        lo, hi, height = [0.0, 0.0, 0.0], [0.0, 0.0, 0.0], 1.0
    width = height * (width_px / height_px if height_px else 1.0)
    plane = _plane(f"{base}_video_plane", width, height)
    plane.location = (hi[0] + GAP + width / 2, (lo[1] + hi[1]) / 2, lo[2] + height / 2)
    plane.data.materials.append(_movie_material(f"{base}_video", image, frames))
    plane["likeness3d_video"] = str(media)
    plane["likeness3d_frames"] = frames
    bpy.context.view_layer.update()
    return [plane]
