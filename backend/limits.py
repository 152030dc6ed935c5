"""The memory bound of a worker process: `likeness3d serve --max-worker-memory-gb` sets
$LIKENESS3D_MAX_WORKER_MEMORY (bytes), and a CPU worker applies it to itself as RLIMIT_AS before it loads
anything, so a job that needs more ends `out_of_memory` (a MemoryError in that job) instead of the machine
swapping. CUDA workers are not bounded this way: the CUDA driver reserves far more address space than it
uses. report.json's `peak_memory` says what a job's process reached."""

from __future__ import annotations

import os

ENV = "LIKENESS3D_MAX_WORKER_MEMORY"


def worker_memory_limit() -> int | None:
    value = os.environ.get(ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def apply_worker_memory_limit(device: str) -> int | None:
    """Bound this process's address space when configured and `device` is the CPU; returns the bound (bytes)
    or None."""
    import resource

    limit = worker_memory_limit()
    if limit is None or device.startswith("cuda"):
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit
