"""What the refinement pipelines share: their input checks and the per-stage clock of report.json."""

from __future__ import annotations

import time

from ...protocol.assets import Asset
from ...protocol.errors import InvalidAsset


def check_refinable(asset: Asset, pipeline: str) -> None:
    """A refinement needs reference photos and the artist's UVs to bake onto; say which is missing."""
    if not asset.references:
        raise InvalidAsset(f"{pipeline} needs at least one reference photo; the asset has none", field="references")
    if asset.mesh.uvs is None:
        raise InvalidAsset(f"mesh.uvs is missing: {pipeline} bakes onto the artist's own UVs (unwrap the mesh first)",
                           field="mesh.uvs")


class StageClock:
    """Seconds per stage: `lap(name)` closes the stage that started at the previous lap."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.monotonic()

    def lap(self, stage: str) -> None:
        now = time.monotonic()
        self.seconds[stage] = round(now - self._start, 3)
        self._start = now

    def report(self) -> dict[str, float]:
        return {**self.seconds, "total": round(sum(self.seconds.values()), 3)}


def float_image(img):
    """[H, W, D] uint8 or float32 array -> float32 tensor in [0, 1] (imports torch: call inside run())."""
    import numpy as np
    import torch

    return torch.from_numpy(img.astype(np.float32) / (255.0 if img.dtype == np.uint8 else 1.0))


def to_u8(img):
    """Tensor in [0, 1] -> uint8 numpy array (previews, PNGs)."""
    import numpy as np

    return (np.clip(img.detach().cpu().numpy(), 0, 1) * 255 + 0.5).astype(np.uint8)
