"""What runs the jobs, under the job manager: an executor takes queued jobs, reports their events to the server
and answers cancel, release and the server's questions (`hello`, `status`).

Two exist. `LocalExecutor` (the default): one supervised worker process per GPU of this host (workers.py,
supervise.py). `RayExecutor` (ray_executor.py, `serve --executor ray`): one long-lived Ray actor per GPU of a
cluster. The ZeroMQ front, the job store and the protocol are the same for both: the server calls only the
methods below, on its loop thread.
"""

from __future__ import annotations

import time
from typing import Callable

from ..protocol import messages as M
from .jobs import JobManager, JobRecord
from .supervise import WorkerSupervision
from .workers import Worker

Publish = Callable[[str, M.Message], None]
"""The server's `_publish(job_id, event)`: store first (the job manager did), then every follower."""


class Executor:
    """The interface; each method runs on the server's loop thread and must not block it for long."""

    kind = "?"

    def start(self) -> None:
        raise NotImplementedError

    def poll_fds(self) -> dict[int, Callable[[], None]]:
        """File descriptors the loop polls, each with what to call when it is readable."""
        return {}

    def step(self) -> None:
        """Once per loop turn: take what workers reported, watch them, hand queued jobs to idle ones."""
        raise NotImplementedError

    def cancel(self, rec: JobRecord, grace_s: float) -> None:
        """Ask the job running in `rec` to stop; past `grace_s` it is stopped by force (its worker ended)."""
        raise NotImplementedError

    def release(self) -> dict:
        raise NotImplementedError

    def gpus(self) -> list[str]:
        raise NotImplementedError

    def describe(self) -> list[dict]:
        """One entry per worker (`hello`'s and `status`'s `workers`)."""
        raise NotImplementedError

    def cluster(self) -> dict | None:
        """`status`'s `cluster` entry (None: no cluster)."""
        return None

    def label(self) -> str:
        """One line for the start-up message."""
        raise NotImplementedError

    def stop(self) -> None:
        """End every worker; a job still running fails (`the server stopped while the job ran`)."""
        raise NotImplementedError


class LocalExecutor(WorkerSupervision, Executor):
    """One supervised worker process per device of this host."""

    kind = "local"

    def __init__(self, jobs: JobManager, publish: Publish, devices: list[str], store_root: str, epoch: int | None):
        self.jobs, self._publish = jobs, publish
        self.workers = [Worker(i, d, store_root, epoch=epoch) for i, d in enumerate(devices)]

    def start(self) -> None:
        for w in self.workers:
            w.start()

    def poll_fds(self) -> dict[int, Callable[[], None]]:
        return {w.conn.fileno(): (lambda w=w: self._drain_worker(w))
                for w in self.workers if w.conn is not None and not w.conn.closed}

    def step(self) -> None:
        self._supervise()
        self._dispatch()

    def cancel(self, rec: JobRecord, grace_s: float) -> None:
        w = self.workers[rec.worker]
        w.send("cancel", rec.id)
        w.cancel_deadline = time.monotonic() + grace_s

    def release(self) -> dict:
        asked, busy = [], []
        for w in self.workers:
            if w.ready and w.send("release"):
                (busy if w.job else asked).append(w.index)
        return {"released": asked, "after_current_job": busy}

    def gpus(self) -> list[str]:
        return [w.info.get("name", w.device) for w in self.workers if w.device != "cpu"]

    def describe(self) -> list[dict]:
        return [w.describe() for w in self.workers]

    def label(self) -> str:
        return "workers: " + ", ".join(w.device for w in self.workers)

    def stop(self) -> None:
        for w in self.workers:
            if w.job is not None:
                self.jobs.failed(w.job, "internal", "the server stopped while the job ran")
            w.stop()
