"""Settings of Customize-It-3D's stages (no torch: pipeline configs hold them and the server validates those)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ...config import number, require, whole


@dataclass(frozen=True)
class CoarseConfig:
    """The coarse stage: shading-aware score distillation on Gaussians initialised on the mesh (the SDS
    settings are a `diffusion.config.SDSConfig` beside it)."""

    steps: int = 1000
    """SDS steps (ours: the authors optimise a NeRF for far longer; colour-only Gaussians converge sooner)."""
    gaussians: int = 100_000
    """Gaussians initialised on the mesh surface."""
    normal_frac: float = 0.1
    """Fraction of the steps that render normals with the normal-map prompt."""
    albedo_frac: float = 0.3
    """Until this fraction: albedo only; after it the random mix."""
    mix: tuple[float, float, float] = (0.4, 0.2, 0.4)
    """Probabilities of albedo, textureless, lambertian in the random mix."""
    ambient: float = 0.3
    """Ambient term of the Lambertian shading."""
    resolution: int = 128
    """Side of the rendered novel views (resized to the SDS resolution before encoding)."""
    polar_deg: tuple[float, float] = (70.0, 110.0)
    radius_scale: tuple[float, float] = (1.0, 1.5)
    fov_deg: float = 60.0
    reference_weight: float = 1000.0
    mask_weight: float = 100.0
    depth_weight: float = 10.0
    """Weight of 1 - depth correlation on the references (ours: the paper names the term, not its weight)."""
    sds_weight: float = 1.0
    lr_color: float = 1e-2
    lr_quat: float = 1e-3

    def __post_init__(self):
        lo, hi = self.polar_deg
        require(
            self,
            (whole(self.steps, 1), "steps", "must be a positive integer"),
            (whole(self.gaussians, 100), "gaussians", "must be an integer >= 100"),
            (number(self.normal_frac, 0, 1) and number(self.albedo_frac, self.normal_frac, 1), "albedo_frac",
             "must satisfy 0 <= normal_frac <= albedo_frac <= 1"),
            (len(self.mix) == 3 and min(self.mix) >= 0 and sum(self.mix) > 0, "mix", "must be 3 non-negative weights"),
            (0 < lo <= hi < 180, "polar_deg", "must be within (0, 180)"),
            (0 < self.radius_scale[0] <= self.radius_scale[1], "radius_scale", "must be 0 < lo <= hi"),
            (number(self.depth_weight, 0), "depth_weight", "must be >= 0"),
            (whole(self.resolution, 8) and self.resolution % 8 == 0, "resolution", "must be a multiple of 8"),
        )


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
    """Splat radius in pixels at every level (the authors: 2 px)."""
    opacity: float = 0.9
    steps: int = 3000
    learning_rate: float = 1e-3
    lr_decay: float = 0.1
    """The learning rate is multiplied by this over `lr_decay_steps` (exponentially, per step)."""
    lr_decay_steps: int = 1000
    reference_weight: float = 1000.0
    """Weight of the masked L1 to the reference photos."""
    novel: str = "sds"
    """Novel-view loss: `sds` (score distillation every step) or `pseudo` (masked L1 to img2img-enhanced
    pseudo views made once before refining; DESIGN.md 5.2.4 names both)."""
    sds_weight: float = 1.0
    """Weight of SDS on novel views (`novel` = `sds`; 0: reference L1 and drift only). The pseudo views'
    weight is `PseudoViewConfig.weight`."""
    drift_weight: float = 100.0
    """Weight of the colour-drift regulariser (mean squared change of the point colours). Ours: the paper
    names the regulariser, not its weight."""

    def __post_init__(self):
        require(
            self,
            (whole(self.points, 100), "points", "must be an integer >= 100"),
            (whole(self.features, 0, 256), "features", "must be an integer in [0, 256]"),
            (whole(self.steps, 1), "steps", "must be a positive integer"),
            (whole(self.lr_decay_steps, 1), "lr_decay_steps", "must be a positive integer"),
            (number(self.learning_rate) and self.learning_rate > 0, "learning_rate", "must be > 0"),
            (number(self.radius_px) and self.radius_px > 0, "radius_px", "must be > 0"),
            (number(self.lr_decay) and 0 < self.lr_decay <= 1, "lr_decay", "must be in (0, 1]"),
            (self.novel in ("sds", "pseudo"), "novel", "must be 'sds' or 'pseudo'"),
            (number(self.reference_weight, 0), "reference_weight", "must be >= 0"),
            (number(self.sds_weight, 0), "sds_weight", "must be >= 0"),
            (number(self.drift_weight, 0), "drift_weight", "must be >= 0"),
        )


@dataclass(frozen=True)
class PseudoViewConfig:
    """Pseudo views of the refine stage; `views` and `strength` are the authors'."""

    views: int = 33
    """Views spread around the subject, enhanced once before refining (the authors: 33)."""
    strength: tuple[float, float] = (0.05, 0.15)
    """Img2img strength of each view, uniform in [lo, hi] (the authors: 0.05-0.15). diffusers runs
    int(num_inference_steps x strength) denoising steps, so the strength is effectively that count over
    num_inference_steps; the report gives those effective values."""
    weight: float = 100.0
    """Weight of the pseudo-view L1 (ours: the paper gives none; a tenth of the reference L1's 1000, as the
    targets are the model's guesses, not photos; 0: reference L1 and drift only)."""
    num_inference_steps: int = 100
    """Length of the full schedule. diffusers runs whole steps (strength k / num_inference_steps); with 100 the
    authors' 0.05-0.15 is exactly 5-15 steps, both ends included (SD's default 50 can only give 0.06-0.14)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance of the img2img pipeline (SD's default)."""
    batch_size: int = 8
    """Views per pipeline call (views with the same number of denoising steps share a call); results do not
    depend on it."""
    polar_deg: tuple[float, float] = (70.0, 110.0)
    """Polar angles of the views (those of the SDS views, `CoarseConfig`)."""
    distance_scale: float = 1.25
    """Distance in units of the framing distance (the middle of the SDS views' 1.0-1.5)."""
    fov_deg: float = 60.0

    def __post_init__(self):
        lo, hi = self.polar_deg
        require(
            self,
            (whole(self.views, 1, 1000), "views", "must be an integer in [1, 1000]"),
            (whole(self.num_inference_steps, 1), "num_inference_steps", "must be a positive integer"),
            (whole(self.batch_size, 1), "batch_size", "must be a positive integer"),
            (len(self.strength) == 2 and 0 < self.strength[0] <= self.strength[1] <= 1, "strength",
             "must be [lo, hi] with 0 < lo <= hi <= 1"),
            (math.ceil(self.strength[0] * self.num_inference_steps - 1e-9) >= 1
             and math.ceil(self.strength[0] * self.num_inference_steps - 1e-9)
             <= math.floor(self.strength[1] * self.num_inference_steps + 1e-9), "strength",
             f"must hold a whole number of denoising steps >= 1 of num_inference_steps ({self.num_inference_steps}): "
             f"widen the range or raise num_inference_steps"),
            (number(self.weight, 0), "weight", "must be >= 0"),
            (0 < lo <= hi < 180, "polar_deg", "must be within (0, 180)"),
            (number(self.distance_scale) and self.distance_scale > 0, "distance_scale", "must be > 0"),
            (number(self.fov_deg) and 0 < self.fov_deg < 180, "fov_deg", "must be in (0, 180)"),
        )
