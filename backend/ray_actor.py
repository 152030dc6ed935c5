"""The cluster's side of the Ray executor: `JobRunner`, one long-lived Ray actor per GPU (or CPU slot), running
one job at a time on the node Ray placed it on.

A job comes in whole (its pipeline, config and the bytes of its stored inputs) and goes back whole: `run` is a
streaming generator whose items are the job's events in order: ("log", text), ("progress", stage, step, total,
text, elapsed, preview), and last ("done", {artifact name: bytes}) or ("failed", code, message, field). The
job's folders are a temporary folder on the node, removed after the job: no filesystem is shared with the
server, which writes the artifacts into its store. Models load from the node's own models folder
($LIKENESS3D_MODELS, set for the actor by the server's `--models`); the diffusion models a job loads stay in
the actor's model cache for the next job (backend/model_cache.py), as in a local worker.

The actor runs with two threads (`max_concurrency`): `run` on one, so that `cancel` reaches a running job and
sets the flag its pipeline checks at every cancel point. The job itself runs on a thread of `run`'s, whose
callbacks queue the events the generator yields.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import tempfile
import threading
import traceback
from pathlib import Path
from typing import Any, Iterator

from ..protocol.errors import Cancelled, ProtocolError

_END = object()


class _LogTo:
    """What `workers._end_job_models` writes to: the job's events instead of a store on this node."""

    def __init__(self, put):
        self._put = put

    def log(self, job_id: str, text: str) -> bool:
        self._put(("log", text))
        return True


class JobRunner:
    """Made by the server through `ray.remote(JobRunner).options(num_gpus=1, ...)`; never imported by hand."""

    def __init__(self, slot: int):
        import ray

        from . import model_cache

        self.slot = slot
        self._cancel = threading.Event()
        self._job: str | None = None
        self.device, self.name, self.note = "cpu", "cpu", ""
        gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        if gpu_ids:
            import torch

            if torch.cuda.is_available():  # Ray set CUDA_VISIBLE_DEVICES: the actor's GPU is cuda:0
                self.device, self.name = "cuda:0", torch.cuda.get_device_name(0)
            else:
                self.name = f"logical GPU {','.join(gpu_ids)}"
                self.note = f"Ray gave it GPU {','.join(gpu_ids)} but this node has no CUDA device: jobs run on the CPU"
        self.gpu_ids = gpu_ids
        ctx = ray.get_runtime_context()
        self.node_id, self.node_ip = ctx.get_node_id(), ray.util.get_node_ip_address()
        self.host = socket.gethostname()
        self.work_root = Path(os.environ.get("LIKENESS3D_RAY_WORK") or tempfile.gettempdir()) / "likeness3d-ray"
        self.work_root.mkdir(parents=True, exist_ok=True)
        os.environ.setdefault("LIKENESS3D_CACHE", str(self.work_root / "cache"))
        model_cache.enable()  # a long-lived actor: later jobs reuse the models earlier ones loaded

    def info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "device": self.device, "name": self.name, "note": self.note, "gpu_ids": self.gpu_ids,
                "node": self.node_id, "node_ip": self.node_ip, "host": self.host,
                "models": os.environ.get("LIKENESS3D_MODELS", "")}

    def cancel(self, job_id: str) -> bool:
        if self._job == job_id:
            self._cancel.set()
            return True
        return False

    def release(self) -> dict[str, Any]:
        from .workers import _release

        return dict(_release(), node_ip=self.node_ip)

    def run(self, job_id: str, pipeline: str, config: dict, inputs: dict[str, bytes]) -> Iterator[tuple]:
        events: queue.Queue = queue.Queue()
        self._job = job_id
        self._cancel.clear()
        work = Path(tempfile.mkdtemp(prefix=f"{job_id}-", dir=self.work_root))
        thread = threading.Thread(target=self._job_thread, args=(events.put, work, job_id, pipeline, config, inputs),
                                  name=f"likeness3d-job-{job_id}", daemon=True)
        thread.start()
        try:
            while True:
                ev = events.get()
                if ev is _END:
                    break
                yield ev
        finally:
            thread.join()
            self._job = None
            shutil.rmtree(work, ignore_errors=True)

    # -- the job, on its own thread ---------------------------------------------------------------------
    def _job_thread(self, put, work: Path, job_id: str, pipeline: str, config: dict, inputs: dict[str, bytes]) -> None:
        try:
            put(self._run_job(put, work, job_id, pipeline, config, inputs))
        except BaseException as exc:  # never leave the generator waiting
            put(("failed", "internal", f"{type(exc).__name__}: {exc}", None))
        finally:
            put(_END)

    def _run_job(self, put, work: Path, job_id: str, pipeline: str, config: dict, inputs: dict[str, bytes]) -> tuple:
        from .context import JobContext
        from .pipelines import get_pipeline
        from .store import is_full
        from .workers import _end_job_models, _is_oom

        out = work / "artifacts"
        reply: tuple
        try:
            spec = get_pipeline(pipeline)
            cfg = spec.build_config(config)
            from .inputs.budget import fit_references

            asset = fit_references(_asset(work, inputs), cfg)
            ctx = JobContext(
                out, work / "work", device=self.device,
                on_progress=lambda stage, step, total, text, elapsed, preview: put(
                    ("progress", stage, step, total, text, elapsed, preview)),
                cancel_requested=self._cancel.is_set,
                log_fn=lambda text: put(("log", text)),
            )
            where = f"Ray node {self.node_ip} ({self.host}), actor pid {os.getpid()}"
            put(("log", f"running {pipeline} on {self.device} ({where})" + (f"; {self.note}" if self.note else "")))
            spec.run(ctx, asset, cfg)
            reply = ("done", {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and p.name in ctx.artifacts})
        except Cancelled as exc:
            reply = ("failed", exc.code, exc.message, None)
        except ProtocolError as exc:
            message = exc.message
            if exc.code == "model_missing":
                folder = os.environ.get("LIKENESS3D_MODELS") or "(none: serve --models DIR names it)"
                message = f"{message} [on Ray node {self.node_ip} ({self.host}), whose models folder is {folder}]"
            put(("log", f"{exc.code}: {message}"))
            reply = ("failed", exc.code, message, exc.field)
        except Exception as exc:  # the job fails, the actor lives on
            put(("log", traceback.format_exc()))
            if is_full(exc):
                reply = ("failed", "storage_full", f"node {self.node_ip}: its temporary folder {self.work_root} is full: {exc}", None)
            else:
                code = "out_of_memory" if _is_oom(exc) else "internal"
                reply = ("failed", code, f"{type(exc).__name__}: {exc}", None)
        _end_job_models(_LogTo(put), job_id)  # before the reply: the job's log is complete when its client hears
        return reply


def _asset(work: Path, inputs: dict[str, bytes]):
    """The job's inputs as the store holds them (asset.json + asset.npz), read back into an Asset."""
    import json

    import numpy as np

    from ..protocol.assets import asset_from_wire

    (work / "inputs").mkdir()
    npz_path = work / "inputs" / "asset.npz"
    npz_path.write_bytes(inputs["asset.npz"])
    with np.load(npz_path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    return asset_from_wire(json.loads(inputs["asset.json"]), arrays)
