"""Worker processes: one per GPU (or one on the CPU), each running one job at a time.

The server talks to a worker over a multiprocessing pipe. Server -> worker: ("run", job_id, pipeline,
config), ("cancel", job_id), ("release",), ("stop",). Worker -> server: ("ready", info), ("progress",
job_id, stage, step, total, text, elapsed, preview), ("done", job_id), ("failed", job_id, code, message),
("released", info). A worker that dies is noticed by the server through its pipe and its process sentinel.

A worker keeps the diffusion models its jobs load (backend/model_cache.py): after every job, whatever its
outcome, they are brought back to their weights as loaded and the job's log says which were loaded and which
reused; `release` drops them all ("models_dropped" in its reply to the server) and empties the CUDA cache.

A worker dies with its server: on Linux the kernel sends it SIGKILL when the server goes (PR_SET_PDEATHSIG),
and everywhere a watchdog thread ends it within WATCHDOG_S of its parent changing. Behind both, every write it
makes into a job checks the store's owner epoch (owner.py): a worker of a server that no longer holds the
store ends without writing.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..protocol.errors import Cancelled, ProtocolError

_SPAWN = mp.get_context("spawn")  # never fork a process that holds zmq sockets or a CUDA context
WATCHDOG_S = 0.2
"""How often a worker checks that its server is still its parent (the portable path; Linux has PDEATHSIG)."""
STALE_EXIT = 75
"""Exit code of a worker that found its store held by another server (it wrote nothing)."""
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """End this process when `parent_pid` (the server) ends: the kernel's parent-death signal on Linux, and a
    watchdog thread that polls the parent pid everywhere."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still holds
    if os.getppid() != parent_pid:
        os._exit(0)  # the server died before the signal was armed

    def watch() -> None:
        while True:
            time.sleep(WATCHDOG_S)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="likeness3d-parent-watchdog", daemon=True).start()


def worker_main(conn, device: str, store_root: str, epoch: int | None = None, parent_pid: int | None = None) -> None:
    """Entry point of a worker process."""
    if parent_pid is not None:
        die_with_parent(parent_pid)
    from .store import StaleOwner

    try:
        _worker_loop(conn, device, store_root, epoch)
    except StaleOwner as exc:
        print(f"likeness3d worker {os.getpid()}: {exc}; ending without writing", file=sys.stderr, flush=True)
        os._exit(STALE_EXIT)


