"""Full jobs from Blender objects through a real backend process, with the timer callback driven by hand
(as Blender's timer would) and, in background mode, through the blocking operators."""

import json
import os
import time
from pathlib import Path

import bpy
import numpy as np
import pytest

from backend_process import Backend
from files import grid_mesh, png_bytes, random_splats, write_glb, write_ply
from likeness3d.addon import jobs, preferences, session
from scenes import subject_scene


@pytest.fixture(scope="module")
def backend(tmp_path_factory):
    server = Backend(tmp_path_factory.mktemp("store") / "store").start()
    yield server
    server.stop()


@pytest.fixture
def connected(backend, tmp_path):
    """The add-on pointed at the backend, connected (hello answered), results under tmp_path."""
    prefs = preferences.get()
    prefs.address, prefs.timeout, prefs.results_dir = backend.address, 10.0, str(tmp_path / "results")
    assert bpy.ops.likeness.connect(mode="ASYNC") == {"FINISHED"}
    assert pump(lambda: bpy.context.window_manager.likeness.state == "connected", 30)
    return backend


def pump(predicate, timeout: float, record=None) -> bool:
    """Call the timer callback by hand until `predicate()`; `record(seconds)` gets each tick's duration."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        t0 = time.perf_counter()
        interval = session.tick()
        if record is not None:
            record(time.perf_counter() - t0)
        assert interval is not None, "the timer stopped while work was pending"
        time.sleep(0.01)
    return True


def active_job():
    props = bpy.context.scene.likeness
    return jobs.find(props.active_job)[1]


def test_connect_fills_the_connection_state(connected):
    rt = bpy.context.window_manager.likeness
    assert rt.state == "connected" and rt.version.startswith("likeness3d")
    assert "inspect" in rt.pipelines and rt.gpus == "none (CPU)"
    assert "inspect" in session.pipelines()


def test_inspect_job_end_to_end_without_blocking(connected):
    subject_scene(n_refs=2)
    t0 = time.perf_counter()
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    assert time.perf_counter() - t0 < 2.0  # gather + hand-off only; the network is off the main thread
    item = active_job()
    assert item.state == "SUBMITTING" and item.source.name == "Cube"

    states, ticks = set(), []

    def done():
        job = active_job()
        states.add(job.state)
        return job.finished

    assert pump(done, 60, ticks.append)
    item = active_job()
    assert item.state == "DONE", item.message
    assert not item.job_id.startswith("pending-")
    assert {"QUEUED", "RUNNING", "FETCHING"} & states  # it went through the live states
    assert max(ticks) < 0.5, f"a timer tick took {max(ticks):.3f} s"
    assert item.step == item.total == 3 and item.stage == "inspect"

    # the result: inspect.json fetched into the job's folder, summarised in the job list
    path = Path(item.result_dir) / "inspect.json"
    report = json.loads(path.read_text())
    assert report["mesh"]["vertices"] == 8 and report["mesh"]["faces"] == 12
    assert report["class_word"] == "box" and len(report["references"]) == 2
    assert report["references_seeing_mesh"] == ["photo0", "photo1"]
    assert item.text == "8 vertices, 12 faces; 2 of 2 references see the mesh"
    # with torch in the backend, inspect also renders the mesh from each reference camera
    renders = [] if "renders_skipped" in report else ["reference_00.png", "reference_01.png"]
    assert sorted(item.artifacts.split(",")) == ["inspect.json"] + renders

    # each reference sent an overlay preview: the preview image holds the last one, at its size
    preview = bpy.context.scene.likeness.preview
    assert preview is not None and tuple(preview.size) == (64, 48)
    px = np.empty(64 * 48 * 4, np.float32)
    preview.pixels.foreach_get(px)
    magenta = (px.reshape(-1, 4)[:, :3] == (1.0, 0.0, 1.0)).all(axis=1)
    assert magenta.any()  # projected vertices are drawn in magenta on the photo


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
    assert bpy.ops.likeness.disconnect.poll() and bpy.ops.likeness.disconnect() == {"FINISHED"}
    assert bpy.context.window_manager.likeness.state == "disconnected" and session.client() is None


TIRE_SMALL = {"resolution": 32, "azimuths": 4, "elevations_deg": [0.0], "gaussians": 300, "fit_steps": 6,
              "fit_resolution": 24, "turntable_views": 2, "texture_size": 64}


def test_tire_job_from_blender_objects_to_imported_results(connected):
    """TIRE (the backend's own pipeline, torch and all) from Blender objects to imported mesh and splats,
    with the timer driven by hand: no tick blocks."""
    if "tire" not in session.pipelines():
        if os.environ.get("LIKENESS3D_TEST_SERVER_PYTHON"):
            pytest.fail("LIKENESS3D_TEST_SERVER_PYTHON is set but its backend does not offer tire")
        pytest.skip("this backend's Python lacks torch; scripts/test.sh points LIKENESS3D_TEST_SERVER_PYTHON at .venv")
    source = subject_scene(n_refs=2)
    props = bpy.context.scene.likeness
    props.pipeline, props.quality, props.config_json = "tire", "DRAFT", json.dumps(TIRE_SMALL)
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    ticks = []
    assert pump(lambda: active_job().finished, 300, ticks.append)
    item = active_job()
    assert item.state == "DONE", item.message
    assert max(ticks) < 0.5, f"a timer tick took {max(ticks):.3f} s"
    assert {"mesh.glb", "splats.ply", "report.json", "sheet.png"} <= set(item.artifacts.split(","))
    report = json.loads((Path(item.result_dir) / "report.json").read_text())
    assert "classical OpenCV fallback" in report["inpainter"]
    assert bpy.ops.likeness.job_import() == {"FINISHED"}
    refined, splats = bpy.data.objects["Cube_refined"], bpy.data.objects["Cube_splats"]
    assert len(refined.data.polygons) == 12 and refined.data.materials[0].node_tree
    assert len(splats.data.vertices) == report["gaussians"]
    # the refined mesh lands on the source: same world-space bounding box
    def world_bounds(obj):
        co = np.empty(len(obj.data.vertices) * 3, np.float32)
        obj.data.vertices.foreach_get("co", co)
        co = co.reshape(-1, 3) @ np.array(obj.matrix_world)[:3, :3].T + np.array(obj.matrix_world)[:3, 3]
        return co.min(0), co.max(0)
    for a, b in zip(world_bounds(refined), world_bounds(source)):
        np.testing.assert_allclose(a, b, atol=1e-4)


CUSTOMIZE_SMALL = {"models": "tiny", "resolution": 32, "dreambooth_resolution": 32, "dreambooth_steps": [1, 1, 1, 1],
                   "coarse_steps": 2, "coarse_resolution": 32, "gaussians": 300, "sds_resolution": 32, "points": 800,
                   "refine_steps": 4, "bake_azimuths": 4, "texture_size": 64, "turntable_views": 2}


def test_customize_job_from_blender_picks_the_pipeline(connected):
    """Customize-It-3D chosen in the panel, tiny diffusion models (the report says its output is noise)."""
    if "customize" not in session.pipelines():
        if os.environ.get("LIKENESS3D_TEST_SERVER_PYTHON"):
            pytest.fail("LIKENESS3D_TEST_SERVER_PYTHON is set but its backend does not offer customize")
        pytest.skip("this backend's Python lacks torch; scripts/test.sh points LIKENESS3D_TEST_SERVER_PYTHON at .venv")
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    props.pipeline, props.quality, props.config_json = "customize", "DRAFT", json.dumps(CUSTOMIZE_SMALL)
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    ticks = []
    assert pump(lambda: active_job().finished, 600, ticks.append)
    item = active_job()
    assert item.state == "DONE", item.message
    assert max(ticks) < 0.5, f"a timer tick took {max(ticks):.3f} s"
    assert {"mesh.glb", "report.json"} <= set(item.artifacts.split(","))
    report = json.loads((Path(item.result_dir) / "report.json").read_text())
    assert report["pipeline"] == "customize"
    assert bpy.ops.likeness.job_import() == {"FINISHED"}
    assert len(bpy.data.objects["Cube_refined"].data.polygons) == 12


def test_job_results_import_through_the_job_list(connected, tmp_path):
    """Result import as a job delivers it: geometry artifacts in the job's folder, imported at the source."""
    source = subject_scene(n_refs=1)
    assert bpy.ops.likeness.refine() == {"FINISHED"}
    item = active_job()
    folder = Path(item.result_dir)
    vertices, faces, uv = grid_mesh(8)
    write_glb(folder / "mesh.glb", vertices, faces, uv, png_bytes(np.full((8, 8, 4), 255, np.uint8)))
    write_ply(folder / "splats.ply", random_splats(1000, 1))
    item.artifacts += ",mesh.glb,splats.ply"
    assert bpy.ops.likeness.job_import() == {"FINISHED"}
    refined = bpy.data.objects["Cube_refined"]
    splats = bpy.data.objects["Cube_splats"]
    assert len(refined.data.polygons) == len(faces) and refined.data.materials[0].node_tree
    assert len(splats.data.vertices) == 1000 and "f_rest_8" in splats.data.attributes
    assert source.hide_get() and active_job().imported


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
    with pytest.raises(RuntimeError, match="overlay_points must be in"):
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
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    props.pipeline, props.config_json = "selftest", '{"steps": 20, "step_seconds": 0.1}'
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    assert pump(lambda: active_job().state == "RUNNING", 30)
    job_id = active_job().job_id
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    session.close()  # Blender quits, the job keeps running on the backend

    bpy.ops.wm.open_mainfile(filepath=str(blend))
    item = bpy.context.scene.likeness.job(job_id)
    assert item is not None and item.state == "RUNNING"
    preferences.get().address = connected.address
    assert bpy.ops.likeness.connect(mode="ASYNC") == {"FINISHED"}  # connecting reattaches
    assert pump(lambda: bpy.context.scene.likeness.job(job_id).finished, 60)
    item = bpy.context.scene.likeness.job(job_id)
    assert item.state == "DONE" and item.artifacts == "selftest.json", item.message


def test_a_lost_backend_is_a_state_not_a_traceback(tmp_path, capsys):
    server = Backend(tmp_path / "store").start()
    try:
        prefs = preferences.get()
        prefs.address, prefs.timeout, prefs.results_dir = server.address, 3.0, str(tmp_path / "results")
        assert bpy.ops.likeness.connect() == {"FINISHED"}
        rt = bpy.context.window_manager.likeness
        assert rt.state == "connected"
        server.pause()
        assert pump(lambda: rt.state == "lost", 15)
        assert "stopped answering" in rt.message
        subject_scene(n_refs=1)
        with pytest.raises(RuntimeError, match="Timeout: no reply to submit"):
            bpy.ops.likeness.refine()  # a clear report, and the job item says why
        assert active_job().state == "FAILED" and active_job().message.startswith("Timeout")
        server.resume()
        assert pump(lambda: rt.state == "connected", 15)
        assert "reconnected" in rt.message
        assert "Traceback" not in capsys.readouterr().err
    finally:
        server.resume()
        server.stop()


EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "headless_refine.py"
BLENDER_CLI = Path(__file__).resolve().parent / "blender_cli.py"


@pytest.mark.parametrize("how", ["api", "operator"])
def test_headless_example_runs_a_job_and_saves_the_result(connected, tmp_path, how):
    import subprocess
    import sys

    subject_scene(n_refs=2)
    for ref in bpy.context.scene.likeness.references:
        ref.image.use_fake_user = True
    bpy.context.scene.likeness.references.clear()  # the script names them on its command line
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    out = tmp_path / "refined.blend"
    args = [sys.executable, str(BLENDER_CLI), str(blend), str(EXAMPLE), "--", "--target", "Cube",
            "--reference", "photo0:RefCam0", "--reference", "photo1:RefCam1", "--class-word", "box",
            "--address", connected.address, "--out", str(out)] + (["--operator"] if how == "operator" else [])
    run = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 of 2 references see the mesh" in run.stdout and f"saved {out}" in run.stdout

    bpy.ops.wm.open_mainfile(filepath=str(out))
    item = bpy.context.scene.likeness.jobs[-1]
    assert item.state == "DONE" and item.pipeline == "inspect" and len(bpy.context.scene.likeness.references) == 2
    assert (Path(item.result_dir) / "inspect.json").is_file()
    assert Path(item.result_dir).is_relative_to(tmp_path)  # "//likeness3d_results": next to the .blend

    failing = args[: args.index("--out")] + ["--pipeline", "nope", "--out", str(out)]
    run = subprocess.run(failing, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "UnknownPipeline" in run.stderr and "'nope'" in run.stderr


def test_python_api_returns_the_outcome_and_raises_typed_errors(connected):
    from likeness3d.addon import api
    from likeness3d.protocol.errors import UnknownPipeline

    target = subject_scene(n_refs=1)
    outcome = api.refine(target=target, pipeline="inspect", quality="DRAFT", config={"min_alpha": 0.25})
    assert outcome.files[0].name == "inspect.json" and outcome.files[0].is_file()
    assert outcome.summary.endswith("1 of 1 references see the mesh") and outcome.objects == []
    with pytest.raises(UnknownPipeline, match="no pipeline 'nope'"):
        api.refine(pipeline="nope")


def test_opening_a_file_while_connected_keeps_the_connection_and_fails_stale_submissions(connected, tmp_path):
    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    stale = props.jobs.add()  # a job saved while its asset was still on the way: never accepted
    stale.job_id, stale.state = "pending-0badf00d", "SUBMITTING"
    blend = tmp_path / "saved.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    bpy.ops.wm.open_mainfile(filepath=str(blend))
    rt = bpy.context.window_manager.likeness
    assert rt.state == "connected" and "inspect" in rt.pipelines
    item = bpy.context.scene.likeness.jobs[0]
    assert item.state == "FAILED" and "saved before the backend accepted" in item.message
    assert bpy.ops.likeness.refine() == {"FINISHED"}  # the session still works
