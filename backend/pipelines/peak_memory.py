"""Peak memory of a pipeline run: the CUDA allocator's peak on a GPU, the process's peak RSS on the CPU."""

from __future__ import annotations

import resource
import sys


class PeakMemory:
    def __init__(self, device: str):
        self.device = device
        torch = sys.modules.get("torch")
        if device.startswith("cuda") and torch is not None:
            torch.cuda.reset_peak_memory_stats()

    def read(self) -> dict:
        out = {"cpu_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
        bound = resource.getrlimit(resource.RLIMIT_AS)[0]
        if bound != resource.RLIM_INFINITY:  # serve --max-worker-memory-gb (backend/limits.py)
            out["cpu_address_space_limit_mb"] = round(bound / 2**20, 1)
        torch = sys.modules.get("torch")
        if self.device.startswith("cuda") and torch is not None:
            out["cuda_peak_allocated_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            out["cuda_peak_reserved_mb"] = round(torch.cuda.max_memory_reserved() / 2**20, 1)
        return out
