"""The jobs of this file: submit, follow events into the scene's job list, fetch and import the results.

Everything here runs on the main thread (operators, or `session.tick`); the network calls go through
`session.call`. Job items are looked up by id each time, never held across ticks (Blender may move a
collection's items when it grows).
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from concurrent.futures import Future
from pathlib import Path

import bpy

from ..protocol import messages as M
from ..protocol.assets import Asset
from ..protocol.errors import ProtocolError, error_from_code
from . import importers, preferences, session
from .images import set_pixels, array_to_image
from .reports import report

PREVIEW_IMAGE = "Likeness3D Preview"
_self_reporting: set[str] = set()  # jobs whose blocking operator reports the outcome itself
_aliases: dict[str, str] = {}  # an item's key before acceptance -> its job id
_orphans: dict[str, list] = {}  # events that beat their job's acceptance to the main thread, by job id
_in_flight: set[str] = set()  # keys of items submitted in this session and not yet accepted or refused


# ---------------------------------------------------------------------------------------------
# Lookup


def find(job_id: str):
    """(scene, job item) of a job id (or its key before acceptance) in any scene, or (None, None)."""
    job_id = _aliases.get(job_id, job_id)
    for scene in bpy.data.scenes:
        item = scene.likeness.job(job_id)
        if item is not None:
            return scene, item
    return None, None


def results_dir(job_id: str) -> Path:
    """Where a job's artifacts go: the preferences' folder ('//' relative to the saved .blend), per job."""
    folder = preferences.get().results_dir or "//likeness3d_results"
    if folder.startswith("//") and not bpy.data.filepath:
        base = Path(bpy.app.tempdir or tempfile.gettempdir()) / "likeness3d_results"
    else:
        base = Path(bpy.path.abspath(folder))
    return base / job_id


def describe(exc: BaseException) -> str:
    """"Timeout: no reply ...": an exception's class and message, for reports and the job list."""
    return f"{type(exc).__name__}: {exc.message if isinstance(exc, ProtocolError) else exc}"


def error_text(code: str, message: str, field: str | None = None) -> str:
    """"UnknownPipeline: no pipeline 'x'...": the typed error's class and message."""
    exc = error_from_code(code, message, field)
    return f"{type(exc).__name__}: {exc.message}"


# ---------------------------------------------------------------------------------------------
# Submit


def submit(scene: bpy.types.Scene, asset: Asset, pipeline: str, config: dict) -> str:
    """Add a job item and send the job from the worker thread; returns the item's key (its id once accepted)."""
    client = session.client()
    if client is None:
        raise ProtocolError("not connected to a backend: press Connect in the Likeness3D panel")
    props = scene.likeness
    key = f"pending-{uuid.uuid4().hex[:8]}"
    item = props.jobs.add()
    item.job_id, item.pipeline, item.source = key, pipeline, props.target
    item.animated = getattr(asset.mesh, "frames", None) is not None
    item.state, item.created, item.text = "SUBMITTING", time.time(), "sending the asset"
    props.job_index = len(props.jobs) - 1
    props.active_job = key
    _in_flight.add(key)
    session.call(client.submit, pipeline, asset, config, on_done=lambda f: _accepted(key, f))
    return key


def _accepted(key: str, future: Future) -> None:
    _in_flight.discard(key)
    scene, item = find(key)
    try:
        handle = future.result()
    except Exception as exc:  # noqa: BLE001 - any failure to submit ends the job item, and is reported
        if item is not None:
            item.state, item.message = "FAILED", describe(exc)
            item.error_code = exc.code if isinstance(exc, ProtocolError) else ""
        if key not in _self_reporting:
            report("ERROR", f"Likeness3D job not accepted: {describe(exc)}")
        return
    _aliases[key] = handle.id
    if key in _self_reporting:
        _self_reporting.add(handle.id)
    if item is None:
        return  # the item was removed while the asset was on its way
    item.job_id = handle.id
    if scene.likeness.active_job == key:
        scene.likeness.active_job = handle.id
    if item.state == "SUBMITTING":
        item.state, item.text = "QUEUED", "waiting for a worker"
    for event in _orphans.pop(handle.id, []):
        handle_event(event)
    session.tag_redraw()


