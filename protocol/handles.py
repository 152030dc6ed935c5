"""A job on the backend as the client sees it: its events in order, without replays, and its outcome."""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from . import messages as M
from .errors import Timeout, error_from_code

if TYPE_CHECKING:  # the client imports this module
    from .client import Client


@dataclass(frozen=True)
class ConnectionState:
    """An event in `client.events` when the link to the backend changes: "connected" or "lost"."""

    state: str


class JobHandle:
    """A job on the backend: its events in order, and its outcome."""

    def __init__(self, client: "Client", job_id: str, pipeline: str = ""):
        self.client = client
        self.id = job_id
        self.pipeline = pipeline
        self._queue: queue.Queue = queue.Queue()
        self.last_seq = 0
        self.last_progress: M.Progress | None = None
        self.final: M.Result | M.Error | None = None
        self._terminal_delivered = False

    @property
    def done(self) -> bool:
        return self.final is not None

    def _deliver(self, event: M.Message) -> bool:
        """Called on the I/O thread; drops replays. A progress event is a replay when its seq is not past
        the last one seen; the job's outcome (Result or Error) is taken once, whatever its seq: a backend
        that restarted may number a recovered job's outcome from 1 again."""
        if self.final is not None:
            return False
        seq = getattr(event, "seq", None) or 0
        if isinstance(event, M.Progress):
            if seq and seq <= self.last_seq:
                return False
            self.last_progress = event
        else:
            self.final = event
        self.last_seq = max(self.last_seq, seq)
        self._queue.put(event)
        return True

    def _new_sequence(self) -> None:
        """The backend restarted (a new epoch): its events for this job are numbered afresh."""
        self.last_seq = 0

    def events(self, timeout: float | None = None) -> Iterator[M.Progress | M.Result | M.Error]:
        """Yield Progress events, then the Result or the Error (typed in `.code`) that ends the job.
        `timeout` bounds the wait for each next event."""
        while not self._terminal_delivered:
            try:
                ev = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise Timeout(f"no event for job {self.id} within {timeout} s (backend {self.client.state})") from None
            if not isinstance(ev, M.Progress):
                self._terminal_delivered = True
            yield ev

    def wait(self, timeout: float | None = None) -> M.Result:
        """Block until the job ends; return its Result or raise its typed error (Cancelled, WorkerCrashed, ...)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._terminal_delivered:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ev = next(self.events(timeout=left))
                except Timeout:
                    raise Timeout(f"job {self.id} did not finish within {timeout} s") from None
                if not isinstance(ev, M.Progress):
                    break
        if isinstance(self.final, M.Error):
            raise error_from_code(self.final.code, self.final.message, self.final.field)
        return self.final

    def cancel(self) -> None:
        self.client.cancel(self.id)

    def fetch_all(self, out_dir: Path | str) -> list[Path]:
        return self.client.fetch_all(self.id, out_dir)
