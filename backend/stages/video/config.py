"""Settings of the subject-video stages: 3DreamBooth (one-frame LoRA), 3Dapter (the conditioning LoRA), the
views, generation. No torch here: the `video` pipeline's config holds these and the server validates them.

Defaults are the 3DreamBooth paper's where it gives them (r 16, alpha 32, lr 1e-4, 400 steps, "a video of a
sks <class>") and Wan 2.1's published text-to-video settings otherwise (81 frames at 480 x 832, 50 steps,
guidance 5, flow shift 3 at 480p, 16 fps)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import number, require, whole

IDENTIFIER = "sks"
"""The rare identifier token every subject prompt must contain (DreamBooth's)."""

SUBJECT_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "ffn.net.0.proj", "ffn.net.2")
"""The transformer's attention (self and cross) and feed-forward projections: 3DreamBooth's LoRA targets
(the paper: "attention and MLP modules"); the module names of diffusers' `WanTransformer3DModel`."""

ADAPTER_TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ffn.net.0.proj", "ffn.net.2")
"""The projections the conditioning tokens pass through (self-attention and feed-forward; they skip the
cross-attention to the prompt): 3Dapter's LoRA targets."""


@dataclass(frozen=True)
class VideoViewsConfig:
    """Step 1: the views the subject is learnt from and the conditioning subset."""

    size: int = 480
    """Side of the square views (pixels, a multiple of 16): references masked to white, square-padded with
    white, resized to size x size. Wan's 480p side."""
    cover_degrees: float = 90.0
    """Arc of azimuth one conditioning view is taken to cover (centred on its camera's azimuth around the
    subject); the conditioning subset is the fewest views whose arcs cover 360 degrees (the authors: "a minimal
    set covering 360 degrees"). 90 gives 4 views for references spread around the subject."""
    min_conditioning: int = 2
    """At least this many conditioning views (3Dapter conditions on a set; 2 is the least that spans sides)."""
    max_conditioning: int = 4
    """At most this many conditioning views (each adds a latent frame of tokens to every attention)."""
    mesh_views: int = 0
    """Renders of the asset (its own texture, unlit) added to the views, at this many azimuths evenly around it at
    `mesh_elevation`; 0: the references alone. The conditioning subset is chosen from the references, and from
    the renders too only when the references leave part of the circle uncovered."""
    mesh_elevation: float = 15.0
    """Elevation of the asset renders (degrees)."""
    refine_first: bool = False
    """True: refine the asset with TIRE first (settings under the video config's `tire`; its results published
    with the prefix `tire_`: tire_mesh.glb, tire_texture.png, tire_report.json, ...) and render the refined asset
    for the `mesh_views`, so the subject's hidden side in the views is TIRE's, not the initial asset's."""

    def __post_init__(self):
        require(
            self,
            (whole(self.size, 16, 2048) and self.size % 16 == 0, "size", "must be a multiple of 16 in [16, 2048]"),
            (number(self.cover_degrees) and 1 <= self.cover_degrees <= 360, "cover_degrees", "must be in [1, 360]"),
            (whole(self.min_conditioning, 1, 64), "min_conditioning", "must be an integer in [1, 64]"),
            (whole(self.max_conditioning, 1, 64) and self.max_conditioning >= self.min_conditioning,
             "max_conditioning", "must be an integer in [min_conditioning, 64]"),
            (whole(self.mesh_views, 0, 64), "mesh_views", "must be an integer in [0, 64]"),
            (number(self.mesh_elevation, -89, 89), "mesh_elevation", "must be in [-89, 89] degrees"),
            (isinstance(self.refine_first, bool), "refine_first", "must be true or false"),
            (not self.refine_first or self.mesh_views > 0, "refine_first",
             "needs mesh_views > 0 (the refined asset is seen through its renders): set views.mesh_views, e.g. 8"),
        )


@dataclass(frozen=True)
class DreamBoothVideoConfig:
    """Step 2: 3DreamBooth, a LoRA on the video transformer trained on the views, each a one-frame video
    (one latent frame: every token has temporal index 0, so the temporal pathways are bypassed)."""

    steps: int = 400
    """Optimisation steps (the authors': 400)."""
    rank: int = 16
    """LoRA rank (the authors': 16)."""
    alpha: float = 32.0
    """LoRA alpha (the authors': 32); the update is scaled by alpha / rank = 2."""
    learning_rate: float = 1e-4
    """AdamW learning rate, constant (the authors': 1e-4); 3Dapter's LoRA is optimised jointly at the same rate."""
    weight_decay: float = 1e-2
    """AdamW weight decay (diffusers' DreamBooth-LoRA example)."""
    max_grad_norm: float = 1.0
    """Gradient clipping of the LoRA parameters."""
    prompt_template: str = "a video of a sks {class_word}"
    """The one universal prompt of every view (the authors': "a video of a sks <class>")."""
    timestep_shift: float = 3.0
    """Training sigmas: u ~ U(0, 1) shifted as Wan's flow schedule is, sigma = s u / (1 + (s - 1) u)."""
    target_modules: tuple[str, ...] = SUBJECT_TARGETS
    """Modules that get the subject LoRA."""
    cuda_graph: bool = True
    """On CUDA, the transformer's forward and backward of a step are captured once and replayed from CUDA
    graphs (the step is otherwise bound by the host launching kernels one module at a time); report.json
    says whether they ran. False: every step eagerly."""

    def __post_init__(self):
        require(
            self,
            (whole(self.steps, 1), "steps", "must be a positive integer"),
            (isinstance(self.cuda_graph, bool), "cuda_graph", "must be true or false"),
            (whole(self.rank, 1), "rank", "must be a positive integer"),
            (number(self.alpha) and self.alpha > 0, "alpha", "must be a positive number"),
            (number(self.learning_rate) and self.learning_rate > 0, "learning_rate", "must be a positive number"),
            (number(self.weight_decay, 0), "weight_decay", "must be >= 0"),
            (number(self.max_grad_norm) and self.max_grad_norm > 0, "max_grad_norm", "must be a positive number"),
            (IDENTIFIER in self.prompt_template.split() and "{class_word}" in self.prompt_template, "prompt_template",
             f"must contain the identifier {IDENTIFIER!r} as a word and '{{class_word}}'"),
            (number(self.timestep_shift) and self.timestep_shift > 0, "timestep_shift", "must be > 0"),
            (len(self.target_modules) >= 1, "target_modules", "must name at least one module"),
        )

    def prompt(self, class_word: str) -> str:
        return self.prompt_template.format(class_word=class_word)


