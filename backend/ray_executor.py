"""`serve --executor ray`: jobs run on a Ray cluster, behind the same ZeroMQ front, job store and protocol.

One slot per GPU of the cluster (`--ray-slots`; CPU slots on a cluster without GPUs): each slot is a long-lived
`JobRunner` actor (ray_actor.py) holding one GPU (`num_gpus=1`) or one CPU, so the models a job loads stay
cached for the next. The server hands a slot one job at a time: its inputs (the stored asset files' bytes) go
with the call through Ray's object store, its events come back in order as the items of a streaming generator
(progress, previews and log lines), and its artifacts come back as the last item, which the server writes into
its store: no filesystem is shared with the nodes.

Cancel is cooperative first (the actor's `cancel` sets the flag the pipeline checks); past the grace period the
actor is ended by force (`ray.kill`: Ray's force-cancel of a running actor method), its GPU freed, the job
`cancelled` and the slot given a new actor. A lost actor or node ends the job `worker_crashed`, or, with
`--ray-retries N`, queues it again up to N times; either way only the generator of the job's current attempt is
read, so a job never runs twice at once and never publishes two results. When the server stops, its actors end
with it (they belong to its Ray driver); the next server finds finished jobs fetchable and reports the ones that
were running as interrupted (jobs.py).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .executor import Executor, Publish
from .jobs import JobManager, JobRecord
from .ray_cluster import Cluster
from .store import ARTIFACT_NAME, atomic_write, storage_error

log = logging.getLogger("likeness3d.ray")

EVENTS_PER_STEP = 200
"""Events read from one job per loop turn: a chatty job never starves the front."""


@dataclass
class Slot:
    index: int
    actor: Any = None
    ready_ref: Any = None
    info: dict = field(default_factory=dict)
    job: str | None = None
    gen: Any = None
    cancel_deadline: float | None = None
    restarts: int = 0
    started_at: float = 0.0
    release_ref: Any = None
    release_after_job: bool = False
    last_release: dict | None = None
    not_before: float = 0.0
    """A slot whose actors keep failing to start waits until then before the next try (the loop never sleeps)."""
    heard: bool = False
    """Whether the running job's actor has said anything yet (its first event is the job's `running` line)."""

    @property
    def idle(self) -> bool:
        return bool(self.info) and self.job is None and self.release_ref is None


class RayExecutor(Executor):
    kind = "ray"

    def __init__(self, jobs: JobManager, publish: Publish, store_root: str, cluster: Cluster, *, on_gpu: bool,
                 slots: int, retries: int = 0, models: str | None = None):
        import ray

        from .ray_actor import JobRunner

        self.ray, self.jobs, self._publish = ray, jobs, publish
        self.store_root, self.cluster_info, self.on_gpu, self.retries = Path(store_root), cluster, on_gpu, retries
        env = {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}
        if models:
            env["LIKENESS3D_MODELS"] = models  # each node's own folder at this path
        resources = {"num_gpus": 1, "num_cpus": 0} if on_gpu else {"num_cpus": 1}
        self._runner = ray.remote(JobRunner).options(max_concurrency=2, runtime_env={"env_vars": env}, **resources)
        self.slots = [Slot(i) for i in range(slots)]
        self.attempts: dict[str, int] = {}
        self.unheard: set[str] = set()
        """Jobs queued again because their actor was gone before they began (once each)."""

    @classmethod
    def factory(cls, cluster: Cluster, **kwargs):
        """For `Server(executor=...)`."""
        return lambda jobs, publish, store_root, epoch: cls(jobs, publish, store_root, cluster, **kwargs)

    # -- lifecycle --------------------------------------------------------------------------------------
    def start(self) -> None:
        for s in self.slots:
            self._start_slot(s)

    def _start_slot(self, s: Slot) -> None:
        if time.monotonic() < s.not_before:
            s.actor, s.ready_ref, s.info, s.job, s.gen = None, None, {}, None, None
            return
        s.actor = self._runner.remote(s.index)
        s.ready_ref, s.info, s.job, s.gen, s.cancel_deadline = s.actor.info.remote(), {}, None, None, None
        s.release_ref, s.started_at = None, time.monotonic()

    def _end_slot(self, s: Slot) -> None:
        if s.actor is None:
            return
        try:
            self.ray.kill(s.actor, no_restart=True)  # its process ends: the GPU it held is free
        except Exception:  # already gone with its node
            pass

    def stop(self) -> None:
        for s in self.slots:
            if s.job is not None:
                self.jobs.failed(s.job, "internal", "the server stopped while the job ran")
            self._end_slot(s)
        self.ray.shutdown()

    # -- the loop ---------------------------------------------------------------------------------------
    def step(self) -> None:
        now = time.monotonic()
        for s in self.slots:
            if s.actor is None and now >= s.not_before:
                self._start_slot(s)
            if s.ready_ref is not None:
                self._check_ready(s)
            if s.job is not None:
                self._drain(s)
            if s.job is not None and s.cancel_deadline is not None and now > s.cancel_deadline:
                self._enforce_cancel(s)
            if s.release_ref is not None:
                self._check_release(s)
        self._dispatch()

    def _done(self, ref) -> bool:
        return bool(self.ray.wait([ref], timeout=0)[0])

    def _check_ready(self, s: Slot) -> None:
        if not self._done(s.ready_ref):
            return
        ref, s.ready_ref = s.ready_ref, None
        try:
            s.info = self.ray.get(ref)
            log.info("ray slot %d ready: %s", s.index, s.info)
        except self.ray.exceptions.RayError as exc:
            s.restarts += 1
            log.error("ray slot %d: its actor did not start (%s); starting another", s.index, _first_line(exc))
            if s.restarts > 3:
                s.not_before = time.monotonic() + min(5.0, 0.25 * s.restarts)
            self._start_slot(s)

    def _drain(self, s: Slot) -> None:
        for _ in range(EVENTS_PER_STEP):
            if s.job is None or not self._done(s.gen):
                return
            try:
                ev = self.ray.get(next(s.gen))
            except StopIteration:
                self._lost(s, "its actor ended the job without a result")
                return
            except self.ray.exceptions.RayError as exc:
                self._lost(s, _first_line(exc))
                return
            s.heard = True
            self._on_event(s, ev)

    def _on_event(self, s: Slot, ev: tuple) -> None:
        job, kind = s.job, ev[0]
        if kind == "log":
            self.jobs.store.log(job, ev[1])
        elif kind == "progress":
            self._publish(job, self.jobs.progress(job, *ev[1:]))
        elif kind == "done":
            s.job, s.gen, s.cancel_deadline = None, None, None
            self._publish(job, self._store_artifacts(job, ev[1]))
            self._after_job(s)
        elif kind == "failed":
            s.job, s.gen, s.cancel_deadline = None, None, None
            self._publish(job, self.jobs.failed(job, ev[1], ev[2], ev[3]))
            self._after_job(s)

    def _store_artifacts(self, job: str, artifacts: dict[str, bytes]):
        """The artifacts that came back through Ray, into the store; then the job's result."""
        try:
            self.jobs.store.check_owner()
            folder = self.jobs.store.job_dir(job) / "artifacts"
            for name, data in artifacts.items():
                if not ARTIFACT_NAME.match(name):
                    return self.jobs.failed(job, "internal", f"the job returned an artifact with a bad name {name!r:.80}")
                atomic_write(folder / name, data)
        except OSError as exc:
            err = storage_error(exc, self.jobs.store.root, f"storing the results of job {job}")
            return self.jobs.failed(job, err.code, f"the job finished but its results could not be stored: {err.message}")
        self.attempts.pop(job, None)
        return self.jobs.done(job)

    def _after_job(self, s: Slot) -> None:
        if s.release_after_job:
            s.release_after_job = False
            s.release_ref = s.actor.release.remote()

    def _lost(self, s: Slot, why: str) -> None:
        """The slot's actor (or its node) is gone mid-job: the job ends or queues again; the slot restarts."""
        job, where, started = s.job, _where(s), s.heard
        s.job, s.gen = None, None
        rec = self.jobs.jobs[job]
        s.restarts += 1
        self._end_slot(s)
        if rec.cancel_requested:
            self._publish(job, self.jobs.failed(job, "cancelled", f"cancelled; the Ray actor ({where}) was ended"))
        elif not started and job not in self.unheard:
            # the actor was gone before the job began (it died idle): the job never ran, so it queues again, once
            self.unheard.add(job)
            self.jobs.requeue(job, f"the Ray actor ({where}) was gone before the job began ({why})")
        elif self.attempts.get(job, 0) < self.retries:
            self.attempts[job] = self.attempts.get(job, 0) + 1
            self.jobs.requeue(job, f"the Ray actor ({where}) was lost ({why}); attempt {self.attempts[job] + 1} "
                                   f"of {self.retries + 1} queued")
        else:
            self.attempts.pop(job, None)
            self._publish(job, self.jobs.failed(
                job, "worker_crashed", f"the Ray actor running the job ({where}) was lost: {why}; a new actor took its slot"))
        self._start_slot(s)

    def _enforce_cancel(self, s: Slot) -> None:
        job, where = s.job, _where(s)
        s.job, s.gen, s.cancel_deadline = None, None, None
        self._end_slot(s)
        s.restarts += 1
        self._publish(job, self.jobs.failed(job, "cancelled", f"cancelled; the job did not stop in time and its Ray "
                                                              f"actor ({where}) was ended, freeing its GPU"))
        self._start_slot(s)

    def _check_release(self, s: Slot) -> None:
        if self._done(s.release_ref):
            ref, s.release_ref = s.release_ref, None
            try:
                s.last_release = self.ray.get(ref)
                log.info("ray slot %d released: %s", s.index, s.last_release)
            except self.ray.exceptions.RayError as exc:
                log.warning("ray slot %d: release failed: %s", s.index, _first_line(exc))

    def _dispatch(self) -> None:
        for s in self.slots:
            if not self.jobs.queue:
                return
            if not s.idle:
                continue
            job_id = self.jobs.next_queued()
            rec = self.jobs.jobs[job_id]
            refused = self.jobs.started(job_id, s.index)
            if refused is not None:
                self._publish(job_id, refused)
                continue
            try:
                inputs = {n: (self.jobs.store.job_dir(job_id) / "inputs" / n).read_bytes() for n in ("asset.json", "asset.npz")}
            except OSError as exc:
                self._publish(job_id, self.jobs.failed(job_id, "internal", f"the job's stored inputs cannot be read: {exc}"))
                continue
            rec.where = _where(s)
            self.jobs.store.log(job_id, f"sent to {rec.where}")
            s.job, s.cancel_deadline, s.heard = job_id, None, False
            s.gen = s.actor.run.options(num_returns="streaming").remote(job_id, rec.pipeline, rec.config, inputs)

    # -- requests ---------------------------------------------------------------------------------------
    def cancel(self, rec: JobRecord, grace_s: float) -> None:
        s = self.slots[rec.worker]
        s.actor.cancel.remote(rec.id)
        s.cancel_deadline = time.monotonic() + grace_s

    def release(self) -> dict:
        asked, busy = [], []
        for s in self.slots:
            if s.job is not None:
                s.release_after_job = True
                busy.append(s.index)
            elif s.info and s.release_ref is None:
                s.release_ref = s.actor.release.remote()
                asked.append(s.index)
        return {"released": asked, "after_current_job": busy}

    def gpus(self) -> list[str]:
        return [f"{s.info['name']} on {s.info['node_ip']}" for s in self.slots if s.info and s.info.get("gpu_ids")]

    def describe(self) -> list[dict]:
        out = []
        for s in self.slots:
            i = s.info
            out.append({"index": s.index, "device": i.get("device", "cuda" if self.on_gpu else "cpu"), "pid": i.get("pid"),
                        "state": "busy" if s.job else ("idle" if i else "starting"), "job": s.job,
                        "name": i.get("name", ""), "restarts": s.restarts, "last_release": s.last_release,
                        "executor": "ray", "node": i.get("node"), "node_ip": i.get("node_ip"), "host": i.get("host"),
                        "note": i.get("note", "")})
        return out

    def cluster(self) -> dict:
        nodes = [{"node": n.get("NodeID"), "ip": n.get("NodeManagerAddress"), "alive": bool(n.get("Alive")),
                  "gpus": n.get("Resources", {}).get("GPU", 0), "cpus": n.get("Resources", {}).get("CPU", 0)}
                 for n in self.ray.nodes()]
        return {"address": self.cluster_info.address, "nodes": nodes, "slots": len(self.slots),
                "slot_resource": "GPU" if self.on_gpu else "CPU", "retries": self.retries}

    def label(self) -> str:
        c = self.cluster_info
        what = f"{len(self.slots)} GPU slot(s)" if self.on_gpu else (
            f"{len(self.slots)} CPU slot(s)" + (" (the cluster has no GPUs)" if c.gpus == 0 else ""))
        how = "started on this host" if c.started else f"joined at {c.address}"
        return f"executor: ray, cluster {how} in {c.seconds:.1f} s, {c.nodes} node(s), {c.gpus} GPU(s), {what}"


def _where(s: Slot) -> str:
    i = s.info
    return f"Ray node {i.get('node_ip')} ({i.get('host')}), slot {s.index}, actor pid {i.get('pid')}, {i.get('device')}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
