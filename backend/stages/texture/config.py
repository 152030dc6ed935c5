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


@dataclass(frozen=True)
class FidelityConfig:
    """What the references may change in the artist's texture (stages.texture.observe, regions, compose)."""

    min_cosine: float = 0.26
    """A reference observes a texel only when it sees it within acos(0.26) = 75 degrees of its normal."""
    full_cosine: float = 0.35
    """From this cosine (69 degrees) on an observation is fully trusted; between min_cosine and this it blends with the
    infill (grazing photos carry little detail)."""
    depth_tolerance_px: float = 2.0
    """Depth test of a texel in a reference, in pixel footprints of the surface at the texel's slope."""
    agree_sigmas: float = 4.0
    """The initial asset agrees with a reference where they differ by less than this many noise sigmas of
    that reference (the noise measured on the photo itself, after the lighting correction)."""
    agree_floor: float = 0.03
    """...and never less than this (mean absolute RGB in [0, 1]: about 8 levels of 255; photos rendered or
    taken with another filter than ours differ by up to 0.04 at fine strokes after the blur)."""
    compare_blur_px: float = 1.5
    """Photo and initial render are compared after a Gaussian blur of this sigma (photo pixels), so a
    half-pixel misregistration or a different antialiasing at an edge is not a disagreement."""
    feather_px: float = 1.5
    """Sigma, in texels, of the feathering of the change between kept and replaced texels."""
    lighting: bool = True
    """Estimate and remove each reference's exposure, white balance and low-frequency shading (the initial
    asset's unlit render is the reference for "unlit")."""
    lighting_min_change: float = 0.01
    """A correction moving no observed pixel by more than this (relative) is not applied (reported)."""
    regions: int = 32
    """Colour regions of the initial texture (k-means in Lab) whose colour mapping initial -> references is
    learned separately on the observed surface and applied to that region's unobserved texels."""
    region_min_texels: int = 20
    """Observed texels a region needs before its mapping is trusted fully; below, it shrinks toward the
    identity (a region nobody observes keeps its own colours)."""
    island_palette: bool = False
    """Hidden texels whose colour no observed texel has, on a partly observed UV island, move to the Lab
    palette the references show on that island (stages.texture.islands); islands no photo sees keep theirs.
    Off by default: on a label whose back carries other glyphs it repainted the back (texel PSNR 14.3 -> 7.9 dB)."""
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self,
            (number(self.min_cosine, 0) and self.min_cosine < 1, "min_cosine", "must be in [0, 1)"),
            (number(self.full_cosine, self.min_cosine, 1), "full_cosine", "must be in [min_cosine, 1]"),
            (number(self.depth_tolerance_px, 0), "depth_tolerance_px", "must be >= 0"),
            (number(self.agree_sigmas, 0), "agree_sigmas", "must be >= 0"),
            (number(self.agree_floor, 0, 1), "agree_floor", "must be in [0, 1]"),
            (number(self.compare_blur_px, 0, 16), "compare_blur_px", "must be in [0, 16]"),
            (number(self.feather_px, 0, 64), "feather_px", "must be in [0, 64]"),
            (number(self.lighting_min_change, 0, 1), "lighting_min_change", "must be in [0, 1]"),
            (whole(self.regions, 1, 64), "regions", "must be an integer in [1, 64]"),
            (whole(self.region_min_texels, 1), "region_min_texels", "must be an integer >= 1"),
            (whole(self.seed, 0), "seed", "must be an integer >= 0"),
        )