@dataclass(frozen=True)
class AdapterConfig:
    """Step 3: 3Dapter, a LoRA acting only on the conditioning tokens' projections (clean latents of the
    conditioning views at timestep 0), their tokens joining the generated ones in self-attention."""

    enabled: bool = True
    """False: 3DreamBooth alone (no conditioning views; the report says so)."""
    rank: int = 16
    """LoRA rank of the conditioning branch (the paper gives none; 3DreamBooth's)."""
    alpha: float = 32.0
    """LoRA alpha of the conditioning branch."""
    target_modules: tuple[str, ...] = ADAPTER_TARGETS
    """Modules that get the 3Dapter LoRA (the conditioning tokens use these)."""
    pretrain_steps: int = 2000
    """`likeness3d train-3dapter`: optimisation steps of the single-view pre-training."""
    pretrain_learning_rate: float = 1e-4
    """`likeness3d train-3dapter`: AdamW learning rate."""

    def __post_init__(self):
        require(
            self,
            (whole(self.rank, 1), "rank", "must be a positive integer"),
            (number(self.alpha) and self.alpha > 0, "alpha", "must be a positive number"),
            (len(self.target_modules) >= 1, "target_modules", "must name at least one module"),
            (whole(self.pretrain_steps, 1), "pretrain_steps", "must be a positive integer"),
            (number(self.pretrain_learning_rate) and self.pretrain_learning_rate > 0, "pretrain_learning_rate",
             "must be a positive number"),
        )


@dataclass(frozen=True)
class GenerateConfig:
    """Step 4: the videos, with both LoRAs and the conditioning views."""

    frames: int = 81
    """Frames per video; Wan's VAE compresses time 4x, so it must be 4k + 1 (Wan 2.1: 81, 5 s at 16 fps)."""
    height: int = 480
    """Frame height in pixels, a multiple of 16 (Wan 2.1 480p: 480)."""
    width: int = 832
    """Frame width in pixels, a multiple of 16 (Wan 2.1 480p: 832)."""
    steps: int = 50
    """Denoising steps (Wan 2.1's default)."""
    guidance_scale: float = 5.0
    """Classifier-free guidance (Wan 2.1's default); <= 1 runs no unconditional pass."""
    negative_prompt: str = ""
    """The unconditional prompt of classifier-free guidance."""
    flow_shift: float = 3.0
    """Shift of the flow-matching schedule (Wan 2.1: 3 at 480p, 5 at 720p); None of the model's own scheduler
    config is changed otherwise."""
    turntable: bool = True
    """Generate the turntable prompt too (always first)."""
    turntable_template: str = "a video of a sks {class_word} rotating slowly on a turntable, 360 degree view, white background"
    """The turntable prompt."""
    fps: int = 16
    """Frames per second of video.mp4 (Wan's 16)."""
    seed: int = 0
    """Noise seed of the first video (each further prompt adds 1)."""

    def __post_init__(self):
        require(
            self,
            (whole(self.frames, 1, 1025) and self.frames % 4 == 1, "frames",
             "must be of the form 4k + 1 (1, 5, 9, ..., 81): Wan's VAE compresses time 4x; use e.g. 81"),
            (whole(self.height, 16, 2048) and self.height % 16 == 0, "height", "must be a multiple of 16 in [16, 2048]"),
            (whole(self.width, 16, 2048) and self.width % 16 == 0, "width", "must be a multiple of 16 in [16, 2048]"),
            (whole(self.steps, 1, 1000), "steps", "must be an integer in [1, 1000]"),
            (number(self.guidance_scale, 0), "guidance_scale", "must be a number >= 0"),
            (number(self.flow_shift) and self.flow_shift > 0, "flow_shift", "must be > 0"),
            (IDENTIFIER in self.turntable_template.split(), "turntable_template",
             f"must contain the identifier {IDENTIFIER!r} as a word"),
            (whole(self.fps, 1, 240), "fps", "must be an integer in [1, 240]"),
            (whole(self.seed, 0), "seed", "must be an integer >= 0"),
        )

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // 4 + 1
