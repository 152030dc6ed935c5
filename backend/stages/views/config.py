"""Settings of the view stages (no torch: pipeline configs hold them and the server validates those)."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

from ...config import number, require

RayBackend = Literal["auto", "embree", "warp"]
"""How a job casts its rays (stages.views.rays): `auto` is Warp on a CUDA job device and Embree on the CPU."""


def ray_backend_rule(backend: str) -> tuple[bool, str, str]:
    """A `require` rule: `warp` asked for on a backend whose Python lacks warp-lang fails at validation, before
    any work, saying what to install."""
    return (backend != "warp" or importlib.util.find_spec("warp") is not None, "ray_backend",
            "'warp' needs NVIDIA Warp, which this backend's Python lacks: pip install warp-lang (in the backend "
            "extra), or set ray_backend to 'auto' or 'embree'")


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


@dataclass(frozen=True)
class CoverageConfig:
    """View planning from the geometry (stages.views.plan): views added after the orbit until every texel the
    mesh uses is seen at a usable angle."""

    budget: int = 12
    """At most this many views are added."""
    candidates: int = 96
    """Directions tried on a sphere around the subject (every elevation, from below too)."""
    min_cosine: float = 0.2
    """A view sees a texel usefully within acos(0.2) = 78 degrees of its normal (the bake's test)."""
    min_gain: int = 1
    """A candidate is added only if it sees at least this many texels no view saw yet."""
    planning_px: int = 96
    """Side of the depth maps the candidates are tested with."""

    def __post_init__(self) -> None:
        from ...config import whole

        require(
            self,
            (whole(self.budget, 0, 256), "budget", "must be an integer in [0, 256]"),
            (whole(self.candidates, 0, 4096), "candidates", "must be an integer in [0, 4096]"),
            (number(self.min_cosine, 0) and self.min_cosine < 1, "min_cosine", "must be in [0, 1)"),
            (whole(self.min_gain, 1), "min_gain", "must be an integer >= 1"),
            (whole(self.planning_px, 16, 1024), "planning_px", "must be an integer in [16, 1024]"),
        )