def _worker_loop(conn, device: str, store_root: str, epoch: int | None) -> None:
    if device.startswith("cuda:"):
        # each worker sees exactly its own GPU, which it then calls cuda:0
        os.environ["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
        device = "cuda:0"
        # a long-lived worker runs jobs of very different shapes (LoRA training, batched inpainting, fits):
        # growable segments keep the allocator's pool close to what is in use (an operator's setting wins)
        os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server decides when workers stop
    from .limits import apply_worker_memory_limit

    apply_worker_memory_limit(device)  # serve --max-worker-memory-gb (CPU workers)
    # jobs of one server share a cache (class images) beside its job store, unless the operator chose one
    os.environ.setdefault("LIKENESS3D_CACHE", str(Path(store_root) / "cache"))
    from . import model_cache
    from .store import JobStore

    model_cache.enable()  # a long-lived process: later jobs reuse the models earlier ones loaded
    store = JobStore(store_root, epoch=epoch)
    conn.send(("ready", {"pid": os.getpid(), "device": device, "name": _device_name(device)}))
    pending_release = False
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return  # the server is gone
        kind = msg[0]
        if kind == "stop":
            return
        if kind == "release":
            conn.send(("released", _release()))
        elif kind == "run":
            pending_release = _run_job(conn, store, device, *msg[1:])
            if pending_release:
                conn.send(("released", _release()))
        # a "cancel" for a job that already ended is ignored


def _run_job(conn, store, device: str, job_id: str, pipeline: str, config: dict) -> bool:
    """Run one job; report done/failed. Returns whether a release arrived while it ran."""
    from .context import JobContext
    from .pipelines import get_pipeline
    from .store import is_full, storage_error

    state = {"cancel": False, "release": False}

    def cancel_requested() -> bool:
        while conn.poll(0):
            msg = conn.recv()
            if msg[0] == "cancel" and msg[1] == job_id:
                state["cancel"] = True
            elif msg[0] == "release":
                state["release"] = True
            elif msg[0] == "stop":
                state["cancel"] = True
        return state["cancel"]

    def on_progress(stage, step, total, text, elapsed, preview) -> None:
        conn.send(("progress", job_id, stage, step, total, text, elapsed, preview))

    job_dir = store.job_dir(job_id)
    reply: tuple = ("done", job_id)
    try:
        spec = get_pipeline(pipeline)
        cfg = spec.build_config(config)
        from .inputs.budget import fit_references

        asset = fit_references(store.load_asset(job_id), cfg)  # no larger than the job uses, before any work
        ctx = JobContext(
            job_dir / "artifacts",
            job_dir / "work",
            device=device,
            on_progress=on_progress,
            cancel_requested=cancel_requested,
            log_fn=lambda text: store.log(job_id, text),
            guard=store.check_owner,
        )
        store.log(job_id, f"running {pipeline} on {device}")
        spec.run(ctx, asset, cfg)
    except Cancelled as exc:
        reply = ("failed", job_id, exc.code, exc.message)
    except ProtocolError as exc:
        store.log(job_id, f"{exc.code}: {exc.message}")
        reply = ("failed", job_id, exc.code, exc.message, exc.field)
    except Exception as exc:  # the one catch-all of a worker: the job fails, the worker lives on
        store.log(job_id, traceback.format_exc())
        if is_full(exc):
            err = storage_error(exc, store.root, "the job wrote its results")
            reply = ("failed", job_id, err.code, err.message)
        else:
            code = "out_of_memory" if _is_oom(exc) else "internal"
            reply = ("failed", job_id, code, f"{type(exc).__name__}: {exc}")
    _end_job_models(store, job_id)  # before the reply: the job's log is complete when its client hears
    conn.send(reply)
    return state["release"]


def _end_job_models(store, job_id: str) -> None:
    """Bring the cached models back to their weights as loaded; log which the job loaded and reused."""
    from . import model_cache

    try:
        uses = model_cache.end_job()
        for use in uses:
            what = " ".join(str(k) for k in use.key) if isinstance(use.key, tuple) else str(use.key)
            store.log(job_id, f"model cache: {what}: {use.outcome} in {use.seconds:.2f} s")
        if uses:
            store.log(job_id, f"model cache: {len(model_cache.cached())} model(s) kept for later jobs")
    except Exception:  # the job's outcome stands; a cache that cannot be tidied is emptied
        store.log(job_id, "model cache: clean-up failed, every cached model dropped\n" + traceback.format_exc())
        model_cache.clear()


def _is_oom(exc: BaseException) -> bool:
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(exc, getattr(torch.cuda, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, MemoryError)


def _release() -> dict[str, Any]:
    """Drop cached models and give GPU memory back to the driver."""
    import gc

    freed: dict[str, Any] = {"pid": os.getpid()}
    from . import model_cache

    freed["models_dropped"] = model_cache.clear()
    gc.collect()  # the dropped modules (and any reference cycle of theirs) go before the CUDA cache is emptied
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        before = torch.cuda.memory_reserved()
        torch.cuda.empty_cache()
        freed["cuda_bytes_freed"] = int(before - torch.cuda.memory_reserved())
    return freed


def _device_name(device: str) -> str:
    if device == "cpu":
        return "cpu"
    try:
        import torch

        return torch.cuda.get_device_name(0)
    except Exception as exc:  # reported, not fatal: the job will fail with the real error
        return f"unavailable ({type(exc).__name__}: {exc})"


@dataclass
class Worker:
    """The server's handle on one worker process."""

    index: int
    device: str
    store_root: str
    epoch: int | None = None
    """The server's owner epoch of the store (owner.py), checked by the worker before each write."""
    process: Any = None
    conn: Any = None
    job: str | None = None
    info: dict = field(default_factory=dict)
    ready: bool = False
    cancel_deadline: float | None = None
    started_at: float = 0.0
    restarts: int = 0
    last_release: dict | None = None
    """What the worker's last `release` freed (models dropped, CUDA bytes), shown by `status`."""

    def start(self) -> None:
        parent, child = _SPAWN.Pipe(duplex=True)
        self.process = _SPAWN.Process(
            target=worker_main, args=(child, self.device, self.store_root, self.epoch, os.getpid()), name=f"likeness3d-worker-{self.index}", daemon=True
        )
        self.process.start()
        child.close()
        self.conn = parent
        self.job, self.ready, self.cancel_deadline, self.info = None, False, None, {}
        self.started_at = time.monotonic()

    @property
    def idle(self) -> bool:
        return self.ready and self.job is None

    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def send(self, *msg: Any) -> bool:
        try:
            self.conn.send(msg)
            return True
        except (OSError, EOFError, BrokenPipeError):
            return False

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        if self.conn is not None:
            self.conn.close()

    def stop(self, timeout: float = 3.0) -> None:
        if self.process is None:
            return
        self.send("stop")
        self.process.join(timeout)
        self.kill()

    def describe(self) -> dict:
        return {
            "index": self.index,
            "device": self.device,
            "pid": self.process.pid if self.process else None,
            "state": "busy" if self.job else ("idle" if self.ready else "starting"),
            "job": self.job,
            "name": self.info.get("name", ""),
            "restarts": self.restarts,
            "last_release": self.last_release,
        }


def resolve_devices(gpus: str) -> list[str]:
    """`--gpus` -> worker devices: "cpu", "auto" (every visible NVIDIA GPU, else the CPU) or "0,1" (one worker
    per index; an index given twice, "0,0", runs two workers on that GPU, for a GPU with room for two jobs)."""
    gpus = gpus.strip()
    if gpus == "cpu":
        return ["cpu"]
    if gpus == "auto":
        n = _count_gpus()
        return [f"cuda:{i}" for i in range(n)] or ["cpu"]
    try:
        ids = [int(x) for x in gpus.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--gpus must be 'auto', 'cpu' or a list like '0,1'; got {gpus!r}") from None
    if not ids or any(i < 0 for i in ids):
        raise ValueError(f"--gpus must list non-negative GPU indices; got {gpus!r}")
    n = _count_gpus()
    if max(ids) >= n:
        seen = f"shows {n} NVIDIA GPU{'s' if n != 1 else ''}" if n else "shows no NVIDIA GPU"
        hint = f"name indices below {n}, or use --gpus auto" if n else "use --gpus cpu (or auto)"
        raise ValueError(f"--gpus {gpus}: this machine {seen} (nvidia-smi, CUDA_VISIBLE_DEVICES); {hint}")
    return [f"cuda:{i}" for i in ids]


def _count_gpus() -> int:
    """Count GPUs without importing torch in the server front (nvidia-smi, honouring CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([x for x in visible.split(",") if x.strip() and x.strip() != "-1"])
    import shutil
    import subprocess

    exe = shutil.which("nvidia-smi")
    if exe is None:
        return 0
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def store_path(store_root: Path | str) -> str:
    return str(Path(store_root).resolve())
