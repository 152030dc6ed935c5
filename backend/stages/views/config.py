"""Settings of the view stages (no torch: pipeline configs hold them and the server validates those)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import number, require


@dataclass(frozen=True)
class TrackConfig:
    """Visibility tests of the backward track."""

    depth_tolerance: float = 0.01
    """A point is occluded in a known view when its depth there exceeds the view's depth by more than this
    fraction of the depth (1 cm at 1 m)."""
    max_angle_deg: float = 75.0
    """Known views that see the surface at more than this angle from its normal are grazing: rejected."""
    min_alpha: float = 0.5
    """Known-view pixels less opaque than this do not show the subject."""
    border_px: float = 1.0
    """Projections closer than this to a known image's border are rejected (no colour to interpolate)."""

    def __post_init__(self) -> None:
        require(
            self,
            (number(self.max_angle_deg) and 0.0 < self.max_angle_deg < 90.0, "max_angle_deg", "must be in (0, 90)"),
            (number(self.depth_tolerance) and self.depth_tolerance > 0, "depth_tolerance", "must be > 0"),
            (number(self.min_alpha, 0, 1), "min_alpha", "must be in [0, 1]"),
            (number(self.border_px, 0), "border_px", "must be >= 0"),
        )
