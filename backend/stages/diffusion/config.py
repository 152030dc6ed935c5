"""Settings of the diffusion stages (no torch: pipeline configs hold them and the server validates those)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import number, require, whole

SCHEDULES = ("random", "linear", "sqrt")
"""Timestep annealing of score distillation (seed 002 discusses all three)."""
WEIGHTINGS = ("sds", "uniform")


@dataclass(frozen=True)
class SDSConfig:
    """Score distillation settings (DESIGN.md 5.2.3: t in [0.2, 0.6], w(t) = 1 - alpha_bar_t)."""

    guidance_scale: float = 100.0
    """Classifier-free guidance scale s: eps_hat = eps_u + s (eps_c - eps_u) (DreamFusion uses 100)."""
    t_range: tuple[float, float] = (0.2, 0.6)
    """Fractions of the training schedule [t_min, t_max] timesteps are drawn from (Customize-It-3D)."""
    schedule: str = "random"
    """`random`, `linear` or `sqrt` (see the module docstring)."""
    weighting: str = "sds"
    """`sds`: w(t) = 1 - alpha_bar_t (DreamFusion); `uniform`: w(t) = 1."""
    grad_clip: float | None = None
    """Clamp every element of w(t) (eps_hat - eps) to +-this (threestudio's `grad_clip`); None: no clamp."""
    resolution: int | None = None
    """Images are resized to resolution x resolution before encoding (SD: 512); None: as given."""
    encode_scale: float = 1.0
    """Encode at resolution x encode_scale and upsample the latents to the full latent size (a cheaper
    encoder forward/backward; 0.5 quarters its cost). 1: exact."""
    cuda_graph: bool = True
    """On CUDA, the VAE encoder (forward and backward) and the UNet's guided forward replay from CUDA graphs
    captured at the first step (the same maths with one launch each instead of a thousand; report.json says
    whether every step replayed). Off, or on the CPU: eager."""

    def __post_init__(self):
        lo, hi = self.t_range
        require(
            self,
            (number(self.guidance_scale, 0), "guidance_scale", "must be a number >= 0"),
            (len(self.t_range) == 2 and 0 <= lo <= hi <= 1, "t_range", "must be [t_min, t_max] with 0 <= t_min <= t_max <= 1"),
            (self.schedule in SCHEDULES, "schedule", f"must be one of {SCHEDULES}"),
            (self.weighting in WEIGHTINGS, "weighting", f"must be one of {WEIGHTINGS}"),
            (self.grad_clip is None or (number(self.grad_clip) and self.grad_clip > 0), "grad_clip", "must be > 0 or None"),
            (self.resolution is None or (whole(self.resolution, 8) and self.resolution % 8 == 0), "resolution",
             "must be a multiple of 8 (>= 8) or None"),
            (number(self.encode_scale) and 0 < self.encode_scale <= 1, "encode_scale", "must be in (0, 1]"),
            (isinstance(self.cuda_graph, bool), "cuda_graph", "must be true or false"),
        )


@dataclass(frozen=True)
class DiffusionInpaintConfig:
    """Denoising settings for personalised inpainting of rendered views (TIRE, Inpaint stage)."""

    strength: float = 0.3
    """Fraction of the schedule denoised, starting from the initial render noised to that level; the
    authors found 0.15 too weak and 0.5 too strong. 0 returns the input unchanged."""
    num_inference_steps: int = 50
    """Length of the full schedule; `strength` x this many steps run (15 with the defaults)."""
    guidance_scale: float = 7.5
    """Classifier-free guidance weight (SD's default; TIRE does not publish one). <= 1 disables CFG."""
    negative_prompt: str = ""
    """The unconditional prompt of classifier-free guidance."""
    scheduler: str = "ddim"
    """`ddim` or `dpm` (DPM-Solver++), built from the model's own noise-schedule config."""
    batch_size: int = 8
    """Views per pipeline call; results do not depend on it. At 512 px with SD-2-sized models, 8 views per
    call ran at 0.17 s/view with 6.5 GiB peak on an H200, against 0.53 s/view one at a time."""

    def __post_init__(self):
        require(
            self,
            (number(self.strength, 0, 1), "strength", "must be in [0, 1]"),
            (whole(self.num_inference_steps, 1), "num_inference_steps", "must be a positive integer"),
            (whole(self.batch_size, 1), "batch_size", "must be a positive integer"),
            (number(self.guidance_scale), "guidance_scale", "must be a finite number"),
            (self.scheduler in ("ddim", "dpm"), "scheduler", "must be 'ddim' or 'dpm'"),
        )

    @property
    def denoising_steps(self) -> int:
        """Steps actually run: int(num_inference_steps x strength), as diffusers counts them."""
        return min(int(self.num_inference_steps * self.strength), self.num_inference_steps)


@dataclass(frozen=True)
class SubjectLoraConfig:
    """Subject LoRA on an SD UNet (TIRE, Inpaint stage: "personalise the inpainting model with LoRA").

    TIRE publishes no LoRA hyper-parameters; the defaults are diffusers' DreamBooth-LoRA conventions
    (examples/dreambooth/train_dreambooth_lora.py and its README: attention projections, lr 1e-4, constant
    schedule, AdamW, batch 1, a few hundred steps) with rank 16 / alpha 16 for a few-view subject."""

    steps: int = 400
    """Optimisation steps (DreamBooth-LoRA README: 400-500 for a handful of subject images)."""
    rank: int = 16
    """LoRA rank r of every adapted projection."""
    alpha: float = 16.0
    """LoRA alpha; the update is scaled by alpha / rank (1 with the defaults)."""
    learning_rate: float = 1e-4
    """AdamW learning rate, constant (the DreamBooth-LoRA example's default)."""
    weight_decay: float = 1e-2
    """AdamW weight decay (the example's `adam_weight_decay`)."""
    max_grad_norm: float = 1.0
    """Gradient clipping of the LoRA parameters (the example's default)."""
    batch_size: int = 1
    """Images per step (the DreamBooth-LoRA README trains at 1)."""
    target_modules: tuple[str, ...] = ("to_k", "to_q", "to_v", "to_out.0")
    """UNet attention projections that get an adapter (the example's choice)."""
    prompt_template: str = "a photo of sks {class_word}"
    """TIRE's prompt; `sks` is the rare identifier token, `{class_word}` the subject's class."""
    hflip_prob: float = 0.5
    """Probability of a left-right mirror per sample (TIRE: "flips")."""
    max_rotation_deg: float = 15.0
    """Rotations uniform in +-this many degrees, applied jointly to image and mask (TIRE: up to 15)."""
    background: tuple[float, float, float] = (1.0, 1.0, 1.0)
    """RGB in [0, 1] that replaces everything outside the valid foreground before encoding, so background
    pixels never reach the model (renders of the asset use a white background)."""
    full_mask_prob: float = 0.25
    """Inpainting UNets only: probability that the random inpainting mask covers the whole frame (else a
    random rectangle or ellipse, as diffusers' DreamBooth-inpainting example draws). Our choice: the paper
    does not say; whole-frame masks teach the adapter to produce the subject with no context."""
    adapter_name: str = "subject"
    """peft adapter name inside the UNet."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the UNet (not needed at 512 px, batch 1, on a 16 GB GPU)."""
    cuda_graph: bool = True
    """CUDA only, without gradient checkpointing: the UNet's forward and backward replayed from CUDA graphs
    captured at the first step (`graphed_unet`); the step is otherwise bound by the host's Python."""

    def __post_init__(self):
        require(
            self,
            (whole(self.steps, 1), "steps", "must be a positive integer"),
            (whole(self.rank, 1), "rank", "must be a positive integer"),
            (whole(self.batch_size, 1), "batch_size", "must be a positive integer"),
            (number(self.alpha) and self.alpha > 0, "alpha", "must be a positive number"),
            (number(self.learning_rate) and self.learning_rate > 0, "learning_rate", "must be a positive number"),
            (number(self.max_grad_norm) and self.max_grad_norm > 0, "max_grad_norm", "must be a positive number"),
            (number(self.weight_decay, 0), "weight_decay", "must be >= 0"),
            (number(self.hflip_prob, 0, 1), "hflip_prob", "must be in [0, 1]"),
            (number(self.full_mask_prob, 0, 1), "full_mask_prob", "must be in [0, 1]"),
            (number(self.max_rotation_deg, 0, 90), "max_rotation_deg", "must be in [0, 90]"),
            (len(self.background) == 3 and all(number(c, 0, 1) for c in self.background), "background",
             "must be 3 numbers in [0, 1]"),
            (len(self.target_modules) >= 1, "target_modules", "must name at least one module"),
            ("{class_word}" in self.prompt_template, "prompt_template", "must contain '{class_word}'"),
        )

    def prompt(self, class_word: str) -> str:
        """The training prompt for a subject class, e.g. "a photo of sks cat"."""
        return self.prompt_template.format(class_word=class_word)


@dataclass(frozen=True)
class MultiModalConfig:
    """Staged multi-modal DreamBooth; steps per stage are the authors' (25/50/50/75); LoRA is our default
    where the authors fine-tune the whole UNet at lr 1e-6 (DESIGN.md 5.2.2)."""

    steps: tuple[int, int, int, int] = (25, 50, 50, 75)
    """Optimisation steps of the mask, depth, normal and rgb stages."""
    lora: SubjectLoraConfig = SubjectLoraConfig(adapter_name="customize")
    """LoRA settings (its `steps` and prompt template are replaced per stage)."""
    geometric_augment: bool = False
    """Flip/rotate the depth and normal maps too (a flip or rotation changes what the normal colours mean,
    so by default only the mask and RGB stages are augmented)."""
    method: str = "lora"
    """`lora` (ours, default) or `full`: fine-tune every UNet weight and, with `train_text_encoder`, the text
    encoder's (the authors')."""
    full_learning_rate: float = 1e-6
    """AdamW learning rate of the full fine-tune, UNet and text encoder alike (the authors')."""
    train_text_encoder: bool = True
    """Method `full` only: fine-tune the CLIP text encoder with the UNet (the authors'; diffusers'
    `--train_text_encoder`). The LoRA trains the UNet alone."""
    resolution: int = 512
    """Side the reference modalities are squared to for training (SD 2 base: 512)."""

    def __post_init__(self):
        require(
            self,
            (self.method in ("lora", "full"), "method", "must be 'lora' or 'full'"),
            (isinstance(self.train_text_encoder, bool), "train_text_encoder", "must be true or false"),
            (number(self.full_learning_rate) and self.full_learning_rate > 0, "full_learning_rate", "must be > 0"),
            (len(self.steps) == 4 and all(whole(s, 0) for s in self.steps) and sum(self.steps) > 0, "steps",
             "must be 4 integers >= 0 (mask, depth, normal, rgb), at least one > 0"),
            (whole(self.resolution, 16, 4096) and self.resolution % 8 == 0, "resolution",
             "must be a multiple of 8 in [16, 4096]"),
        )


@dataclass(frozen=True)
class PriorConfig:
    """DreamBooth's class-specific prior preservation (the authors use it, with 200 class images)."""

    enabled: bool = False
    """Off by default: generating the class images costs minutes the first time (they are cached on disk
    for later jobs)."""
    class_images: int = 200
    """Class images generated by the base model from "a rgb photo of <class>" (the authors: 200)."""
    weight: float = 1.0
    """Weight of the class images' loss (DreamBooth: 1)."""
    steps: int = 50
    """Denoising steps (DDIM, guidance 7.5) per class image (diffusers' DreamBooth example: the pipeline's 50)."""

    def __post_init__(self):
        require(
            self,
            (isinstance(self.enabled, bool), "enabled", "must be true or false"),
            (whole(self.class_images, 1, 10_000), "class_images", "must be an integer in [1, 10000]"),
            (number(self.weight) and self.weight > 0, "weight", "must be a number > 0"),
            (whole(self.steps, 1, 1000), "steps", "must be an integer in [1, 1000]"),
        )
