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
    """A reference observes a texel only when it sees it within acos(0.26) = 75 degrees of its normal (0.2 = the
    bake's 78 degrees: see docs/BENCHMARKS.md)."""
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
    render_filter_px: float = -1.0
    """The initial asset is rendered for the comparison as the photo's pixels were formed: 16 rays a pixel
    weighted by a Blackman-Harris filter this wide (pixels), 0 = a one-pixel box (the product's own renders);
    -1 (the default): the filter is estimated per photo, the candidate whose render is nearest the photo
    (stages.texture.formation; reported per reference as `pixel_filter`)."""
    confirm_reduction: float = 0.4
    """Analysis by synthesis: a disagreement is taken from the photos only where the candidate texture (the
    disagreeing texels moved to the photos' colour), rendered the same way, reduces the residual to the photo by
    at least this fraction (fading out at half of it); elsewhere the texel keeps its initial value. 0: off."""
    agree_edge: float = 0.0
    """The tolerance grows by this fraction of the initial render's local contrast (its range over 3 x 3 photo
    pixels): another renderer's pixel filter moves a right edge by a fraction of its contrast
    (stages.texture.agreement)."""
    agree_area_px: int = 0
    """A disagreement counts only where it persists over an area (2 x this + 1) photo pixels across (a
    morphological opening): one- and two-pixel outline residuals of right strokes are not disagreements."""
    agree_min_pixels: int = 1
    """...and only on connected areas of at least this many photo pixels."""
    keep_grazing: bool = False
    """An agreement seen only at a grazing angle (below full_cosine) keeps the texel bit for bit too; off: it
    blends with the infill by its confidence."""
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
    shading_chroma: float = 0.5
    """On a lit photo (its lighting removed), an area of disagreement that differs from the initial asset by a
    brightness only (its per-channel log ratios spread by at most this fraction of their mean) is the lighting's
    residual, not a wrong colour: it is not taken (stages.texture.formation). 0: off."""
    keep_agreeing_beyond: bool = True
    """A texel a photo shows only beyond min_cosine (too grazing to take its colour from) that agrees with it keeps its
    initial colour: no region map, no feathering (stages.texture.evidence)."""
    agreeing_identity: bool = True
    """The region maps learn, on a texel where the photos agree with the initial asset, the identity (their
    difference there is within their noise or their lighting residual: no evidence of a colour change)."""
    counterpart_de: float = 0.0
    """A hidden texel whose initial colour is this far (Lab) from every observed texel's keeps its own colour (the
    region maps learned nothing about it), fading in below; 0: off."""
    map_min_change: float = 0.0
    """A region map's change to a texel smaller than this (max over RGB) is not applied, larger ones are shrunk by
    it (soft): a map learned from agreeing photos is the identity within their noise, and the texel keeps its value."""
    continuation: bool = False
    """Hidden texels of a partly observed material region whose colours are a cast (per-channel Lab gain and
    offset) of what the references show there move to the observed statistics, by distance band
    (stages.texture.continuation); another-shaped distribution or an unobserved region is left alone."""
    continuation_edge_de: float = 6.0
    """Neighbouring texels closer than this in Lab belong to the same material region."""
    continuation_shape: float = 0.35
    """A band is moved only where its standardised Lab quantiles differ from the observed ones by at most this
    (mean, in standard deviations)."""
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
            (number(self.render_filter_px, -1, 4) and (self.render_filter_px >= 0 or self.render_filter_px == -1),
             "render_filter_px", "must be -1 (estimated per photo) or in [0, 4] (0: box filter)"),
            (number(self.confirm_reduction, 0, 1), "confirm_reduction", "must be in [0, 1] (0: off)"),
            (number(self.agree_edge, 0, 4), "agree_edge", "must be in [0, 4]"),
            (whole(self.agree_area_px, 0, 16), "agree_area_px", "must be an integer in [0, 16]"),
            (whole(self.agree_min_pixels, 1), "agree_min_pixels", "must be an integer >= 1"),
            (isinstance(self.keep_grazing, bool), "keep_grazing", "must be true or false"),
            (number(self.feather_px, 0, 64), "feather_px", "must be in [0, 64]"),
            (number(self.lighting_min_change, 0, 1), "lighting_min_change", "must be in [0, 1]"),
            (whole(self.regions, 1, 64), "regions", "must be an integer in [1, 64]"),
            (whole(self.region_min_texels, 1), "region_min_texels", "must be an integer >= 1"),
            (number(self.map_min_change, 0, 1), "map_min_change", "must be in [0, 1]"),
            (number(self.shading_chroma, 0, 10), "shading_chroma", "must be in [0, 10] (0: off)"),
            (isinstance(self.keep_agreeing_beyond, bool), "keep_agreeing_beyond", "must be true or false"),
            (isinstance(self.agreeing_identity, bool), "agreeing_identity", "must be true or false"),
            (number(self.counterpart_de, 0, 100), "counterpart_de", "must be in [0, 100] (0: off)"),
            (isinstance(self.continuation, bool), "continuation", "must be true or false"),
            (number(self.continuation_edge_de, 0, 100), "continuation_edge_de", "must be in [0, 100]"),
            (number(self.continuation_shape, 0, 10), "continuation_shape", "must be in [0, 10]"),
            (whole(self.seed, 0), "seed", "must be an integer >= 0"),
        )