# ---------------------------------------------------------------------------------------------
# Events


def handle_event(event) -> None:
    """A job event from the client's queue (main thread)."""
    job_id = getattr(event, "job", None)
    if job_id is not None and find(job_id)[1] is None and _awaiting_acceptance():
        # the event overtook its job's "accepted" reply on the way to the main thread: keep it for later
        _orphans.setdefault(job_id, []).append(event)
        return
    if isinstance(event, M.Progress):
        _on_progress(event)
    elif isinstance(event, M.Result):
        _on_result(event)
    elif isinstance(event, M.Error):
        _on_error(event)
    session.tag_redraw()


def _awaiting_acceptance() -> bool:
    return bool(_in_flight)


def _on_progress(ev: M.Progress) -> None:
    scene, item = find(ev.job)
    if item is None or item.finished or item.state == "FETCHING":
        return  # a replay after the job's end (a reattach) changes nothing
    item.state = "RUNNING"
    item.stage, item.step, item.total, item.text, item.elapsed = ev.stage, ev.step, ev.total, ev.text, ev.elapsed
    # pace so far, extrapolated: elapsed / step * steps left
    item.eta = ev.elapsed / ev.step * (ev.total - ev.step) if ev.step > 0 and ev.total >= ev.step else -1.0
    if ev.preview is not None:
        show_preview(scene, ev.preview)


def show_preview(scene: bpy.types.Scene, rgba) -> bpy.types.Image:
    """Put a preview ([H, W, 4] uint8) into the scene's preview Image datablock."""
    image = scene.likeness.preview
    if image is None:
        image = bpy.data.images.get(PREVIEW_IMAGE) or array_to_image(PREVIEW_IMAGE, rgba, pack=False)
        scene.likeness.preview = image
    set_pixels(image, rgba)
    if image.preview is not None:
        image.preview.reload()
    return image


def _on_result(ev: M.Result) -> None:
    scene, item = find(ev.job)
    if item is None:
        return
    item.state, item.text = "FETCHING", f"fetching {len(ev.artifacts)} artifacts"
    item.step = item.total = max(item.total, 1)
    try:
        fetch(ev.job)
    except ProtocolError as exc:  # disconnected meanwhile: the results wait on the backend
        item.message = f"{describe(exc)}; the results stay on the backend: connect and press Fetch"


def _on_error(ev: M.Error) -> None:
    if ev.job is None:  # not a job's end: an unreadable message the client could not route
        report("ERROR", f"Likeness3D: {error_text(ev.code, ev.message, ev.field)}")
        return
    scene, item = find(ev.job)
    if item is None:
        return
    text = error_text(ev.code, ev.message, ev.field)
    item.state = "CANCELLED" if ev.code == "cancelled" else "FAILED"
    item.message, item.error_code = text, ev.code
    if ev.job not in _self_reporting:
        report("WARNING" if ev.code == "cancelled" else "ERROR", f"Likeness3D job {ev.job}: {text}")


# ---------------------------------------------------------------------------------------------
# Results


def fetch(job_id: str) -> None:
    """Download every artifact of a finished job (worker thread), then import it (main thread)."""
    client = session.client()
    if client is None:
        raise ProtocolError("not connected to a backend: press Connect to fetch results")
    out = results_dir(job_id)
    session.call(client.fetch_all, job_id, out, on_done=lambda f: _fetched(job_id, out, f))


def _fetched(job_id: str, out: Path, future: Future) -> None:
    scene, item = find(job_id)
    try:
        paths = future.result()
    except Exception as exc:  # noqa: BLE001 - network or disk: the job item shows it, and it is reported
        if item is not None:
            item.state, item.message = "FAILED", f"fetching results: {describe(exc)}"
        report("ERROR", f"Likeness3D job {job_id}: fetching results failed: {describe(exc)}")
        return
    if item is None:
        return
    item.result_dir = str(out)
    item.artifacts = ",".join(_relative(p, out) for p in paths)  # "splats/frame_0001.ply" keeps its folder
    item.text = summary(paths)
    if not item.imported and any(p.name in importers.IMPORTABLE for p in paths):
        objects = import_results(job_id)
        item.text = f"imported {', '.join(o.name for o in objects)}"
    item.state = "DONE"
    if job_id not in _self_reporting:
        report("INFO", f"Likeness3D job {job_id} done: {item.text}")


