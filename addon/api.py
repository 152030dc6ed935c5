"""The scripting API: run a whole job from Python and wait for it, as headless pipelines do
(`blender -b scene.blend -P script.py`); the same code paths as the panel's buttons.

    from likeness3d.addon import api          # or bl_ext.<repo>.likeness3d.addon.api as an extension
    outcome = api.refine(target=bpy.data.objects["Cube"], pipeline="inspect", address="tcp://127.0.0.1:5555")
    print(outcome.job_id, outcome.files, [o.name for o in outcome.objects])

It blocks (polling the backend) until the job ends; in an interactive session that freezes the UI for the
job's duration, so the panel uses the non-blocking operators instead. A failed job raises the same typed
error the protocol client raises (UnknownPipeline, InvalidAsset, Cancelled, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import bpy

from ..protocol.errors import ProtocolError, Timeout, error_from_code
from . import jobs, preferences, session
from .presets import build_config
from .video_panel import scene_config
from .request import build_asset, quality_note


@dataclass
class Outcome:
    """A finished job: its id, the fetched artifact files and the objects imported from them."""

    job_id: str
    files: list[Path]
    objects: list[bpy.types.Object] = field(default_factory=list)
    summary: str = ""


def connect(address: str | None = None, timeout: float | None = None) -> dict:
    """Connect (blocking) and return what the backend offers: version, GPUs, pipelines, models."""
    if timeout is not None:
        preferences.get().timeout = timeout
    session.connect(bpy.context, address, on_ready=jobs.reattach_all)
    session.wait_until(lambda: not session.busy())
    rt = bpy.context.window_manager.likeness
    if rt.state != "connected":
        raise ProtocolError(f"cannot connect to {address or preferences.get().address}: {rt.message}")
    return {"server": rt.version, "gpus": rt.gpus, "pipelines": session.pipelines(), "models": rt.models}


def set_references(scene: bpy.types.Scene, references: Iterable[tuple]) -> None:
    """Replace the scene's references with (image, camera object[, frame method[, scene frame]]) tuples
    (the frame, for an animated target, defaults to the scene's current frame)."""
    props = scene.likeness
    props.references.clear()
    for entry in references:
        image, cam, *rest = entry
        ref = props.references.add()
        ref.image, ref.camera = image, cam
        ref.frame_method = rest[0] if rest else "FIT"
        ref.frame = int(rest[1]) if len(rest) > 1 else scene.frame_current


def refine(
    target: bpy.types.Object | None = None,
    references: Iterable[tuple] | None = None,
    class_word: str | None = None,
    pipeline: str | None = None,
    quality: str | None = None,
    config: dict | None = None,
    address: str | None = None,
    timeout: float | None = None,
    scene: bpy.types.Scene | None = None,
    progress=None,
    frames: tuple[int, int] | tuple[int, int, int] | None = None,
) -> Outcome:
    """Gather, submit, wait, fetch and import one job. Arguments left out keep the scene's panel settings;
    `config` is merged over the quality preset (Auto: Draft on a backend without a GPU). `timeout` bounds the
    wait for the job (None: no bound). `progress(item)` is called as the job moves (state, stage, step, text;
    also once with the settings note, as a `str`). `frames` = (start, end[, step]) sends the target animated
    (4D) over that range; left out, the panel's Animated setting holds."""
    scene = scene or bpy.context.scene
    props = scene.likeness
    if target is not None:
        props.target = target
    if references is not None:
        set_references(scene, references)
    if class_word is not None:
        props.class_word = class_word
    if pipeline is not None:
        props.pipeline = pipeline
    if quality is not None:
        props.quality = quality
    if frames is not None:
        props.animated, props.use_scene_range = True, False
        props.frame_start, props.frame_end = int(frames[0]), int(frames[1])
        props.frame_step = int(frames[2]) if len(frames) > 2 else 1

    # 1. Inputs, gathered on this (main) thread
    asset = build_asset(bpy.context, scene)
    # 2. The backend (its hello says whether it has a GPU, which Auto quality needs)
    client = session.client()
    if client is None or (address and client.address != address) or session.backend_has_gpu() is None:
        connect(address or (client.address if client is not None else None))
    base = build_config(props.pipeline, props.quality, backend_has_gpu=session.backend_has_gpu())
    job_config = {**scene_config(scene, props.pipeline, base), **(config or {})}
    note = quality_note(scene)
    if note and progress is not None:
        progress(note)
    # 3. Submit and poll until the job ends and its results are fetched and imported
    before = set(bpy.data.objects)
    key = jobs.submit(scene, asset, props.pipeline, job_config)
    jobs.report_outcome_here(key)
    if not jobs.wait(key, timeout, progress):
        raise Timeout(f"the {props.pipeline} job did not finish within {timeout} s; it keeps running on the backend")
    _, item = jobs.find(key)
    if item.state != "DONE":
        code = item.error_code or ("cancelled" if item.state == "CANCELLED" else "internal")
        message = item.message.split(": ", 1)[-1]
        raise error_from_code(code, message)
    folder = Path(item.result_dir)
    return Outcome(
        job_id=item.job_id,
        files=[folder / name for name in item.artifacts.split(",") if name],
        objects=[o for o in bpy.data.objects if o not in before],
        summary=item.text,
    )
