"""Faults: a killed worker, a restarted server, a dropped client, cancel (honoured and enforced)."""

import os
import signal
import time

import pytest

from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import Cancelled, WorkerCrashed
from likeness3d.protocol.messages import Progress

SLOW = {"steps": 400, "step_seconds": 0.05, "preview_size": 4}


def _first_progress(job, timeout=30):
    for ev in job.events(timeout=timeout):
        if isinstance(ev, Progress):
            return ev
    raise AssertionError("the job ended before its first progress event")


def _wait_idle(client, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w = client.status()["workers"][0]
        if w["state"] == "idle":
            return w
        time.sleep(0.02)
    raise AssertionError(f"worker not idle within {timeout} s: {client.status()['workers']}")


def test_kill_9_worker_mid_job(server, asset):
    with Client(server.address, timeout=20) as c:
        job = c.submit("selftest", asset, SLOW)
        _first_progress(job)
        pid = c.status()["workers"][0]["pid"]
        os.kill(pid, signal.SIGKILL)
        with pytest.raises(WorkerCrashed, match="died with exit code -9"):
            job.wait(300)
        assert c.status(job.id)["state"] == "failed"
        # the worker was replaced; the next job runs
        nxt = c.submit("inspect", asset)
        assert nxt.wait(300).artifacts[0].name == "inspect.json"
        w = c.status()["workers"][0]
        assert w["pid"] != pid and w["restarts"] == 1
    assert server.alive()


def test_restart_keeps_finished_jobs_fetchable(server_factory, asset, tmp_path):
    first = server_factory()
    with Client(first.address, timeout=20) as c:
        done = c.submit("inspect", asset)
        done.wait(300)
        expected = c.fetch(done.id, "inspect.json")
        running = c.submit("selftest", asset, SLOW)
        queued = c.submit("inspect", asset, {"overlay_points": 5})
        _first_progress(running)
    assert first.stop() == 0
    second = server_factory()  # same store
    with Client(second.address, timeout=20) as c:
        listed = {j["job"]: j for j in c.list()}
        assert listed[done.id]["state"] == "done"
        assert listed[running.id]["state"] == "failed"
        assert "server stopped while the job ran" in listed[running.id]["error"]["message"]
        # a job still queued at shutdown runs after the restart
        assert c.attach(queued.id).wait(300).artifacts[0].name == "inspect.json"
        assert c.fetch(done.id, "inspect.json") == expected
        paths = c.fetch_all(done.id, tmp_path / "again")
        assert paths[0].read_bytes() == expected
        # attaching to a finished job replays its result
        assert c.attach(done.id).wait(300).artifacts[0].name == "inspect.json"


def test_dropped_client_job_completes_and_attach_gets_result(server, asset):
    a = Client(server.address, timeout=20)
    job = a.submit("selftest", asset, {"steps": 20, "step_seconds": 0.05})
    _first_progress(job)
    a.close()  # the client goes away mid-job
    with Client(server.address, timeout=20) as b:
        handle = b.attach(job.id)
        result = handle.wait(300)
        assert [x.name for x in result.artifacts] == ["selftest.json"]
        assert b.status(job.id)["state"] == "done"


def test_cancel_honoured_by_the_pipeline_keeps_the_worker(server, asset):
    with Client(server.address, timeout=20) as c:
        job = c.submit("selftest", asset, SLOW)
        _first_progress(job)
        pid = c.status()["workers"][0]["pid"]
        c.cancel(job.id)
        with pytest.raises(Cancelled, match="cancelled by request"):
            job.wait(300)
        w = _wait_idle(c, 30)
        assert w["pid"] == pid and w["restarts"] == 0  # stopped by its own check, not ended by the server
        assert c.status(job.id)["state"] == "cancelled"
        assert c.submit("inspect", asset).wait(300).artifacts[0].name == "inspect.json"


def test_cancel_enforced_when_the_pipeline_ignores_it(server, asset):
    with Client(server.address, timeout=20) as c:
        job = c.submit("selftest", asset, dict(SLOW, honour_cancel=False))
        _first_progress(job)
        pid = c.status()["workers"][0]["pid"]
        t0 = time.monotonic()
        c.cancel(job.id)
        with pytest.raises(Cancelled, match="did not stop in time"):
            job.wait(300)  # grace 1 s, then a kill and a fresh worker: generous bounds for a loaded machine
        w = _wait_idle(c, 30)
        assert w["pid"] != pid and w["restarts"] == 1
        print(f"enforced cancel: worker replaced and idle after {time.monotonic() - t0:.2f} s")


def test_cancel_queued_job(server, asset):
    with Client(server.address, timeout=20) as c:
        running = c.submit("selftest", asset, SLOW)
        queued = c.submit("inspect", asset)
        _first_progress(running)  # the one worker is busy: the second job waits in the queue
        assert c.status(queued.id)["state"] == "queued"
        c.cancel(queued.id)
        with pytest.raises(Cancelled, match="before it started"):
            queued.wait(300)
        c.cancel(running.id)
        with pytest.raises(Cancelled, match="cancelled by request"):
            running.wait(300)
