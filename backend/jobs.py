"""The job manager: a FIFO queue over the job store, per-job ordered events and who follows them.

Pure bookkeeping (no sockets, no processes): the server feeds it what workers report and sends what it
returns. Every state change is written to the store before the event goes out; a write the store cannot take
(a full disk) never stops a transition: the event goes out, the state is kept in `unsaved` and written again
by `retry_unsaved` until it lands. Event sequence numbers go on from where the job's last server left them
(state.json's `seq` and events.log), so a client connected across a restart never mistakes a new event
for a replay.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..protocol.assets import Asset
from ..protocol.errors import UnknownJob
from ..protocol.messages import ArtifactInfo, Error, Message, Progress, Result
from .store import FINAL_STATES, JobStore, storage_error
from .store_scan import quarantine, scan, spec_fields

log = logging.getLogger("likeness3d.jobs")


@dataclass
class JobRecord:
    id: str
    pipeline: str
    created: float
    state: str = "queued"
    seq: int = 0
    subscribers: dict[bytes, int] = field(default_factory=dict)
    """Client routing id -> the request id its events carry."""
    last_progress: Progress | None = None
    final: Message | None = None
    worker: int | None = None
    cancel_requested: bool = False
    config: dict = field(default_factory=dict)
    where: str | None = None
    """Where the job runs (or ran last), said by an executor that knows more than a worker index (Ray: the node)."""

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"job": self.id, "pipeline": self.pipeline, "state": self.state, "created": self.created}
        if self.last_progress is not None:
            p = self.last_progress
            out["progress"] = {"stage": p.stage, "step": p.step, "total": p.total, "text": p.text, "elapsed": p.elapsed}
        if isinstance(self.final, Error):
            out["error"] = {"code": self.final.code, "message": self.final.message}
        if isinstance(self.final, Result):
            out["artifacts"] = [a.name for a in self.final.artifacts]
        if self.worker is not None:
            out["worker"] = self.worker
        if self.where is not None:
            out["where"] = self.where
        return out


class JobManager:
    def __init__(self, store: JobStore):
        self.store = store
        self.jobs: dict[str, JobRecord] = {}
        self.queue: deque[str] = deque()
        self.unsaved: dict[str, tuple[str, dict]] = {}
        """Job id -> the state (and fields) the store could not take yet."""
        self.quarantined: list[str] = []
        self._recover()

    def _recover(self) -> None:
        """Rebuild from disk: finished jobs stay fetchable, queued ones queue again, running ones failed, damaged
        ones quarantined (failed, naming the file); leftovers of interrupted writes are removed."""
        entries, removed = scan(self.store)
        if removed:
            log.info("the job store %s: removed %d leftover(s) of interrupted writes: %s", self.store.root,
                     len(removed), ", ".join(removed[:10]))
        self.quarantined = [e.job_id for e in entries if e.damage is not None]
        for e in entries:
            pipeline, created, config = spec_fields(e)
            state = quarantine(self.store, e) if e.damage is not None else e.state
            rec = JobRecord(e.job_id, pipeline, created, state["state"], seq=max(e.seq, state.get("seq", 0)), config=config)
            self.jobs[e.job_id] = rec
            if rec.state == "running":
                rec.seq += 1
                err = {"code": "internal", "message": "the server stopped while the job ran"}
                state = dict(state, state="failed", error=err, seq=rec.seq)
                rec.state = "failed"
                self._write(rec.id, "failed", error=err, seq=rec.seq)
            if rec.state in FINAL_STATES:
                rec.final = self._final_message(rec, state)
            else:
                self.queue.append(e.job_id)

    def _final_message(self, rec: JobRecord, state: dict) -> Message:
        """The job's final event as its server sent it (its seq as persisted), for attach after a restart."""
        if not state.get("seq"):
            rec.seq += 1  # a store written before seqs were persisted
        if rec.state == "done":
            arts = tuple(ArtifactInfo(a["name"], a["media_type"], a["size"]) for a in state.get("artifacts", []))
            return Result(job=rec.id, seq=rec.seq, artifacts=arts)
        err = state.get("error") or {"code": "cancelled" if rec.state == "cancelled" else "internal", "message": rec.state}
        return Error(code=err["code"], message=err["message"], field=err.get("field"), job=rec.id, seq=rec.seq)

    # -- writing (a full disk delays a write, never a transition) ---------------------------------------
    def _write(self, job_id: str, state: str, **extra: Any) -> Exception | None:
        """Write the job's state; on failure keep it for retry_unsaved and return the typed error."""
        try:
            self.store.write_state(job_id, state, **extra)
            self.unsaved.pop(job_id, None)
            return None
        except OSError as exc:
            err = storage_error(exc, self.store.root, f"recording job {job_id} as {state}")
            prev = self.unsaved.get(job_id)
            merged = dict(prev[1], **extra) if prev else dict(extra)
            self.unsaved[job_id] = (state, merged)
            log.warning("job %s: %s (kept in memory; written again once the store takes it)", job_id, err.message)
            return err

    def retry_unsaved(self) -> int:
        """Write again every state the store could not take; returns how many are still unsaved."""
        for job_id, (state, extra) in list(self.unsaved.items()):
            try:
                self.store.write_state(job_id, state, **extra)
                del self.unsaved[job_id]
                log.info("job %s: its state (%s) is now saved in the job store", job_id, state)
            except OSError:
                break  # the disk is still full: try again later
            except UnknownJob:
                del self.unsaved[job_id]  # its folder was removed by hand
        return len(self.unsaved)

    # -- lookups ----------------------------------------------------------------------------------------
    def get(self, job_id: Any) -> JobRecord:
        rec = self.jobs.get(job_id) if isinstance(job_id, str) else None
        if rec is None:
            raise UnknownJob(f"no job {job_id!r:.80} on this server", field="job")
        return rec

    def position(self, job_id: str) -> int:
        try:
            return self.queue.index(job_id)
        except ValueError:
            return -1

    def listing(self) -> list[dict]:
        return [r.summary() for r in sorted(self.jobs.values(), key=lambda r: (r.created, r.id))]

    # -- transitions (each returns the event to send, if any) -------------------------------------------
    def add(self, job_id: str, pipeline: str, config: dict) -> JobRecord:
        """A job the store holds already (created by `store.create`), queued."""
        rec = JobRecord(job_id, pipeline, time.time(), config=dict(config))
        self.jobs[job_id] = rec
        self.queue.append(job_id)
        return rec

    def submit(self, pipeline: str, config: dict, asset: Asset) -> JobRecord:
        return self.add(self.store.create(pipeline, config, asset), pipeline, config)

    def next_queued(self) -> str | None:
        return self.queue.popleft() if self.queue else None

    def started(self, job_id: str, worker: int) -> Error | None:
        """Mark the job running on `worker`; on a store that cannot take it, the job fails instead (its final
        event is returned) and nothing runs on a full disk."""
        rec = self.jobs[job_id]
        err = self._write(job_id, "running", worker=worker)
        if err is not None:
            self.unsaved.pop(job_id, None)
            return self.failed(job_id, err.code, f"the job could not start: {err.message}")
        rec.state, rec.worker = "running", worker
        return None

    def progress(self, job_id: str, stage: str, step: int, total: int, text: str, elapsed: float, preview: np.ndarray | None) -> Progress:
        rec = self.jobs[job_id]
        rec.seq += 1
        self.store.append_event(job_id, rec.seq, "progress")
        msg = Progress(job=job_id, seq=rec.seq, stage=stage, step=step, total=total, text=text, elapsed=elapsed, preview=preview)
        # keep the last progress for attach/status, without holding on to its preview image
        rec.last_progress = Progress(job=job_id, seq=rec.seq, stage=stage, step=step, total=total, text=text, elapsed=elapsed)
        return msg

    def done(self, job_id: str) -> Message:
        rec = self.jobs[job_id]
        try:
            artifacts = self.store.list_artifacts(job_id)
        except OSError as exc:
            err = storage_error(exc, self.store.root, f"listing the results of job {job_id}")
            return self.failed(job_id, err.code, f"the job finished but its results cannot be read: {err.message}")
        rec.seq += 1
        err = self._write(job_id, "done", artifacts=artifacts, seq=rec.seq)
        if err is not None:
            # its result is not on record: a full disk ends the job as failed (saved as such once there is room)
            self.unsaved.pop(job_id, None)
            return self.failed(job_id, err.code, f"the job finished but its result could not be recorded: {err.message}")
        self.store.append_event(job_id, rec.seq, "result")
        rec.state, rec.worker = "done", None
        rec.final = Result(job=job_id, seq=rec.seq, artifacts=tuple(ArtifactInfo(**a) for a in artifacts))
        return rec.final

    def failed(self, job_id: str, code: str, message: str, field: str | None = None) -> Error:
        rec = self.jobs[job_id]
        state = "cancelled" if code == "cancelled" else "failed"
        rec.seq += 1
        error = {"code": code, "message": message} | ({"field": field} if field else {})
        err = self._write(job_id, state, error=error, seq=rec.seq)
        if err is not None and code != err.code:
            message = f"{message} (not yet saved in the job store: {err.message})"
        self.store.log(job_id, f"{state}: {code}: {message}")
        self.store.append_event(job_id, rec.seq, "error")
        rec.state, rec.worker = state, None
        rec.final = Error(code=code, message=message, field=field, job=job_id, seq=rec.seq)
        return rec.final

    def requeue(self, job_id: str, why: str) -> None:
        """A running job whose worker was lost, queued again at the front (an executor's retry)."""
        rec = self.jobs[job_id]
        self._write(job_id, "queued")
        self.store.log(job_id, f"queued again: {why}")
        rec.state, rec.worker = "queued", None
        self.queue.appendleft(job_id)

    def cancel_queued(self, job_id: str) -> Error:
        self.queue.remove(job_id)
        return self.failed(job_id, "cancelled", "cancelled before it started")
