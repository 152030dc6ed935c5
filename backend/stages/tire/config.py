"""Settings of TIRE's own stages (no torch: pipeline configs hold them and the server validates those)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import number, require, whole
from ..views.config import TrackConfig


@dataclass(frozen=True)
class InpaintConfig:
    """Progressive subject-driven inpainting (TIRE, Inpaint stage)."""

    strength: float = 0.3
    """Fraction of the diffusion schedule denoised, starting from the initial asset's render; the authors
    found 0.15 too weak and 0.5 too strong."""
    rings_deg: tuple[float, ...] = (20.0, 90.0, 180.0)
    """Views are inpainted ring by ring, by angular distance to the nearest source view."""
    grow_px: int = 1
    """Infill masks grow by this many pixels (inside the foreground) to cover tracking seams."""
    batch_views: int = 8
    """Views a ring sends through one diffusion pipeline call (one UNet batch of 2 x batch_views latents with
    guidance). The result does not depend on it: each view's noise is seeded by its own index."""
    track: TrackConfig = TrackConfig()

    def __post_init__(self) -> None:
        require(
            self,
            (number(self.strength, 0.0, 1.0), "strength", "must be in [0, 1]"),
            (len(self.rings_deg) >= 1 and all(number(r, 0, 180) for r in self.rings_deg)
             and list(self.rings_deg) == sorted(self.rings_deg) and self.rings_deg[-1] == 180.0, "rings_deg",
             "must be increasing angles in [0, 180] ending at 180, so every view belongs to a ring"),
            (whole(self.grow_px, 0, 64), "grow_px", "must be an integer in [0, 64]"),
            (whole(self.batch_views, 1, 256), "batch_views", "must be an integer in [1, 256]"),
        )


@dataclass(frozen=True)
class ResplatConfig:
    """Consistency rounds and the Gaussian fit's inputs (TIRE, Resplat stage); the fit itself is a `FitConfig`."""

    rounds: int = 1
    """Consistency rounds before the final fit (fit, then re-inpaint what disagrees with it)."""
    reinpaint_strength: float = 0.15
    """Strength of the low-strength re-inpainting in the consistency rounds (diffusion inpainter only; the
    classical fallback averages view and render instead)."""
    disagree_threshold: float = 0.08
    """Mean absolute RGB difference above which an inpainted pixel disagrees with the fitted render."""
    source_weight: float = 4.0
    """Loss weight of the reference views relative to the target views (and their weight in the bake)."""
    infill_weight: float = 0.5
    """Loss weight of inpainted pixels relative to observed ones."""
    gaussians: int = 60_000
    """Gaussians initialised on the mesh surface."""
    fit_resolution: int = 0
    """Width the views are downsampled to for the fit (0: their own); renders for the consistency check are
    at full size either way."""

    def __post_init__(self) -> None:
        require(
            self,
            (whole(self.rounds, 0, 10), "rounds", "must be an integer in [0, 10]"),
            (number(self.reinpaint_strength, 0, 1), "reinpaint_strength", "must be in [0, 1]"),
            (number(self.disagree_threshold, 0, 1), "disagree_threshold", "must be in [0, 1]"),
            (number(self.source_weight, 0), "source_weight", "must be >= 0"),
            (number(self.infill_weight, 0), "infill_weight", "must be >= 0"),
            (whole(self.gaussians, 100), "gaussians", "must be an integer >= 100"),
            (whole(self.fit_resolution, 0, 8192), "fit_resolution", "must be 0 or a width in [1, 8192]"),
        )
