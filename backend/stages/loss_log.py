"""Losses read back from the device without stalling it: a window's values are copied to pinned host
memory asynchronously and read once the copy has landed (by the next window, normally), so the host never
waits for the GPU to drain its queue. On the CPU the values are read at once."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class LossLog:
    def __init__(self, device: torch.device, what: str = "loss"):
        self.device, self.what = device, what
        self.values: list[float] = []
        self.shown = float("nan")
        """Mean of the newest window read."""
        self._inflight: list[tuple[Tensor, torch.cuda.Event | None, int]] = []

    def add(self, window: Tensor, last_step: int) -> None:
        """Queue the [n] losses of the steps ending at `last_step` (1-based); read what has arrived."""
        if self.device.type == "cuda":
            host = torch.empty(window.shape, dtype=window.dtype, pin_memory=True)
            host.copy_(window.detach(), non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._inflight.append((host, event, last_step))
        else:
            self._inflight.append((window.detach().clone(), None, last_step))
        self.poll()

    def poll(self, wait: bool = False) -> None:
        """Take in every window whose copy has landed (all of them with `wait`); raise on a non-finite loss."""
        while self._inflight:
            host, event, last_step = self._inflight[0]
            if event is not None and not event.query():
                if not wait:
                    return
                event.synchronize()
            self._inflight.pop(0)
            window = host.tolist()
            mean = sum(window) / len(window)
            if not math.isfinite(mean):
                raise FloatingPointError(f"fit: the {self.what} became {mean} before step {last_step}")
            self.values.extend(window)
            self.shown = mean
