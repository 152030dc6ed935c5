"""A full disk under the job store: the server stays up, every job ends with a typed error naming the store,
a submit leaves nothing behind, states are written once there is room, leftovers go at the next start.

The store lives on a 4 MB tmpfs mounted in a user + mount namespace (no privileges needed where user
namespaces are allowed): a holder process keeps the namespace, the servers run inside it (nsenter), and the
test sees the tmpfs through /proc/<holder>/root.
"""

import errno
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import Cancelled, StorageFull, WorkerCrashed
from likeness3d.protocol.messages import Progress
from servers import Served, wait_for

SLOW = {"steps": 4000, "step_seconds": 0.05, "preview_size": 4}


class Tmpfs:
    """A small tmpfs at `mount` in a namespace of its own, held by a sleeping process."""

    def __init__(self, mount: Path, size: str = "4m"):
        if shutil.which("nsenter") is None:
            pytest.skip("nsenter (util-linux) is not installed: no way to run the server in the tmpfs's namespace")
        mount.mkdir(parents=True)
        self.mount = mount
        script = 'mount -t tmpfs -o size="$1" tmpfs "$0" && echo mounted && exec sleep 100000'
        try:
            self.holder = subprocess.Popen(["unshare", "-rm", "sh", "-c", script, str(mount), size],
                                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except FileNotFoundError:
            pytest.skip("unshare (util-linux) is not installed: no way to mount a small tmpfs without privileges")
        line = self.holder.stdout.readline().strip()
        if line != "mounted":
            err = self.holder.stderr.read().strip()
            self.holder.wait(10)
            pytest.skip(f"a user + mount namespace with a tmpfs is not permitted here: {err[-300:]}")
        self.prefix = ["nsenter", "-t", str(self.holder.pid), "-U", "-m", "--preserve-credentials"]

    def view(self, path: Path) -> Path:
        """`path` (inside the tmpfs) as this process sees it."""
        return Path(f"/proc/{self.holder.pid}/root") / str(path).lstrip("/")

    def fill(self) -> Path:
        """Write a filler file until the disk is full; returns it (remove it to free the space)."""
        filler = self.view(self.mount / "filler")
        chunk = b"\0" * 65536
        with open(filler, "ab", buffering=0) as fh:
            try:
                while True:
                    fh.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
        for n in (4096, 512, 1):  # the last pieces of a page
            try:
                with open(filler, "ab", buffering=0) as fh:
                    while True:
                        fh.write(b"\0" * n)
            except OSError:
                pass
        return filler

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait(10)


@pytest.fixture
def tmpfs(tmp_path):
    fs = Tmpfs(tmp_path / "fs")
    yield fs
    fs.close()


def _first_progress(job, timeout=60):
    for ev in job.events(timeout=timeout):
        if isinstance(ev, Progress):
            return ev
    raise AssertionError("the job ended before its first progress event")


def _leftovers(jobs: Path) -> list[str]:
    return sorted(str(p.relative_to(jobs)) for p in jobs.rglob("*") if p.name.endswith(".tmp"))


def _worker_pid(c):
    return wait_for(lambda: c.status()["workers"][0]["state"] == "idle" and c.status()["workers"][0]["pid"], 60, "an idle worker")


def test_full_disk_server_up_typed_errors_nothing_half_written(tmpfs, tmp_path, asset):
    store = tmpfs.mount / "store"
    jobs = tmpfs.view(store / "jobs")
    a = Served(store, tmp_path / "a.log", prefix=tmpfs.prefix)
    with Client(a.address, timeout=30) as c:
        done = c.submit("inspect", asset)
        done.wait(60)
        report = c.fetch(done.id, "inspect.json")

        # a worker crash while the disk is full
        crashing = c.submit("selftest", asset, SLOW)
        _first_progress(crashing)
        worker = c.status()["workers"][0]["pid"]
        filler = tmpfs.fill()
        with pytest.raises(StorageFull, match=f"the job store {store} is full") as e:
            c.submit("inspect", asset)
        assert "free space" in str(e.value)
        assert _leftovers(jobs) == [] and len(list(jobs.iterdir())) == 2  # nothing of the refused submit
        os.kill(worker, signal.SIGKILL)
        with pytest.raises(WorkerCrashed, match="not yet saved in the job store"):
            crashing.wait(60)
        assert a.alive(), a.log()[-3000:]
        assert c.status()["unsaved"] == [crashing.id]  # kept in memory until the disk takes it
        _worker_pid(c)

        # a job that finishes on a full disk
        filler.unlink()
        finishing = c.submit("selftest", asset, {"steps": 40, "step_seconds": 0.05, "preview_size": 4})
        _first_progress(finishing)
        worker = c.status()["workers"][0]["pid"]
        os.kill(worker, signal.SIGSTOP)  # held while the disk fills, so that it finishes on a full disk
        try:
            filler = tmpfs.fill()
        finally:
            os.kill(worker, signal.SIGCONT)
        with pytest.raises(StorageFull, match=f"the job store {store} is full"):
            finishing.wait(60)
        assert c.status(finishing.id)["state"] == "failed"
        assert c.status(finishing.id)["error"]["code"] == "storage_full"
        assert a.alive(), a.log()[-3000:]

        # room again: the states the disk refused are written
        filler.unlink()

        def saved(job_id, code):
            st = json.loads((jobs / job_id / "state.json").read_text())
            return st["state"] == "failed" and st["error"]["code"] == code

        wait_for(lambda: saved(crashing.id, "worker_crashed") and saved(finishing.id, "storage_full"), 60, "states saved")
        assert c.submit("inspect", asset).wait(60).artifacts[0].name == "inspect.json"
    assert a.stop() == 0
    assert "Traceback" not in a.log(), a.log()[-3000:]

    # a crash in the middle of a create and of a state write leaves temporary files: the next start removes them
    (jobs / ".20261202-000000-0badf00d.tmp" / "inputs").mkdir(parents=True)
    (jobs / ".20261202-000000-0badf00d.tmp" / "inputs" / "asset.json").write_text('{"mesh": ')
    (jobs / done.id / ".state.json.1a2b3c4d.tmp").write_text('{"sta')
    b = Served(store, tmp_path / "b.log", prefix=tmpfs.prefix)
    try:
        assert _leftovers(jobs) == []
        for job in jobs.iterdir():  # every job folder whole: spec and state parse, its state final or queued
            assert json.loads((job / "spec.json").read_text())["pipeline"] in ("inspect", "selftest")
            assert json.loads((job / "state.json").read_text())["state"] in ("done", "failed")
        with Client(b.address, timeout=30) as c:
            assert c.fetch(done.id, "inspect.json") == report
            assert c.status(crashing.id)["error"]["code"] == "worker_crashed"
            assert c.status(finishing.id)["error"]["code"] == "storage_full"
            assert c.submit("inspect", asset).wait(60).artifacts[0].name == "inspect.json"
    finally:
        assert b.stop() == 0


def test_full_disk_at_start_and_through_a_job(tmpfs, tmp_path, asset):
    """A server started on a full disk serves, refuses submits with a typed error and starts no job."""
    store = tmpfs.mount / "store"
    a = Served(store, tmp_path / "a.log", prefix=tmpfs.prefix)
    with Client(a.address, timeout=30) as c:
        queued = c.submit("selftest", asset, SLOW)
        _first_progress(queued)
        behind = c.submit("inspect", asset)  # waits behind the running job
        filler = tmpfs.fill()
        c.cancel(queued.id)
        with pytest.raises(Cancelled, match="not yet saved in the job store"):
            queued.wait(60)
        with pytest.raises(StorageFull, match="could not start"):
            behind.wait(60)  # nothing runs on a full disk
        assert c.ping() < 30 and a.alive()
    assert a.stop() == 0
    b = Served(store, tmp_path / "b.log", prefix=tmpfs.prefix)  # starts on the full disk
    try:
        with Client(b.address, timeout=30) as c:
            with pytest.raises(StorageFull):
                c.submit("inspect", asset)
            # its failed state could not be saved: this server finds it queued, and again does not run it
            with pytest.raises(StorageFull, match="could not start"):
                c.attach(behind.id).wait(60)
        filler.unlink()
    finally:
        assert b.stop() == 0
    assert "Traceback" not in a.log() + b.log()


def test_a_log_that_cannot_be_written_loses_lines_not_jobs(server_factory, tmp_path, asset):
    """No mount needed: a job whose log.txt is /dev/full (every write: ENOSPC) still runs, and the server with it."""
    from damaged_store import make_job
    from likeness3d.backend.store import JobStore

    root = tmp_path / "store"
    job = make_job(JobStore(root), asset, "queued")
    (root / "jobs" / job / "log.txt").symlink_to("/dev/full")
    server = server_factory(store=root)
    with Client(server.address, timeout=30) as c:
        assert c.attach(job).wait(60).artifacts[0].name == "inspect.json"
        assert c.submit("inspect", asset).wait(60).artifacts[0].name == "inspect.json"
        assert c.status()["workers"][0]["restarts"] == 0
    assert server.alive()