def _relative(path: Path, folder: Path) -> str:
    try:
        return path.relative_to(folder).as_posix()
    except ValueError:
        return path.name


def summary(paths: list[Path]) -> str:
    """One line about fetched artifacts; for inspect.json, what it found."""
    for path in paths:
        if path.name == "inspect.json":
            data = json.loads(path.read_text())
            mesh, refs = data.get("mesh", {}), data.get("references", [])
            seeing = data.get("references_seeing_mesh", [])
            return (f"{mesh.get('vertices')} vertices, {mesh.get('faces')} faces; "
                    f"{len(seeing)} of {len(refs)} references see the mesh")
    return f"fetched {', '.join(p.name for p in paths)}"


def import_results(job_id: str) -> list[bpy.types.Object]:
    """Import a fetched job's geometry next to its source object."""
    scene, item = find(job_id)
    if item is None:
        raise KeyError(f"no job {job_id!r} in this file")
    if not item.result_dir:
        raise FileNotFoundError(f"job {job_id} has no fetched results yet: press Fetch")
    folder = Path(item.result_dir)
    paths = [folder / name for name in item.artifacts.split(",") if name]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"job {job_id}: fetched files are gone ({missing}); press Fetch again")
    objects = importers.import_result(paths, item.source, preferences.get().splat_display_cap)
    item.imported = bool(objects) or item.imported
    return objects


# ---------------------------------------------------------------------------------------------
# Cancel and reattach


def cancel(job_id: str) -> None:
    client = session.client()
    if client is None:
        raise ProtocolError("not connected to a backend")

    def done(future: Future) -> None:
        try:
            future.result()
        except ProtocolError as exc:
            report("ERROR", f"Likeness3D: cancelling {job_id} failed: {describe(exc)}")

    session.call(client.cancel, job_id, on_done=done)


def reattach_all() -> int:
    """Follow again every unfinished job of the file (after connecting, or after opening the .blend)."""
    for scene in bpy.data.scenes:
        for item in scene.likeness.jobs:
            if item.job_id.startswith("pending-") and item.job_id not in _in_flight and not item.finished:
                item.state = "FAILED"
                item.message = "the file was saved before the backend accepted this job; run Refine again"
    client = session.client()
    if client is None:
        return 0
    count = 0
    for scene in bpy.data.scenes:
        for item in scene.likeness.jobs:
            if item.finished or item.job_id.startswith("pending-"):
                continue
            job_id = item.job_id
            session.call(client.attach, job_id, on_done=lambda f, j=job_id: _reattached(j, f))
            count += 1
    return count


def _reattached(job_id: str, future: Future) -> None:
    try:
        future.result()
    except ProtocolError as exc:
        scene, item = find(job_id)
        if item is not None:
            item.state, item.message = "FAILED", describe(exc)
        report("ERROR", f"Likeness3D: cannot reattach job {job_id}: {describe(exc)}")


def report_outcome_here(key: str) -> None:
    """The caller (a blocking operator) reports this job's outcome; the event handlers stay quiet."""
    _self_reporting.add(key)


def wait(key: str, timeout: float | None = None, progress=None) -> bool:
    """Background mode: poll until the job's item is final and its results are in; False on timeout.
    `progress(item)` is called whenever the item's state, stage or step changed (a script prints it)."""
    last = [None]

    def finished() -> bool:
        scene, item = find(key)
        if progress is not None and item is not None:
            now = (item.state, item.stage, item.step, item.total)
            if now != last[0]:
                last[0] = now
                progress(item)
        return item is None or (item.finished and not session.busy())

    return session.wait_until(finished, timeout)


def forget() -> None:
    """Drop the bookkeeping of this session (add-on unregister, tests)."""
    _self_reporting.clear()
    _aliases.clear()
    _orphans.clear()
    _in_flight.clear()


session.set_event_handler(handle_event)
