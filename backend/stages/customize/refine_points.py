"""The refine stage's optimisation (Customize-It-3D, DESIGN.md 5.2.4): point colours, point features and the
deferred decoder, by Adam (lr 1e-3, decayed 0.1x over 1000 steps) on the masked L1 to the reference photos
(x1000), an optional novel-view loss (SDS, supplied by the pipeline) and the colour-drift regulariser."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..views.cameras import Cameras
from .deferred import DeferredPoints
from ..common.loss_log import LossLog

LOSS_WINDOW = 25
"""Losses are read back from the device once per this many steps (a read each step stalls the GPU)."""


@dataclass(frozen=True)
class PointRefineConfig:
    """Refine-stage settings; defaults are the authors' (700k points, 16 features, 3000 steps)."""

    points: int = 700_000
    """Surface samples."""
    features: int = 16
    """Learned feature channels per point (besides RGB)."""
    filters: tuple[int, int, int] = (16, 32, 64)
    """Gated-convolution UNet widths at full, 1/2, 1/4 resolution."""
    radius_px: float = 2.0
    """Splat radius in pixels at every level."""
    opacity: float = 0.9
    steps: int = 3000
    learning_rate: float = 1e-3
    lr_decay: float = 0.1
    """The learning rate is multiplied by this over `lr_decay_steps` (exponentially, per step)."""
    lr_decay_steps: int = 1000
    reference_weight: float = 1000.0
    """Weight of the masked L1 to the reference photos."""
    novel_weight: float = 1.0
    """Weight of the novel-view loss (SDS) when the pipeline supplies one."""
    drift_weight: float = 100.0
    """Weight of the colour-drift regulariser (mean squared change of the point colours). Ours: the paper
    names the regulariser, not its weight."""

    def __post_init__(self):
        for name in ("points", "steps", "lr_decay_steps"):
            v = getattr(self, name)
            if not (isinstance(v, int) and v > 0):
                raise ValueError(f"PointRefineConfig.{name} must be a positive integer, got {v!r}")
        for name in ("learning_rate", "radius_px"):
            if not getattr(self, name) > 0:
                raise ValueError(f"PointRefineConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"PointRefineConfig.lr_decay must be in (0, 1], got {self.lr_decay!r}")
        for name in ("reference_weight", "novel_weight", "drift_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"PointRefineConfig.{name} must be >= 0, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class PointRefineResult:
    losses: tuple[float, ...]
    """Total loss of every step."""
    reference_l1: float
    """Masked L1 to the references after the last step (unweighted)."""
    seconds: float


def masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """pred, target [C, H, W, 3], mask [C, H, W] bool -> [] mean absolute error over the masked pixels."""
    m = mask[..., None].to(pred.dtype)
    return ((pred - target).abs() * m).sum() / (3 * m.sum()).clamp_min(1)


def refine_points(
    model: DeferredPoints,
    images: Tensor,  # [C, H, W, 3] reference photos in [0, 1], on the model's device
    masks: Tensor,  # [C, H, W] bool photo foreground
    cameras: Cameras,  # the C reference cameras
    config: PointRefineConfig = PointRefineConfig(),
    *,
    novel_loss: Callable[[DeferredPoints, int], Tensor] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], None] | None = None,
    backend: str = "auto",
) -> PointRefineResult:
    """Optimise `model` in place. `novel_loss(model, step)` returns a [] loss on novel views (e.g. SDS)."""
    if images.ndim != 4 or images.shape[-1] != 3 or masks.shape != images.shape[:3] or len(cameras) != images.shape[0]:
        raise ValueError(f"images must be [C, H, W, 3], masks [C, H, W] and cameras C, got {tuple(images.shape)}, "
                         f"{tuple(masks.shape)}, {len(cameras)}")
    if not masks.any():
        raise ValueError("masks have no foreground pixel: nothing to refine against")
    opt = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    gamma = config.lr_decay ** (1.0 / config.lr_decay_steps)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(gamma ** s, config.lr_decay))
    log = LossLog(images.device, "refine loss")
    start = time.perf_counter()
    for step in range(config.steps):
        if cancel is not None:
            cancel()
        rgb, _ = model(cameras, backend)
        l1 = masked_l1(rgb, images, masks)
        loss = config.reference_weight * l1 + config.drift_weight * model.drift()
        if novel_loss is not None and config.novel_weight > 0:
            loss = loss + config.novel_weight * novel_loss(model, step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        log.record(torch.stack([loss, l1]), step + 1, config.steps, LOSS_WINDOW)  # read back once per window
        if progress is not None:
            l1_shown = log.latest_value(1)
            progress(step + 1, config.steps, f"point refine step {step + 1}/{config.steps}, reference L1 {l1_shown:.4f}")
    with torch.no_grad():
        rgb, _ = model(cameras, backend)
        final = float(masked_l1(rgb, images, masks))
    return PointRefineResult(tuple(log.values), final, time.perf_counter() - start)


def masked_psnr(pred: Tensor, target: Tensor, mask: Tensor) -> float:
    """PSNR (dB) over the masked pixels of [C, H, W, 3] images in [0, 1] (pred clamped)."""
    m = mask[..., None].to(pred.dtype)
    mse = float((((pred.clamp(0, 1) - target) ** 2) * m).sum() / (3 * m.sum()).clamp_min(1))
    return float("inf") if mse == 0 else -10 * math.log10(mse)
