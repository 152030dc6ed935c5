"""Restarts: a client connected across a server restart on the same address gets every job's outcome (event
numbers go on from where the last server left them), and a killed server's worker dies with it and never
writes into a job the next server owns."""

import multiprocessing as mp
import os
import time

import pytest

from likeness3d.backend.context import JobContext
from likeness3d.backend.jobs import JobManager
from likeness3d.backend.store import JobStore
from likeness3d.backend.workers import worker_main
from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import Internal
from likeness3d.protocol.messages import Progress
from servers import Served, process_gone, wait_for

SLOW = {"steps": 4000, "step_seconds": 0.05, "preview_size": 4}


def _progress(job, n, timeout=60):
    """Wait until the job has sent `n` progress events; return the last."""
    seen = None
    for ev in job.events(timeout=timeout):
        assert isinstance(ev, Progress), f"the job ended early: {ev}"
        seen = ev
        if ev.step >= n:
            return seen
    raise AssertionError("no progress")


def _snapshot(folder):
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("how", ["kill -9", "SIGTERM"])
def test_a_client_connected_across_a_restart_gets_every_outcome(tmp_path, asset, how):
    store, address = tmp_path / "store", f"ipc://{tmp_path}/backend.sock"
    first = Served(store, tmp_path / "first.log", listen=address)
    second = None
    try:
        with Client(address, timeout=30) as c:
            running = c.submit("selftest", asset, SLOW)
            last = _progress(running, 5)
            queued = [c.submit("inspect", asset), c.submit("selftest", asset, {"steps": 3, "step_seconds": 0.0})]
            assert all(c.status(q.id)["state"] == "queued" for q in queued)
            if how == "kill -9":
                first.kill()
            else:
                assert first.stop() == 0
            wait_for(lambda: c.state == "lost", 60, "the client noticing the backend is gone")
            second = Served(store, tmp_path / "second.log", listen=address)
            with pytest.raises(Internal, match="the server stopped while the job ran"):
                running.wait(60)
            assert running.final.seq > last.seq  # numbered after every event the client saw
            assert queued[0].wait(60).artifacts[0].name == "inspect.json"
            assert queued[1].wait(60).artifacts[0].name == "selftest.json"
            # attaching again replays each final event with the seq the client saw
            for h in [running, *queued]:
                assert c.status(h.id)["state"] in ("failed", "done")
    finally:
        for s in (first, second):
            if s is not None and s.alive():
                s.stop()


def test_event_numbers_go_on_across_restarts(tmp_path, asset):
    store = JobStore(tmp_path)
    mgr = JobManager(store)
    rec = mgr.submit("selftest", {}, asset)
    mgr.started(rec.id, 0)
    seqs = [mgr.progress(rec.id, "s", i, 9, "", 0.0, None).seq for i in range(7)]
    assert seqs == list(range(1, 8))
    again = JobManager(JobStore(tmp_path))  # the server died mid-job
    final = again.get(rec.id).final
    assert final.code == "internal" and final.seq == 8
    third = JobManager(JobStore(tmp_path))  # and once more: the final event keeps its number
    assert third.get(rec.id).final.seq == 8


def test_a_killed_servers_worker_dies_with_it_and_writes_nothing(tmp_path, asset):
    store = tmp_path / "store"
    first = Served(store, tmp_path / "first.log")
    with Client(first.address, timeout=30) as c:
        # a stuck pipeline: no progress after the first step, no cancel checks, writes its artifact at the end
        job = c.submit("selftest", asset, {"steps": 1200, "step_seconds": 0.1, "honour_cancel": False, "preview_size": 4})
        _progress(job, 1)
        worker = c.status()["workers"][0]["pid"]
    t0 = time.monotonic()
    first.kill()
    wait_for(lambda: process_gone(worker), 30, f"worker {worker} ending after its server was killed")
    print(f"worker gone {time.monotonic() - t0:.3f} s after kill -9 of its server")
    second = Served(store, tmp_path / "second.log")
    try:
        folder = store / "jobs" / job.id
        with Client(second.address, timeout=30) as c:
            assert c.status(job.id)["state"] == "failed"
            before = _snapshot(folder)
            assert c.submit("selftest", asset, {"steps": 20, "step_seconds": 0.05}).wait(60)
            assert c.status(job.id)["state"] == "failed"
        assert _snapshot(folder) == before
        assert not (folder / "artifacts" / "selftest.json").exists()
    finally:
        second.stop()


def _ready(conn, timeout=120):
    assert conn.poll(timeout), "the worker did not start"
    msg = conn.recv()
    assert msg[0] == "ready", msg
    return msg


def test_a_worker_of_an_earlier_owner_writes_nothing(tmp_path, asset):
    """A worker whose server no longer holds the store ends at its first write, leaving the job untouched."""
    from likeness3d.backend.owner import StoreBusy, claim
    from likeness3d.backend.store import StaleOwner
    from likeness3d.backend.workers import STALE_EXIT

    old = claim(tmp_path)
    job = JobStore(tmp_path).create("selftest", {}, asset)
    old.release()
    new = claim(tmp_path)  # the next server
    try:
        assert new.epoch > old.epoch
        with pytest.raises(StoreBusy, match="in use by another server"):
            claim(tmp_path)
        folder = tmp_path / "jobs" / job
        before = _snapshot(folder)
        parent, child = mp.get_context("spawn").Pipe()
        proc = mp.get_context("spawn").Process(target=worker_main, args=(child, "cpu", str(tmp_path), old.epoch, None))
        proc.start()
        child.close()
        _ready(parent)
        parent.send(("run", job, "selftest", {"steps": 2, "step_seconds": 0.0}))
        proc.join(120)
        assert proc.exitcode == STALE_EXIT
        assert _snapshot(folder) == before
        # the same handle checks before every write: a log line and an artifact
        stale = JobStore(tmp_path, epoch=old.epoch)
        with pytest.raises(StaleOwner):
            stale.log(job, "late")
        ctx = JobContext(folder / "artifacts", folder / "work", guard=stale.check_owner)
        with pytest.raises(StaleOwner):
            ctx.add_artifact("late.json", b"{}")
        assert not (folder / "artifacts" / "late.json").exists()
        assert JobStore(tmp_path, epoch=new.epoch).log(job, "the owner writes")
    finally:
        new.release()


def test_a_second_server_on_a_store_in_use_says_so(tmp_path):
    store = tmp_path / "store"
    first = Served(store, tmp_path / "first.log")
    try:
        with pytest.raises(RuntimeError, match="did not start") as e:
            Served(store, tmp_path / "second.log", timeout=60)
        assert f"the job store {store} is in use by another server (pid {first.proc.pid})" in str(e.value)
        assert "Traceback" not in (tmp_path / "second.log").read_text()
        assert first.alive()
    finally:
        first.stop()
