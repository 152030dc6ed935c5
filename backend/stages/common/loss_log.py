"""Losses read back from the device without stalling it: a window's values are copied to pinned host
memory asynchronously and read once the copy has landed (by the next window, normally), so the host never
waits for the GPU to drain its queue. On the CPU the values are read at once."""

from __future__ import annotations

import math

import torch
from torch import Tensor


class LossLog:
    """Windows of per-step values: [n] losses, or [n, k] rows whose first column is the loss (the others,
    e.g. a term shown in progress text, are kept as `latest`)."""

    def __init__(self, device: torch.device, what: str = "fit loss", finite: bool = True):
        self.device, self.what, self.finite = device, what, finite
        """finite: raise FloatingPointError on a non-finite loss (False: keep it, e.g. a mixed-precision
        step whose loss scaler skips the update)."""
        self.values: list[float] = []
        """The loss of every step read so far."""
        self.rows: list[list[float]] = []
        """Every row read so far ([loss] for a plain log)."""
        self.shown = float("nan")
        """Mean loss of the newest window read."""
        self.latest: list[float] = []
        """The newest row read."""
        self._inflight: list[tuple[Tensor, torch.cuda.Event | None, int]] = []
        self._pending: list[Tensor] = []

    def record(self, row: Tensor, step: int, total: int, window: int = 25) -> None:
        """Keep step `step`'s (1-based, of `total`) row of values [k] on the device; every `window` steps and
        at the last one, queue them (`add`); after the last one, wait for everything."""
        self._pending.append(row.detach())
        if torch.device(self.device).type != "cuda":
            window = 1  # reading a CPU tensor costs nothing: every step's values are there at once
        if len(self._pending) == window or step == total:
            self.add(torch.stack(self._pending), step)
            self._pending.clear()
        if step == total:
            self.poll(wait=True)

    def latest_text(self, column: int, label: str) -> str:
        """"label 0.1234": `column` of the newest row read, or "label pending" before the first window lands
        (a CUDA log reads once per window; progress text never shows a placeholder NaN)."""
        value = self.latest_value(column)
        return f"{label} {value:.4f}" if len(self.latest) > column else f"{label} pending"

    def latest_value(self, column: int) -> float:
        """`column` of the newest row read, NaN before the first window arrives."""
        return self.latest[column] if len(self.latest) > column else float("nan")

    def add(self, window: Tensor, last_step: int) -> None:
        """Queue the values of the steps ending at `last_step` (1-based); read what has arrived."""
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
        """Take in every window whose copy has landed (all of them with `wait`); raise on a non-finite loss
        (unless made with finite=False)."""
        while self._inflight:
            host, event, last_step = self._inflight[0]
            if event is not None and not event.query():
                if not wait:
                    return
                event.synchronize()
            self._inflight.pop(0)
            rows = host.reshape(host.shape[0], -1).tolist()
            window = [r[0] for r in rows]
            mean = sum(window) / len(window)
            if self.finite and not all(math.isfinite(v) for v in window):
                raise FloatingPointError(f"the {self.what} became {mean} before step {last_step}")
            self.values.extend(window)
            self.rows.extend(rows)
            self.shown, self.latest = mean, rows[-1]
