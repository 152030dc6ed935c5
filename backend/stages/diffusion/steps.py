"""The per-denoising-step hook every diffusers pipeline call here uses: cancel, count, report."""

from __future__ import annotations

from typing import Callable


def step_callback(total: int, progress: Callable[..., None] | None, cancel: Callable[[], None] | None,
                  describe: Callable[[int, int], str] | None = None):
    """A `callback_on_step_end` for diffusers pipelines: calls `cancel()` (which raises to stop), counts the
    step across calls, then `progress(done, total)`, or `progress(done, total, describe(done, total))`."""
    done = 0

    def on_step(pipeline, i, t, kwargs):
        nonlocal done
        if cancel is not None:
            cancel()
        done += 1
        if progress is not None:
            if describe is None:
                progress(done, total)
            else:
                progress(done, total, describe(done, total))
        return {}

    return on_step
