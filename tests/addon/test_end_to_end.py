"""Full jobs from Blender objects through a real backend process, with the timer callback driven by hand
(as Blender's timer would) and, in background mode, through the blocking operators."""

import json
import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from likeness3d.addon import preferences, session
from likeness3d.protocol.client import Client
from scenes import subject_scene
from e2e import LIFECYCLE, active_job, backend, connected, pump, pump_recording_states, torch_backend  # noqa: F401 (fixtures)


def test_connect_fills_the_connection_state(connected):
    rt = bpy.context.window_manager.likeness
    assert rt.state == "connected" and rt.version.startswith("likeness3d")
    assert "inspect" in rt.pipelines and rt.gpus == "none (CPU)"
    assert "inspect" in session.pipelines()


def test_inspect_job_end_to_end_without_blocking(connected):
    subject_scene(n_refs=2)
    bpy.context.scene.likeness.config_json = json.dumps({"render_max_side": 0})  # no renders: any backend
    connected.pause()  # a frozen backend: an operator that waited for its reply would hang here
    try:
        assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
        item = active_job()
        assert item.state == "SUBMITTING" and item.job_id.startswith("pending-") and item.source.name == "Cube"
    finally:
        connected.resume()

    states = pump_recording_states(60)
    item = active_job()
    assert item.state == "DONE", item.message
    assert not item.job_id.startswith("pending-")
    # the live states in their order (a state may pass between two ticks unseen); fetching always shows
    assert states[0] == "SUBMITTING" and states[-1] == "DONE" and "FETCHING" in states
    assert states == sorted(states, key=LIFECYCLE.index), states
    assert item.step == item.total == 3 and item.stage == "inspect"

    # the result: inspect.json fetched into the job's folder, summarised in the job list
    path = Path(item.result_dir) / "inspect.json"
    report = json.loads(path.read_text())
    assert report["mesh"]["vertices"] == 8 and report["mesh"]["faces"] == 12
    assert report["class_word"] == "box" and len(report["references"]) == 2
    assert report["references_seeing_mesh"] == ["photo0", "photo1"]
    assert report["renders"] == [] and "renders_skipped" not in report
    assert item.text == "8 vertices, 12 faces; 2 of 2 references see the mesh"
    assert item.artifacts == "inspect.json"

    # each reference sent an overlay preview: the preview image holds the last one, at its size
    preview = bpy.context.scene.likeness.preview
    assert preview is not None and tuple(preview.size) == (64, 48)
    px = np.empty(64 * 48 * 4, np.float32)
    preview.pixels.foreach_get(px)
    magenta = (px.reshape(-1, 4)[:, :3] == (1.0, 0.0, 1.0)).all(axis=1)
    assert magenta.any()  # projected vertices are drawn in magenta on the photo


def test_inspect_renders_reach_the_job_list(connected):
    """With torch in the backend, inspect also renders the mesh from each reference camera."""
    torch_backend()
    subject_scene(n_refs=2)
    assert bpy.ops.likeness.refine() == {"FINISHED"}
    item = active_job()
    assert item.state == "DONE", item.message
    renders = ["reference_00.png", "reference_01.png"]
    assert item.artifacts.split(",") == ["inspect.json"] + renders
    report = json.loads((Path(item.result_dir) / "inspect.json").read_text())
    assert report["renders"] == renders and "renders_skipped" not in report
    for name in renders:
        image = bpy.data.images.load(str(Path(item.result_dir) / name))
        # one row at the photo's 64 x 48: the photo | the mesh rendered from its camera | the two blended
        assert image.size[1] == 48 + 2 and image.size[0] > 3 * 64, (name, tuple(image.size))


