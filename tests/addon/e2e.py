"""What the add-on's end-to-end tests share: a real backend process per module, the add-on connected to it,
and the timer callback pumped by hand (Blender's timers never fire in the bpy module)."""

import os
import time

import bpy
import pytest

from backend_process import Backend
from likeness3d.addon import jobs, preferences, session


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


def pump(predicate, timeout: float) -> bool:
    """Call the timer callback by hand, as Blender's timer would, until `predicate()`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        assert session.tick() is not None, "the timer stopped while work was pending"
        time.sleep(0.01)
    return True


def active_job():
    props = bpy.context.scene.likeness
    return jobs.find(props.active_job)[1]


LIFECYCLE = ["SUBMITTING", "QUEUED", "RUNNING", "FETCHING", "DONE"]


def pump_recording_states(timeout: float) -> list[str]:
    """pump until the active job is finished; the states it showed between ticks, in order, without repeats."""
    seen = [active_job().state]

    def finished():
        state = active_job().state
        if state != seen[-1]:
            seen.append(state)
        return active_job().finished

    assert pump(finished, timeout), f"the job did not finish within {timeout} s: {seen}"
    return seen


def torch_backend() -> None:
    """Skip unless the backend runs on a Python with torch (scripts/test.sh sets LIKENESS3D_TEST_SERVER_PYTHON)."""
    if not os.environ.get("LIKENESS3D_TEST_SERVER_PYTHON"):
        pytest.skip("the backend runs on Blender's Python, which lacks torch; "
                    "scripts/test.sh points LIKENESS3D_TEST_SERVER_PYTHON at .venv")
