"""Settings of the bake (no torch: pipeline configs hold them and the server validates those)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import number, require, whole


@dataclass(frozen=True)
class BakeConfig:
    """Projection of views onto the UV texture."""

    texture_size: tuple[int, int] | None = None
    """(height, width) of the baked texture; default (None): the mesh's own texture size, else 1024 x 1024."""
    min_cosine: float = 0.2
    """Views seeing a texel at more than acos(0.2) = 78 degrees from its normal are skipped (grazing)."""
    cosine_power: float = 2.0
    """Blend weight = view weight x cosine ** power: frontal views dominate."""
    depth_tolerance_px: float = 2.0
    """Depth test tolerance, in pixel footprints of the surface at the texel's slope."""
    min_alpha: float = 0.5
    """With RGBA views, pixels less opaque than this do not count."""
    dilate_px: int = 16
    """Gutter texels this close to an island take the island's colours."""

    def __post_init__(self) -> None:
        size = self.texture_size
        require(
            self,
            (number(self.min_cosine, 0) and self.min_cosine < 1, "min_cosine", "must be in [0, 1)"),
            (whole(self.dilate_px, 0), "dilate_px", "must be an integer >= 0"),
            (size is None or (len(size) == 2 and all(whole(s, 1, 16384) for s in size)), "texture_size",
             "must be (height, width) with each side in [1, 16384], or None for the mesh's own size"),
        )