def test_timer_ticks_return_between_progress_events(connected):
    """The timer callback never waits for the backend: while a slow job runs (one progress event per 0.5 s),
    it returns many times between two events. A tick that blocked for the next event would return once."""
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    props.pipeline, props.config_json = "selftest", json.dumps({"steps": 8, "step_seconds": 0.5, "preview_size": 8})
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    assert pump(lambda: active_job().state == "RUNNING", 60)
    step, ticks, between = active_job().step, 0, []
    deadline = time.monotonic() + 120
    while active_job().state == "RUNNING":
        assert time.monotonic() < deadline, f"the job did not end within 120 s (step {step})"
        assert session.tick() is not None
        ticks += 1
        if active_job().step != step:
            between.append(ticks)  # ticks up to and including the one that delivered this event
            step, ticks = active_job().step, 0
        time.sleep(0.01)
    assert pump(lambda: active_job().finished, 60)
    assert active_job().state == "DONE" and active_job().step == 8, active_job().message
    # the first interval started mid-step; the rest each span one 0.5 s step (two events may come together)
    assert len(between) >= 4, between
    assert sorted(between[1:])[len(between[1:]) // 2] >= 5, f"ticks between progress events: {between}"


def test_refine_blocks_in_background_mode(connected):
    assert bpy.app.background
    subject_scene(n_refs=1)
    assert bpy.ops.likeness.refine() == {"FINISHED"}  # AUTO: blocks here, polling
    item = active_job()
    assert item.state == "DONE" and "1 of 1 references" in item.text

    # Fetch again (blocking here too), then Disconnect
    (Path(item.result_dir) / "inspect.json").unlink()
    assert bpy.ops.likeness.job_fetch.poll()
    assert bpy.ops.likeness.job_fetch() == {"FINISHED"}
    assert (Path(active_job().result_dir) / "inspect.json").is_file()
    assert active_job().state == "DONE" and "1 of 1 references" in active_job().text
    assert bpy.ops.likeness.disconnect.poll() and bpy.ops.likeness.disconnect() == {"FINISHED"}
    assert bpy.context.window_manager.likeness.state == "disconnected" and session.client() is None


# the config tree's names (the quality preset sets resplat/fit/lora keys: the extra settings merge into them)
TIRE_SMALL = {"resolution": 32, "azimuths": 4, "elevations_deg": [0.0], "resplat": {"gaussians": 300, "fit_resolution": 24},
              "fit.steps": 6, "turntable_views": 2, "bake": {"texture_size": [64, 64]}}
TIRE_ARTIFACTS = ["mesh.glb", "report.json", "sheet.png", "splats.ply", "texture.png"]


def moved_subject_scene(n_refs: int, location, angle_z: float):
    """subject_scene with the cube and its cameras moved together (about Z, then by `location`): the photos
    see the cube as before, and a result imported without the source's placement would land elsewhere."""
    from mathutils import Matrix

    source = subject_scene(n_refs=n_refs)
    move = Matrix.Translation(location) @ Matrix.Rotation(angle_z, 4, "Z")
    for obj in [source] + [ref.camera for ref in bpy.context.scene.likeness.references]:
        obj.matrix_world = move @ obj.matrix_world
    bpy.context.view_layer.update()
    return source


def world_vertices(obj) -> np.ndarray:
    co = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", co)
    m = np.array(obj.matrix_world)
    return co.reshape(-1, 3) @ m[:3, :3].T + m[:3, 3]


def check_tire_import(objects, source, report: dict) -> None:
    """The imported TIRE result is what the report describes, where the source is."""
    refined, splats = objects
    assert (refined.name, splats.name) == (f"{source.name}_refined", f"{source.name}_splats")
    # the artist's geometry (the cube, triangulated), on the source: every corner where a source corner is
    assert len(refined.data.polygons) == 12
    np.testing.assert_allclose(np.array(refined.matrix_world), np.array(source.matrix_world), atol=1e-6)
    ours, theirs = world_vertices(refined), world_vertices(source)
    gap = np.linalg.norm(ours[:, None] - theirs[None], axis=2)
    assert gap.min(1).max() < 1e-4 and gap.min(0).max() < 1e-4, gap.min(1).max()
    image = next(n.image for n in refined.data.materials[0].node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
    assert tuple(image.size) == tuple(TIRE_SMALL["bake"]["texture_size"])
    # the splats: the report's count, fitted on the source's surface (within its box, grown by a tenth)
    assert len(splats.data.vertices) == report["gaussians"] > 0
    lo, hi = theirs.min(0), theirs.max(0)
    centres = world_vertices(splats)
    margin = 0.1 * (hi - lo)
    assert np.all((centres >= lo - margin) & (centres <= hi + margin)), (centres.min(0), centres.max(0), lo, hi)
    assert source.hide_get() and source.hide_render


def test_tire_job_from_blender_objects_to_imported_results(connected):
    """TIRE (the backend's own pipeline, torch and all) from Blender objects to the mesh and splats imported
    when the results arrive, with the timer driven by hand."""
    torch_backend()
    assert "tire" in session.pipelines(), "LIKENESS3D_TEST_SERVER_PYTHON is set but its backend does not offer tire"
    source = moved_subject_scene(2, (1.5, -2.0, 0.75), 0.6)
    props = bpy.context.scene.likeness
    props.pipeline, props.quality, props.config_json = "tire", "DRAFT", json.dumps(TIRE_SMALL)
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    states = pump_recording_states(600)
    item = active_job()
    assert item.state == "DONE", item.message
    assert "RUNNING" in states and states == sorted(states, key=LIFECYCLE.index), states
    assert sorted(item.artifacts.split(",")) == TIRE_ARTIFACTS
    report = json.loads((Path(item.result_dir) / "report.json").read_text())
    assert report["pipeline"] == "tire" and report["asset"] == "Cube" and report["class_word"] == "box"
    assert report["views"]["references"] == 2 and "classical OpenCV fallback" in report["inpainter"]
    assert item.imported and item.text == "imported Cube_refined, Cube_splats"
    check_tire_import([bpy.data.objects["Cube_refined"], bpy.data.objects["Cube_splats"]], source, report)


def test_job_results_import_through_the_job_list(connected, tmp_path):
    """A finished TIRE job's results through the job list: Import reads the fetched files (and says when they
    are gone), Fetch downloads them again from the backend, and both import at the source."""
    torch_backend()
    source = moved_subject_scene(1, (-0.5, 3.0, -1.0), -1.1)
    props = bpy.context.scene.likeness
    props.pipeline, props.quality, props.config_json = "tire", "DRAFT", json.dumps(TIRE_SMALL)
    assert bpy.ops.likeness.refine() == {"FINISHED"}  # background mode: blocks until imported
    item = active_job()
    assert item.state == "DONE" and item.imported, item.message
    job_id, folder = item.job_id, Path(item.result_dir)
    report = json.loads((folder / "report.json").read_text())

    def clear_imports():
        for name in ("Cube_refined", "Cube_splats"):
            bpy.data.objects.remove(bpy.data.objects[name])
        source.hide_set(False)
        source.hide_render = False

    clear_imports()
    for path in folder.iterdir():
        path.unlink()
    with pytest.raises(RuntimeError, match="fetched files are gone"):
        bpy.ops.likeness.job_import()
    assert "Cube_refined" not in bpy.data.objects

    # Fetch: the backend's files again, byte for byte, imported as they arrive
    assert bpy.ops.likeness.job_fetch() == {"FINISHED"}
    assert sorted(p.name for p in folder.iterdir() if not p.name.endswith("_basecolor.png")) == TIRE_ARTIFACTS
    with Client(connected.address, timeout=30) as side:
        for name in TIRE_ARTIFACTS:
            assert (folder / name).read_bytes() == side.fetch(job_id, name), name
    assert active_job().imported
    check_tire_import([bpy.data.objects["Cube_refined"], bpy.data.objects["Cube_splats"]], source, report)

    # Import: the fetched files once more, from the folder
    clear_imports()
    assert bpy.ops.likeness.job_import() == {"FINISHED"}
    check_tire_import([bpy.data.objects["Cube_refined"], bpy.data.objects["Cube_splats"]], source, report)


CUSTOMIZE_SMALL = {"models": "tiny", "resolution": 32, "dreambooth": {"resolution": 32, "steps": [1, 1, 1, 1]},
                   "coarse": {"steps": 2, "resolution": 32, "gaussians": 300}, "sds": {"resolution": 32},
                   "refine": {"points": 800, "steps": 4}, "bake_azimuths": 4, "bake": {"texture_size": [64, 64]},
                   "turntable_views": 2}


def test_customize_job_from_blender_picks_the_pipeline(connected):
    """Customize-It-3D chosen in the panel, tiny diffusion models (the report says its output is noise)."""
    torch_backend()
    assert "customize" in session.pipelines(), "LIKENESS3D_TEST_SERVER_PYTHON is set but its backend lacks customize"
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    props.pipeline, props.quality, props.config_json = "customize", "DRAFT", json.dumps(CUSTOMIZE_SMALL)
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    pump_recording_states(900)
    item = active_job()
    assert item.state == "DONE", item.message
    assert {"mesh.glb", "report.json", "splats.ply"} <= set(item.artifacts.split(","))
    report = json.loads((Path(item.result_dir) / "report.json").read_text())
    assert report["pipeline"] == "customize"
    assert item.imported and item.text == "imported Cube_refined, Cube_splats"
    assert len(bpy.data.objects["Cube_refined"].data.polygons) == 12


def test_backend_errors_are_reports_with_the_typed_message(connected):
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    props.pipeline = "nonexistent"
    with pytest.raises(RuntimeError, match="UnknownPipeline: no pipeline 'nonexistent'"):
        bpy.ops.likeness.refine()
    assert active_job().state == "FAILED" and active_job().message.startswith("UnknownPipeline")

    props.pipeline, props.config_json = "inspect", '{"bogus": 1}'
    with pytest.raises(RuntimeError, match="BadMessage: config: unknown key 'bogus'"):
        bpy.ops.likeness.refine()

    props.config_json = '{"overlay_points": -5}'  # rejected by the pipeline config's own check
    with pytest.raises(RuntimeError, match=r"config.overlay_points must be an integer in \[0, 1e7\], got -5"):
        bpy.ops.likeness.refine()

    props.config_json = "{not json"
    with pytest.raises(RuntimeError, match="extra settings are not valid JSON"):
        bpy.ops.likeness.refine()


def test_cancel_a_running_job(connected):
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    props.pipeline, props.config_json = "selftest", '{"steps": 400, "step_seconds": 0.05}'
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    assert pump(lambda: active_job().state == "RUNNING", 30)
    assert bpy.ops.likeness.cancel.poll()
    assert bpy.ops.likeness.cancel() == {"FINISHED"}
    assert pump(lambda: active_job().finished, 30)
    item = active_job()
    assert item.state == "CANCELLED" and item.message.startswith("Cancelled")
    assert 0 < item.step < 400


def test_reopening_the_blend_reattaches_unfinished_jobs(connected, tmp_path):
    """Jobs saved unfinished in a .blend are followed again after reopening it: a running one (cancelled
    after the reconnect) and one still queued behind it, which can only run, and send its events, after the
    reattach."""
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    props.pipeline, props.config_json = "selftest", '{"steps": 2000, "step_seconds": 0.05}'  # 100 s
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    assert pump(lambda: active_job().state == "RUNNING", 60)
    running = active_job().job_id
    props.config_json = '{"steps": 5, "step_seconds": 0.05}'
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    assert pump(lambda: active_job().state == "QUEUED", 60)  # the one CPU worker is busy with the first
    queued = active_job().job_id
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    session.close()  # Blender quits, the jobs go on on the backend

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    job = bpy.context.scene.likeness.job
    assert job(running).state == "RUNNING" and job(queued).state == "QUEUED"
    preferences.get().address = connected.address
    assert bpy.ops.likeness.connect(mode="ASYNC") == {"FINISHED"}  # connecting reattaches
    assert pump(lambda: bpy.context.window_manager.likeness.state == "connected", 60)
    # the attach requests went out before this cancel (one worker thread, in order): the queued job is
    # still waiting for the worker when it is reattached
    assert bpy.ops.likeness.cancel(job_id=running) == {"FINISHED"}
    assert pump(lambda: job(running).finished and job(queued).finished, 60)
    assert job(running).state == "CANCELLED" and "cancelled by request" in job(running).message
    item = job(queued)  # queued when reattached: its progress and result came live through the new connection
    assert item.state == "DONE" and item.artifacts == "selftest.json", item.message
    assert item.step == item.total == 5 and item.text == "fetched selftest.json"
