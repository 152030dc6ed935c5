"""The job manager: a FIFO queue over the job store, per-job ordered events and who follows them.

Pure bookkeeping (no sockets, no processes): the server feeds it what workers report and sends what it
returns. Every state change is written to the store before the event goes out.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..protocol.assets import Asset
from ..protocol.errors import UnknownJob
from ..protocol.messages import ArtifactInfo, Error, Message, Progress, Result
from .store import FINAL_STATES, JobStore


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
        return out


class JobManager:
    def __init__(self, store: JobStore):
        self.store = store
        self.jobs: dict[str, JobRecord] = {}
        self.queue: deque[str] = deque()
        self._recover()

    def _recover(self) -> None:
        """Rebuild from disk: finished jobs stay fetchable, queued ones queue again, running ones failed."""
        for job_id in self.store.job_ids():
            spec, state = self.store.read_spec(job_id), self.store.read_state(job_id)
            rec = JobRecord(job_id, spec["pipeline"], spec["created"], state["state"])
            if rec.state == "running":
                state = self.store.write_state(
                    job_id, "failed", error={"code": "internal", "message": "the server stopped while the job ran"}
                )
                rec.state = "failed"
            if rec.state in FINAL_STATES:
                rec.final = self._final_message(rec, state)
            else:
                self.queue.append(job_id)
            self.jobs[job_id] = rec

    def _final_message(self, rec: JobRecord, state: dict) -> Message:
        rec.seq += 1
        if rec.state == "done":
            arts = tuple(ArtifactInfo(a["name"], a["media_type"], a["size"]) for a in state.get("artifacts", []))
            return Result(job=rec.id, seq=rec.seq, artifacts=arts)
        err = state.get("error") or {"code": "cancelled" if rec.state == "cancelled" else "internal", "message": rec.state}
        return Error(code=err["code"], message=err["message"], field=err.get("field"), job=rec.id, seq=rec.seq)

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
    def submit(self, pipeline: str, config: dict, asset: Asset) -> JobRecord:
        job_id = self.store.create(pipeline, config, asset)
        rec = JobRecord(job_id, pipeline, time.time())
        self.jobs[job_id] = rec
        self.queue.append(job_id)
        return rec

    def next_queued(self) -> str | None:
        return self.queue.popleft() if self.queue else None

    def started(self, job_id: str, worker: int) -> None:
        rec = self.jobs[job_id]
        rec.state, rec.worker = "running", worker
        self.store.write_state(job_id, "running", worker=worker)

    def progress(self, job_id: str, stage: str, step: int, total: int, text: str, elapsed: float, preview: np.ndarray | None) -> Progress:
        rec = self.jobs[job_id]
        rec.seq += 1
        msg = Progress(job=job_id, seq=rec.seq, stage=stage, step=step, total=total, text=text, elapsed=elapsed, preview=preview)
        # keep the last progress for attach/status, without holding on to its preview image
        rec.last_progress = Progress(job=job_id, seq=rec.seq, stage=stage, step=step, total=total, text=text, elapsed=elapsed)
        return msg

    def done(self, job_id: str) -> Result:
        rec = self.jobs[job_id]
        artifacts = self.store.list_artifacts(job_id)
        self.store.write_state(job_id, "done", artifacts=artifacts)
        rec.state, rec.worker = "done", None
        rec.seq += 1
        rec.final = Result(job=job_id, seq=rec.seq, artifacts=tuple(ArtifactInfo(**a) for a in artifacts))
        return rec.final

    def failed(self, job_id: str, code: str, message: str, field: str | None = None) -> Error:
        rec = self.jobs[job_id]
        state = "cancelled" if code == "cancelled" else "failed"
        error = {"code": code, "message": message} | ({"field": field} if field else {})
        self.store.write_state(job_id, state, error=error)
        self.store.log(job_id, f"{state}: {code}: {message}")
        rec.state, rec.worker = state, None
        rec.seq += 1
        rec.final = Error(code=code, message=message, field=field, job=job_id, seq=rec.seq)
        return rec.final

    def cancel_queued(self, job_id: str) -> Error:
        self.queue.remove(job_id)
        return self.failed(job_id, "cancelled", "cancelled before it started")
