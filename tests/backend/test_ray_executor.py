"""`serve --executor ray` end to end: a real Ray cluster (`ray start --head`, three logical GPUs on this CPU
host), a real `likeness3d serve` process joining it with two slots, real clients over ZeroMQ. One cluster and
one server for the module (each start takes seconds; the restart test's servers take the third GPU); small
`selftest` jobs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from likeness3d.protocol.client import Client
from likeness3d.protocol.messages import Error, Progress, Result

pytest.importorskip("ray")

from ray_head import RayHead  # noqa: E402
from servers import Served, process_gone, wait_for  # noqa: E402

pytestmark = pytest.mark.slow
WAIT = 300  # a bound on an event, reached only on a failure (a loaded 2-core machine is slow)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    head = RayHead(cpus=2, gpus=3)
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update({k: head.env[k] for k in saved})  # the server joins with the cluster's token
    try:
        yield head
    finally:
        head.stop()
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


def serve(cluster, store: Path, *extra: str) -> Served:
    return Served(store, store.parent / "serve.log", extra=["--executor", "ray", "--ray-address", cluster.address,
                                                            "--gpus", "auto", *extra], timeout=WAIT)


@pytest.fixture(scope="module")
def server(cluster, tmp_path_factory):
    s = serve(cluster, tmp_path_factory.mktemp("ray") / "store", "--ray-slots", "2")
    yield s
    s.stop()


def ready_slots(c: Client) -> list[dict]:
    return wait_for(lambda: [w for w in c.status()["workers"] if w["state"] == "idle"] if all(
        w["state"] != "starting" for w in c.status()["workers"]) else None, WAIT, "every Ray actor up", step=0.2)


def run_to_end(c: Client, asset, config: dict, stamps: dict | None = None) -> tuple[str, list]:
    job = c.submit("selftest", asset, config)
    events = []
    for e in job.events(timeout=WAIT):
        if stamps is not None:
            stamps.setdefault(job.id, []).append(time.monotonic())
        events.append(e)
    return job.id, events


def test_hello_reports_the_clusters_gpus_and_nodes(server):
    with Client(server.address, timeout=60) as c:
        ready_slots(c)
        info = c.hello()
        assert len(info.gpus) == 2 and all("logical GPU" in g for g in info.gpus)
        assert {w["executor"] for w in info.workers} == {"ray"} and all(w["node_ip"] and w["pid"] for w in info.workers)
        # logical GPUs on a host without CUDA: said, not hidden
        assert all(w["device"] == "cpu" and "no CUDA device" in w["note"] for w in info.workers)
        cl = c.status()["cluster"]
        assert cl["slots"] == 2 and cl["slot_resource"] == "GPU"
        assert len(cl["nodes"]) == 1 and cl["nodes"][0]["alive"] and cl["nodes"][0]["gpus"] == 3
    assert "executor: ray, cluster joined at" in server.log()


def test_twenty_jobs_from_five_clients_all_complete(server, asset):
    results: dict[str, list] = {}
    errors: list[BaseException] = []

    def client(k: int) -> None:
        try:
            with Client(server.address, timeout=60) as c:
                for i in range(4):
                    job_id, events = run_to_end(c, asset, {"steps": 2, "step_seconds": 0.0, "preview_size": 8})
                    results[job_id] = events
                    summary = json.loads(c.fetch(job_id, "selftest.json"))  # the artifact came back through Ray
                    assert summary["steps"] == 2 and summary["mesh"]["vertices"] == 4
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT * 2)
    assert not errors, errors
    assert len(results) == 20
    for events in results.values():
        assert isinstance(events[-1], Result) and [a.name for a in events[-1].artifacts] == ["selftest.json"]
        progress = [e for e in events if isinstance(e, Progress)]
        assert [e.step for e in progress] == [1, 2]  # in order
        assert progress[0].preview.shape == (8, 8, 4)  # previews stream back too
        assert [e.seq for e in events] == sorted(e.seq for e in events)
    with Client(server.address, timeout=60) as c:
        listed = {j["job"]: j for j in c.list()}
        assert all(listed[j]["state"] == "done" and listed[j]["where"].startswith("Ray node ") for j in results)
    out = subprocess.run([sys.executable, "-m", "likeness3d.backend.cli", "list", "--connect", server.address],
                         capture_output=True, text=True, timeout=WAIT).stdout
    lines = [line for line in out.splitlines() if any(j in line for j in results)]
    assert len(lines) == 20 and all("(on Ray node " in line for line in lines), out[-2000:]


def test_two_logical_gpus_run_two_jobs_at_once(server, asset):
    stamps: dict[str, list] = {}
    ends: dict[str, Result] = {}
    config = {"steps": 8, "step_seconds": 0.25}
    with Client(server.address, timeout=60) as c:
        ready_slots(c)

    def one() -> None:
        with Client(server.address, timeout=60) as c:
            job_id, events = run_to_end(c, asset, config, stamps)
            ends[job_id] = events[-1]

    threads = [threading.Thread(target=one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert len(ends) == 2 and all(isinstance(e, Result) for e in ends.values())
    (a_first, a_last), (b_first, b_last) = [(s[0], s[-1]) for s in stamps.values()]
    assert a_first < b_last and b_first < a_last, stamps  # each job's events began before the other's ended
    with Client(server.address, timeout=60) as c:
        slots = {c.status(j)["where"].split(", slot ")[1].split(",")[0] for j in ends}
    assert slots == {"0", "1"}


def test_cancel_cooperative_then_forced_frees_the_worker(server, asset):
    with Client(server.address, timeout=60) as c:
        ready_slots(c)
        job = c.submit("selftest", asset, {"steps": 1000, "step_seconds": 0.05})
        wait_for(lambda: c.status(job.id)["state"] == "running" and c.status(job.id).get("progress"), WAIT, "progress")
        c.cancel(job.id)
        last = list(job.events(timeout=WAIT))[-1]
        assert isinstance(last, Error) and last.code == "cancelled" and last.message == "job cancelled by request"
        # a job that ignores cancel: its actor is ended after the grace period, and its slot gets a new one
        stuck = c.submit("selftest", asset, {"steps": 1000, "step_seconds": 0.05, "honour_cancel": False})
        wait_for(lambda: c.status(stuck.id).get("progress"), WAIT, "the stuck job's first step")
        pid = next(w["pid"] for w in c.status()["workers"] if w["job"] == stuck.id)
        c.cancel(stuck.id)
        last = list(stuck.events(timeout=WAIT))[-1]
        assert isinstance(last, Error) and last.code == "cancelled" and "Ray actor" in last.message
        wait_for(lambda: process_gone(pid), WAIT, "the ended actor's process gone (its GPU free)")
        ready_slots(c)
        _, events = run_to_end(c, asset, {"steps": 2, "step_seconds": 0.0})
        assert isinstance(events[-1], Result)


def test_a_killed_ray_worker_ends_the_job_worker_crashed(server, asset):
    with Client(server.address, timeout=60) as c:
        ready_slots(c)
        job = c.submit("selftest", asset, {"steps": 1000, "step_seconds": 0.05})
        wait_for(lambda: c.status(job.id).get("progress"), WAIT, "the job running")
        pid = next(w["pid"] for w in c.status()["workers"] if w["job"] == job.id)
        os.kill(pid, signal.SIGKILL)
        events = list(job.events(timeout=WAIT))
        last = events[-1]
        assert isinstance(last, Error) and last.code == "worker_crashed" and f"actor pid {pid}" in last.message
        assert sum(isinstance(e, (Error, Result)) for e in events) == 1  # one final event, never two
        ready_slots(c)
        _, events = run_to_end(c, asset, {"steps": 2, "step_seconds": 0.0})
        assert isinstance(events[-1], Result)
        assert any(w["restarts"] >= 1 for w in c.status()["workers"])
        assert c.status(job.id)["state"] == "failed"


def test_a_restarted_server_keeps_finished_jobs_and_reports_interrupted_ones(cluster, tmp_path, asset):
    store = tmp_path / "store"
    first = serve(cluster, store, "--ray-slots", "1")
    with Client(first.address, timeout=60) as c:
        ready_slots(c)
        done_id, events = run_to_end(c, asset, {"steps": 2, "step_seconds": 0.0})
        assert isinstance(events[-1], Result)
        running = c.submit("selftest", asset, {"steps": 1000, "step_seconds": 0.05})
        wait_for(lambda: c.status(running.id).get("progress"), WAIT, "the second job running")
    first.stop()
    second = serve(cluster, store, "--ray-slots", "1")
    try:
        with Client(second.address, timeout=60) as c:
            assert json.loads(c.fetch(done_id, "selftest.json"))["steps"] == 2
            st = c.status(running.id)
            assert st["state"] == "failed" and "the server stopped while the job ran" in st["error"]["message"]
    finally:
        second.stop()


def test_with_retries_a_lost_worker_queues_the_job_again_and_it_ends_once(cluster, tmp_path, asset):
    s = serve(cluster, tmp_path / "store", "--ray-slots", "1", "--ray-retries", "1")
    try:
        with Client(s.address, timeout=60) as c:
            ready_slots(c)
            job = c.submit("selftest", asset, {"steps": 40, "step_seconds": 0.05})
            wait_for(lambda: c.status(job.id).get("progress"), WAIT, "the job running")
            pid = next(w["pid"] for w in c.status()["workers"] if w["job"] == job.id)
            os.kill(pid, signal.SIGKILL)
            events = list(job.events(timeout=WAIT))
            assert sum(isinstance(e, (Error, Result)) for e in events) == 1 and isinstance(events[-1], Result)
            assert f"actor pid {pid}" not in c.status(job.id)["where"]  # the second attempt ran on the new actor
            assert json.loads(c.fetch(job.id, "selftest.json"))["steps"] == 40
        text = (tmp_path / "store" / "jobs" / job.id / "log.txt").read_text()
        assert "queued again: the Ray actor" in text and "attempt 2 of 2" in text
    finally:
        s.stop()
