"""`selftest`: exercises the job machinery (ordered progress, previews, cancel, artifacts) with no GPU and
no models, so an operator can check a backend and a client end to end in seconds."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from ..config import number, require, whole

DESCRIPTION = "diagnostic: timed steps with previews and a JSON artifact; checks cancel between steps"


@dataclass(frozen=True)
class SelftestConfig:
    steps: int = 10
    """Number of steps, each a progress event and a cancel point."""
    step_seconds: float = 0.05
    """Time spent in each step."""
    preview_size: int = 32
    """Side of the preview image sent with each step (0: none)."""
    honour_cancel: bool = True
    """False behaves like a stuck pipeline (no cancel checks, no progress after the first step), which exercises
    the server's enforced cancel: the worker is ended after the grace period and replaced."""

    def __post_init__(self) -> None:
        require(
            self,
            (whole(self.steps, 1, 100_000), "steps", "must be an integer in [1, 100000]"),
            (number(self.step_seconds, 0.0, 60.0), "step_seconds", "must be in [0, 60]"),
            (whole(self.preview_size, 0, 1024), "preview_size", "must be an integer in [0, 1024]"),
        )


def run(ctx, asset, config: SelftestConfig) -> None:
    t0 = time.monotonic()
    s = config.preview_size
    for step in range(1, config.steps + 1):
        deadline = time.monotonic() + config.step_seconds
        while time.monotonic() < deadline:  # sleep in slices so cancel is noticed within one slice
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
            if config.honour_cancel:
                ctx.check_cancel()
        if not config.honour_cancel and step > 1:
            continue
        preview = None
        if s:
            ramp = np.linspace(0, 255, s, dtype=np.float32)
            preview = np.zeros((s, s, 4), np.uint8)
            preview[..., 0] = ramp[None, :]
            preview[..., 1] = ramp[:, None]
            preview[..., 2] = int(255 * step / config.steps)
            preview[..., 3] = 255
        # a stuck pipeline checks nothing, not even in its one progress report
        ctx.progress("selftest", step, config.steps, f"step {step} of {config.steps}", preview,
                     cancel_point=config.honour_cancel)
    summary = {
        "steps": config.steps,
        "seconds": round(time.monotonic() - t0, 4),
        "mesh": {"vertices": int(len(asset.mesh.vertices)), "faces": int(len(asset.mesh.faces))},
        "references": len(asset.references),
    }
    ctx.add_artifact("selftest.json", json.dumps(summary, indent=1).encode())
