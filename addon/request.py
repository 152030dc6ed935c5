"""Scene properties -> the job's input: a protocol Asset (mesh, references, class word) and the config."""

from __future__ import annotations

import bpy

from ..protocol.assets import Asset, Camera, Mesh, Reference
from .gather import GatherError, gather_camera, gather_mesh
from .gather_anim import check_reference_frame, gather_frames, panel_frame_numbers
from .images import image_to_array
from .presets import build_config
from .video_panel import scene_config


def gather_references(scene: bpy.types.Scene, numbers=None) -> tuple[Reference, ...]:
    """Every reference of the panel. With `numbers` (the gathered frames of an animated target), each
    reference carries its frame, which must be one of them, and its camera is posed at that frame."""
    props = scene.likeness
    refs, names = [], set()
    current, subframe = scene.frame_current, scene.frame_subframe
    try:
        for i, item in enumerate(props.references):
            refs.append(_reference(scene, i, item, names, numbers))
    finally:
        if numbers is not None and (scene.frame_current, scene.frame_subframe) != (current, subframe):
            scene.frame_set(current, subframe=subframe)
    return tuple(refs)


def _reference(scene, i, item, names: set, numbers) -> Reference:
    if item.image is None:
        raise GatherError(f"reference {i + 1} has no image")
    if item.camera is None:
        raise GatherError(f"reference {i + 1} ({item.image.name!r}) has no camera")
    image = image_to_array(item.image, f"reference {i + 1} image")
    height, width = image.shape[:2]
    frame = None
    if numbers is not None:
        frame = int(item.frame)
        check_reference_frame(i, frame, numbers)
        if scene.frame_current != frame:
            scene.frame_set(frame)  # the camera may move: its pose at the reference's frame
    cam = gather_camera(item.camera, scene, (width, height), item.frame_method)
    name = item.image.name
    while name in names:  # the wire wants unique names; the same photo may serve two cameras
        name = f"{item.image.name}.{i}"
    names.add(name)
    camera = Camera(cam.K, cam.w2c, cam.width, cam.height)
    if frame is None:
        return Reference(name, image, camera)
    return Reference(name, image, camera, frame=frame)


def build_asset(context: bpy.types.Context, scene: bpy.types.Scene | None = None) -> Asset:
    """The evaluated target mesh, its texture and every reference of the scene, validated as an Asset."""
    scene = scene or context.scene
    props = scene.likeness
    if props.target is None:
        raise GatherError("no target mesh: pick one in the Likeness3D panel (Subject > Target)")
    if props.animated:
        return _animated_asset(context, scene)
    depsgraph = context.evaluated_depsgraph_get()
    mesh = gather_mesh(props.target, depsgraph)
    class_word = props.class_word.strip() or "object"
    return Asset(
        Mesh(mesh.vertices, mesh.faces, mesh.uvs, mesh.texture),
        gather_references(scene),
        class_word=class_word,
        name=props.target.name,
    )


def _animated_asset(context: bpy.types.Context, scene: bpy.types.Scene) -> Asset:
    """4D: the rest mesh (the first gathered frame: its UVs and texture), its positions at every frame of the
    panel's range, and references carrying their frames."""
    props = scene.likeness
    numbers = panel_frame_numbers(scene)
    anim = gather_frames(props.target, scene, numbers, context)
    current, subframe = scene.frame_current, scene.frame_subframe
    try:
        scene.frame_set(int(numbers[0]))
        mesh = gather_mesh(props.target, context.evaluated_depsgraph_get())
    finally:
        scene.frame_set(current, subframe=subframe)
    return Asset(
        Mesh(mesh.vertices, mesh.faces, mesh.uvs, mesh.texture,
             frames=anim.frames, frame_numbers=anim.frame_numbers, fps=anim.fps),
        gather_references(scene, numbers),
        class_word=props.class_word.strip() or "object",
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
