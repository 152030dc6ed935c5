"""Headless use of the add-on through a real backend: the example script (blender -b -P or the bpy module),
the Python API, Auto quality on CPU and GPU backends, a backend that is not there, files opened while connected."""

from pathlib import Path

import bpy
import pytest

from backend_process import Backend
from likeness3d.addon import preferences, session
from e2e import active_job, backend, connected, pump, pump_recording_states  # noqa: F401 (fixtures)
from scenes import subject_scene


def test_a_lost_backend_is_a_state_not_a_traceback(tmp_path, capsys):
    server = Backend(tmp_path / "store").start()
    try:
        prefs = preferences.get()
        prefs.address, prefs.timeout, prefs.results_dir = server.address, 3.0, str(tmp_path / "results")
        assert bpy.ops.likeness.connect() == {"FINISHED"}
        rt = bpy.context.window_manager.likeness
        assert rt.state == "connected"
        server.pause()
        assert pump(lambda: rt.state == "lost", 60)  # the heartbeat gives up after about 4 s
        assert "stopped answering" in rt.message
        subject_scene(n_refs=1)
        with pytest.raises(RuntimeError, match="Timeout: no reply to submit"):
            bpy.ops.likeness.refine()  # a clear report, and the job item says why
        assert active_job().state == "FAILED" and active_job().message.startswith("Timeout")
        server.resume()
        assert pump(lambda: rt.state == "connected", 60)  # the next heartbeat, within about 1 s
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


@pytest.mark.parametrize("how", ["api", "operator"])
def test_headless_example_says_at_once_when_no_backend_answers(tmp_path, how):
    import socket
    import subprocess
    import sys

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{s.getsockname()[1]}"
    subject_scene(n_refs=1)
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    args = [sys.executable, str(BLENDER_CLI), str(blend), str(EXAMPLE), "--", "--target", "Cube", "--class-word", "box",
            "--address", address, "--out", str(tmp_path / "out.blend")] + (["--operator"] if how == "operator" else [])
    run = subprocess.run(args, capture_output=True, text=True, timeout=25)  # the client used to wait 30 s
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"nothing answers at {address}" in run.stderr and f"likeness3d serve --listen {address}" in run.stderr
    assert "lost" not in run.stderr and "Traceback" not in run.stderr


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
    assert active_job().state == "DONE" and active_job().text.endswith("1 of 1 references see the mesh")


def test_auto_quality_sends_the_draft_settings_to_a_cpu_backend_and_says_so(connected):
    """The test backend has no GPU: Auto (the default) picks Draft, the panel and the operator say so, and the
    job runs with the draft config (selftest: 3 steps instead of its default 10)."""
    from likeness3d.addon import presets
    from likeness3d.addon.request import build_job_config, quality_note
    from test_panels import draw_all

    subject_scene(n_refs=1)
    props = bpy.context.scene.likeness
    assert props.quality == "AUTO" and session.backend_has_gpu() is False
    props.pipeline = "selftest"
    assert build_job_config(bpy.context.scene) == presets.PRESETS["selftest"]["DRAFT"] == {"steps": 3}
    note = "Auto: Draft settings, the backend has no GPU (the full settings would run for hours)"
    assert quality_note(bpy.context.scene) == note and note in draw_all()
    props.quality = "STANDARD"
    assert build_job_config(bpy.context.scene) == {} and quality_note(bpy.context.scene) == ""
    props.quality = "AUTO"
    assert bpy.ops.likeness.refine(mode="ASYNC") == {"FINISHED"}
    pump_recording_states(60)
    item = active_job()
    assert item.state == "DONE", item.message
    assert item.total == 3


def test_auto_quality_before_a_hello_and_on_a_gpu_backend():
    from likeness3d.addon import presets

    assert presets.effective_quality("AUTO", None) == "STANDARD"
    assert presets.effective_quality("AUTO", True) == "STANDARD"
    assert presets.effective_quality("AUTO", False) == "DRAFT"
    assert presets.effective_quality("HIGH", False) == "HIGH"  # the user's own choice stands


def test_headless_example_runs_on_the_bpy_module_and_prints_progress(connected, tmp_path):
    """No blender binary: `python headless_refine.py --blend FILE -- ...` with the bpy module, as HEADLESS.md
    says; the script prints a line as the job moves, and the Auto quality note for this CPU backend."""
    import subprocess
    import sys

    subject_scene(n_refs=2)
    blend = tmp_path / "scene.blend"
    bpy.ops.wm.save_as_mainfile(filepath=str(blend))
    out = tmp_path / "refined.blend"
    args = [sys.executable, str(EXAMPLE), "--blend", str(blend), "--", "--target", "Cube", "--class-word", "box",
            "--pipeline", "selftest", "--address", connected.address, "--out", str(out)]
    run = subprocess.run(args, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "likeness3d: Auto: Draft settings, the backend has no GPU (the full settings would run for hours)" in lines
    running = [line for line in lines if " RUNNING selftest " in line]
    # it prints each step it sees (a poll may miss one on a busy machine): of 3 Draft steps, in order
    steps = [int(line.split(" RUNNING selftest ")[1].split("/")[0]) for line in running]
    assert running and all(line.split(" RUNNING selftest ")[1].split(" ")[0].endswith("/3") for line in running), lines
    assert steps == sorted(steps) and steps[-1] >= 2, lines
    assert any(" DONE" in line for line in lines) and f"likeness3d: saved {out}" in lines
