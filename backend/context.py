"""What a running pipeline sees: progress and preview reporting, cancel checks, its folders, its log."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Callable

import numpy as np

from ..protocol.errors import Cancelled
from .stages.common.images import to_u8
from .store import ARTIFACT_NAME, atomic_write

ProgressFn = Callable[[str, int, int, str, float, "np.ndarray | None"], None]


class JobContext:
    """Handed to `pipeline.run(ctx, asset, config)`; the same object serves the server's workers and the
    command line (`likeness3d refine`), which pass different callbacks."""

    def __init__(
        self,
        out_dir: Path,
        work_dir: Path,
        *,
        device: str = "cpu",
        on_progress: ProgressFn | None = None,
        cancel_requested: Callable[[], bool] | None = None,
        log_fn: Callable[[str], None] | None = None,
        guard: Callable[[], None] | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.work_dir = Path(work_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.device = device
        self.started = time.monotonic()
        self._on_progress = on_progress
        self._cancel_requested = cancel_requested
        self._log_fn = log_fn
        self._guard = guard
        """Called before every artifact write; a worker's raises when its server no longer holds the store."""
        self.artifacts: list[str] = []

    def progress(self, stage: str, step: int, total: int, text: str = "", preview: np.ndarray | None = None,
                 *, cancel_point: bool = True) -> None:
        """Report a step of a stage; also a cancel point unless `cancel_point` is False. `preview` is [H, W, 4]
        uint8 (or [H, W, 3])."""
        if preview is not None:
            preview = _rgba_u8(preview)
        if self._on_progress is not None:
            self._on_progress(stage, int(step), int(total), text, time.monotonic() - self.started, preview)
        if cancel_point:
            self.check_cancel()

    def check_cancel(self) -> None:
        """Raise Cancelled if the job was cancelled; pipelines call this between optimisation steps."""
        if self._cancel_requested is not None and self._cancel_requested():
            raise Cancelled("job cancelled by request")

    def log(self, text: str) -> None:
        if self._log_fn is not None:
            self._log_fn(text)

    def add_artifact(self, name: str, data: bytes | str | Path) -> Path:
        """Publish a result file: bytes are written, a path is copied; both land atomically in out_dir."""
        if not ARTIFACT_NAME.match(name):
            raise ValueError(f"artifact name {name!r} must match {ARTIFACT_NAME.pattern}")
        if self._guard is not None:
            self._guard()
        target = self.out_dir / name
        target.parent.mkdir(exist_ok=True)
        if isinstance(data, (bytes, bytearray, memoryview)):
            atomic_write(target, bytes(data))
        else:
            tmp = target.with_name(f".{name}.tmp")
            try:
                shutil.copyfile(data, tmp)
                tmp.replace(target)
            except BaseException:
                tmp.unlink(missing_ok=True)  # a full disk leaves no half-copied file behind
                raise
        if name not in self.artifacts:
            self.artifacts.append(name)
        return target


def _rgba_u8(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"preview must be [H, W, 3|4], got shape {list(img.shape)}")
    if img.dtype != np.uint8:
        img = to_u8(img)
    if img.shape[2] == 3:
        img = np.concatenate([img, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(img)
