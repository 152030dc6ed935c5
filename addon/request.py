"""Scene properties -> the job's input: a protocol Asset (mesh, references, class word) and the config."""

from __future__ import annotations

import bpy

from ..protocol.assets import Asset, Camera, Mesh, Reference
from .gather import GatherError, gather_camera, gather_mesh
from .images import image_to_array
from .presets import build_config
from .video_panel import scene_config


def gather_references(scene: bpy.types.Scene) -> tuple[Reference, ...]:
    props = scene.likeness
    refs, names = [], set()
    for i, item in enumerate(props.references):
        if item.image is None:
            raise GatherError(f"reference {i + 1} has no image")
        if item.camera is None:
            raise GatherError(f"reference {i + 1} ({item.image.name!r}) has no camera")
        image = image_to_array(item.image, f"reference {i + 1} image")
        height, width = image.shape[:2]
        cam = gather_camera(item.camera, scene, (width, height), item.frame_method)
        name = item.image.name
        while name in names:  # the wire wants unique names; the same photo may serve two cameras
            name = f"{item.image.name}.{i}"
        names.add(name)
        refs.append(Reference(name, image, Camera(cam.K, cam.w2c, cam.width, cam.height)))
    return tuple(refs)


def build_asset(context: bpy.types.Context, scene: bpy.types.Scene | None = None) -> Asset:
    """The evaluated target mesh, its texture and every reference of the scene, validated as an Asset."""
    scene = scene or context.scene
    props = scene.likeness
    if props.target is None:
        raise GatherError("no target mesh: pick one in the Likeness3D panel (Subject > Target)")
    depsgraph = context.evaluated_depsgraph_get()
    mesh = gather_mesh(props.target, depsgraph)
    class_word = props.class_word.strip() or "object"
    return Asset(
        Mesh(mesh.vertices, mesh.faces, mesh.uvs, mesh.texture),
        gather_references(scene),
        class_word=class_word,
        name=props.target.name,
    )


def build_job_config(scene: bpy.types.Scene) -> dict:
    from . import session

    props = scene.likeness
    return scene_config(scene, props.pipeline,
                        build_config(props.pipeline, props.quality, props.config_json, session.backend_has_gpu()))


def quality_note(scene: bpy.types.Scene) -> str:
    """What Auto quality picks on the connected backend, in words ("" when the choice is the user's)."""
    from . import session
    from .presets import effective_quality

    props = scene.likeness
    if props.quality != "AUTO":
        return ""
    gpu = session.backend_has_gpu()
    if gpu is None:
        return "Auto: Standard settings unless the backend has no GPU (connect to know)"
    if effective_quality("AUTO", gpu) == "DRAFT":
        return "Auto: Draft settings, the backend has no GPU (the full settings would run for hours)"
    return "Auto: Standard settings on the backend's GPU"
