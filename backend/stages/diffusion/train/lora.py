"""Subject LoRA for a Stable Diffusion UNet (inpainting or base) via peft, with a loss restricted to the
valid foreground; saved and loaded in diffusers' LoRA format (`pytorch_lora_weights.safetensors`)."""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ...common.loss_log import LossLog
from .augment import random_flip_rotate
from ..config import SubjectLoraConfig
from ..images import as_image_batch, as_mask_batch
from .masks import latent_weights, masked_mse, random_inpaint_masks
from .prior import ClassPrior
from ..text import encode_prompts, prompt_list
from ..upload import host_noise, to_device

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
"""The file diffusers' `load_lora_weights(folder)` looks for."""

ProgressFn = Callable[[int, int, str], None]
"""progress(step, total, text), called after every step."""
CancelFn = Callable[[], None]
"""cancel() is called before every step and raises (e.g. `Cancelled`) to stop."""


@dataclass(frozen=True)
class LoraTrainResult:
    adapter_name: str
    steps: int
    losses: tuple[float, ...]
    """The loss of every step, in order (with prior preservation: instance + prior_weight x prior)."""
    seconds: float
    prior_losses: tuple[float, ...] = ()
    """With prior preservation: the class-image term of every step (unweighted); else empty."""


class Shuffled:
    """Indices 0..n-1 in epochs of shuffled order (every item once per epoch), drawn from `generator`."""

    def __init__(self, n: int, generator: torch.Generator):
        self.n, self.generator = n, generator
        self.order = torch.empty(0, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:  # [k] long
        while self.order.numel() < k:
            self.order = torch.cat([self.order, torch.randperm(self.n, generator=self.generator)])
        idx, self.order = self.order[:k], self.order[k:]
        return idx


def _positive_int(name: str, v) -> None:
    if not (isinstance(v, int) and not isinstance(v, bool) and v > 0):
        raise ValueError(f"SubjectLoraConfig.{name} must be a positive integer, got {v!r}")


def add_lora(components, config: SubjectLoraConfig, *, resume: bool = False) -> list[torch.nn.Parameter]:
    """Give the UNet a fresh peft LoRA adapter named `config.adapter_name` (or, with `resume`, keep training
    an existing one) and make it the active one. Returns its parameters, fp32 and trainable; every other
    UNet weight stays frozen in the components' dtype."""
    from diffusers.training_utils import cast_training_params
    from peft import LoraConfig

    unet, name = components.unet, config.adapter_name
    unet.requires_grad_(False)
    exists = name in (getattr(unet, "peft_config", None) or {})
    if exists and not resume:
        unet.delete_adapters(name)
        exists = False
    if not exists:
        # Gaussian A, zero B: the adapted UNet starts exactly equal to the base one.
        lora = LoraConfig(
            r=config.rank, lora_alpha=config.alpha, init_lora_weights="gaussian",
            target_modules=list(config.target_modules),
        )
        unet.add_adapter(lora, adapter_name=name)
    unet.set_adapter(name)
    params = [p for n, p in unet.named_parameters() if "lora_" in n and f".{name}." in n]
    for p in params:
        p.requires_grad_(True)
    cast_training_params(unet, torch.float32)  # fp32 LoRA parameters on an fp16 UNet (mixed precision)
    return params


def subject_loss(
    components,
    noise_scheduler,
    images: torch.Tensor,  # [B, 3, H, W] in [0, 1], on components.device, float32
    valid: torch.Tensor,  # [B, 1, H, W] in [0, 1], 1 = foreground that counts
    text_embeds: torch.Tensor,  # [B, L, D]
    config: SubjectLoraConfig,
    generator: torch.Generator,  # a CPU generator: every random draw of the step comes from it
    denoise: Callable | None = None,
) -> torch.Tensor:  # [] scalar
    """One step's masked denoising loss (DreamBooth objective restricted to the valid foreground); see
    `_denoising` for the steps."""
    return masked_mse(*_denoising(components, noise_scheduler, images, valid, text_embeds, config, generator,
                                  denoise))


def subject_prior_loss(
    components,
    noise_scheduler,
    images: torch.Tensor,  # [B, 3, H, W] subject images in [0, 1], on components.device, float32
    valid: torch.Tensor,  # [B, 1, H, W] their valid foreground
    text_embeds: torch.Tensor,  # [B, L, D] the subject prompt ("... sks <class>")
    class_images: torch.Tensor,  # [Bc, 3, H, W] class images in [0, 1] (from the base model)
    class_embeds: torch.Tensor,  # [Bc, L, D] the class prompt (no identifier)
    config: SubjectLoraConfig,
    generator: torch.Generator,
    denoise: Callable | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:  # ([] instance loss, [] prior loss)
    """DreamBooth with class-specific prior preservation (Ruiz et al. 2023; diffusers' train_dreambooth.py
    `--with_prior_preservation`): subject and class images go through the UNet as one batch, and the
    prediction is split into the subject's masked loss and the class images' loss (whole frames count).
    The caller weighs them: loss = instance + prior_weight x prior."""
    B = images.shape[0]
    x = torch.cat([images, class_images.to(images)])
    v = torch.cat([valid, torch.ones_like(class_images[:, :1]).to(valid)])
    e = torch.cat([text_embeds, class_embeds.to(text_embeds)])
    pred, target, weights = _denoising(components, noise_scheduler, x, v, e, config, generator, denoise)
    return masked_mse(pred[:B], target[:B], weights[:B]), masked_mse(pred[B:], target[B:], weights[B:])


def _denoising(
    components, noise_scheduler, images: torch.Tensor, valid: torch.Tensor, text_embeds: torch.Tensor,
    config: SubjectLoraConfig, generator: torch.Generator, denoise: Callable | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # (pred, target [B, 4, h, w], weights [B, 1, h, w])
    """The UNet's prediction on noised latents, its target and the per-cell loss weights. `denoise(sample,
    timestep, hidden)` stands for the UNet call (`graphed_unet.GraphedDenoiser`); default the UNet itself.

    1. Replace the background by `config.background`, then flip/rotate image and mask jointly.
    2. Encode to latents, add noise at a random timestep.
    3. Inpainting UNet: append a random inpainting mask (at latent resolution) and the latents of the image
       with that region blanked, as diffusers' inpainting training and pipeline do (9 channels).
    4. The target (noise, or velocity for v-prediction models) and the weight of each latent cell: the
       fraction of valid foreground it covers, so background pixels influence neither the masked MSE's value
       nor its gradient.
    """
    unet, vae, dev = components.unet, components.vae, components.device
    B, _, H, W = images.shape
    bg = to_device(torch.tensor(config.background, dtype=images.dtype), dev).view(1, 3, 1, 1)
    # 1. background out, then augment (fill = background, so rotated-in corners carry no information)
    x = images * valid + bg * (1 - valid)
    x, valid = random_flip_rotate(x, valid, config.max_rotation_deg, config.hflip_prob, bg.view(3), generator)
    x = x * 2 - 1
    sf = vae.config.scaling_factor
    inpainting = unet.config.in_channels == 9
    if not inpainting and unet.config.in_channels != 4:
        raise ValueError(f"the UNet must take 4 or 9 input channels, it takes {unet.config.in_channels}")
    # 2. the step's random draws, in this order from the host generator: latent sample, noise, timesteps,
    # inpainting mask, masked image's latent sample
    down = 2 ** (len(vae.config.block_out_channels) - 1)  # diffusers' vae_scale_factor
    shape = (B, vae.config.latent_channels, H // down, W // down)
    eps = torch.randn(shape, generator=generator, dtype=components.dtype)
    noise = host_noise(shape, generator, dev)
    t = to_device(torch.randint(0, noise_scheduler.config.num_train_timesteps, (B,), generator=generator), dev)
    if inpainting:
        m = to_device(random_inpaint_masks(B, H, W, config.full_mask_prob, generator), dev).to(x.dtype)
        eps_masked = torch.randn(shape, generator=generator, dtype=components.dtype)
        # the image and (3.) the image with the inpainting region blanked, through the encoder in one call
        x = torch.cat([x, x * (m < 0.5)])
        eps = torch.cat([eps, eps_masked])
    with torch.no_grad():
        dist = vae.encode(x.to(components.dtype)).latent_dist
        both = (dist.mean + dist.std * to_device(eps, dev)) * sf  # as dist.sample(generator) draws it
    latents = both[:B]
    noise = noise.to(latents.dtype)
    model_in = noise_scheduler.add_noise(latents, noise, t)
    h, w = latents.shape[-2:]
    # 3. inpainting conditioning, as diffusers' inpainting training and pipeline do (9 channels)
    if inpainting:
        m_lat = F.interpolate(m, size=(h, w)).to(latents.dtype)  # nearest, as the pipeline resizes it
        model_in = torch.cat([model_in, m_lat, both[B:]], dim=1)
    if noise_scheduler.config.prediction_type == "v_prediction":
        target = noise_scheduler.get_velocity(latents, noise, t)
    else:
        target = noise
    # 4. prediction, target and weights of the masked loss
    if denoise is None:
        pred = unet(model_in, t, encoder_hidden_states=text_embeds).sample
    else:
        pred = denoise(model_in, t, text_embeds)
    return pred, target, latent_weights(valid, (h, w)).to(dev)


def train_subject_lora(
    components,
    images,  # [N, H, W, 3] (or [N, H, W, 4], alpha ignored) uint8 or float in [0, 1]; H, W multiples of 8
    masks,  # [N, H, W] valid foreground: bool, uint8 (>= 128) or float (>= 0.5)
    *,
    class_word: str = "object",
    prompts: str | Sequence[str] | None = None,
    config: SubjectLoraConfig = SubjectLoraConfig(),
    seed: int = 0,
    resume: bool = False,
    prior: ClassPrior | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> LoraTrainResult:
    """Train a subject LoRA into `components.unet` in place (adapter `config.adapter_name`, left active).

    `prompts`: one per image (e.g. Customize-It-3D's modality prompts) or one for all; default
    `config.prompt(class_word)`. `resume` continues an existing adapter of that name (staged training);
    otherwise any old one is replaced. `prior`: class images of the same size with their prompt; every step
    then adds `config.batch_size` of them and the loss is instance + prior.weight x prior
    (`subject_prior_loss`). fp16 UNet with fp32 LoRA parameters and loss scaling on CUDA, fp32 on CPU. Save
    with `save_lora`, remove with `remove_lora`.
    """
    from diffusers import DDPMScheduler

    dev = components.device
    imgs = as_image_batch(images, "images").to(dev)  # [N, 3, H, W]
    valid = as_mask_batch(masks, "masks", like=imgs).to(dev)  # [N, 1, H, W]
    empty = [i for i in range(valid.shape[0]) if valid[i].sum() == 0]
    if empty:
        raise ValueError(f"masks[{empty[0]}] has no foreground pixel: nothing to learn from that image")
    N = imgs.shape[0]
    text = prompt_list(prompts if prompts is not None else config.prompt(class_word), N)
    embeds = encode_prompts(components, text)  # [N, L, D]
    noise_scheduler = DDPMScheduler.from_config(components.scheduler.config)
    if prior is not None:
        prior.check_size(imgs.shape[-2:])
        class_embeds = encode_prompts(components, [prior.prompt]).expand(config.batch_size, -1, -1)

    params = add_lora(components, config, resume=resume)
    optimizer = training_optimizer(params, config.learning_rate, config.weight_decay, dev)
    mixed = dev.type == "cuda" and components.dtype == torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=mixed)
    unet = components.unet
    gen = torch.Generator().manual_seed(seed)
    order = Shuffled(N, gen)
    class_order = Shuffled(len(prior), gen) if prior is not None else None
    log = LossLog(dev, "subject LoRA loss", finite=False)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    denoise = None
    if config.cuda_graph and dev.type == "cuda" and not config.gradient_checkpointing:
        from .graphed_unet import GraphedDenoiser

        denoise = GraphedDenoiser(unet)
    unet.train()
    start = time.perf_counter()
    try:
        for step in range(config.steps):
            if cancel is not None:
                cancel()
            idx = to_device(order.take(config.batch_size), dev)  # epochs of shuffled images
            # no autocast cache with graphs: a graph must cast its weights itself at every replay
            with torch.autocast("cuda", dtype=torch.float16, enabled=mixed, cache_enabled=denoise is None):
                if prior is None:
                    loss = subject_loss(components, noise_scheduler, imgs[idx], valid[idx], embeds[idx], config, gen,
                                        denoise)
                    row = loss.detach().view(1)
                else:
                    classes = prior.batch(class_order.take(config.batch_size), dev)
                    loss, prior_loss = subject_prior_loss(components, noise_scheduler, imgs[idx], valid[idx], embeds[idx],
                                                          classes, class_embeds, config, gen, denoise)
                    loss = loss + prior.weight * prior_loss
                    row = torch.stack([loss.detach(), prior_loss.detach()])
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            scaler.step(optimizer)  # no sync: the fused AdamW skips a step with inf gradients on the device
            scaler.update()
            log.record(row, step + 1, config.steps)
            if progress is not None:
                progress(step + 1, config.steps, f"subject LoRA step {step + 1}/{config.steps}{loss_text(log)}")
    finally:
        unet.eval()
        if config.gradient_checkpointing:
            unet.disable_gradient_checkpointing()
        for p in params:
            p.requires_grad_(False)
        if denoise is not None:  # the graphs' memory pool goes now, not at some later garbage collection
            denoise = None
            gc.collect()
    prior_losses = tuple(r[1] for r in log.rows) if prior is not None else ()
    return LoraTrainResult(config.adapter_name, config.steps, tuple(log.values), time.perf_counter() - start,
                           prior_losses)


def training_optimizer(params, lr: float, weight_decay: float, device: torch.device) -> torch.optim.AdamW:
    """AdamW for the training loops here; on CUDA torch's fused kernel, which applies the GradScaler's
    unscaling and inf check on the device (the default implementation makes the scaler read the inf flag
    back, a sync every step)."""
    return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def loss_text(log: LossLog) -> str:
    """", loss 0.1234" for progress text: the mean of the newest window of losses read back (none before the
    first window has arrived: the loss is read asynchronously)."""
    return f", loss {log.shown:.4f}" if math.isfinite(log.shown) else ""


def save_lora(components, folder: str | Path, adapter_name: str = "subject") -> Path:
    """Write the adapter as `folder/pytorch_lora_weights.safetensors` in diffusers' LoRA format (keys
    `unet.<module>.lora.down/up.weight`, the peft LoraConfig as metadata, so alpha != rank survives), loadable
    by `StableDiffusion(Inpaint)Pipeline.load_lora_weights(folder)`. Returns the file."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    unet = components.unet
    if adapter_name not in (getattr(unet, "peft_config", None) or {}):
        raise ValueError(f"the UNet has no LoRA adapter named {adapter_name!r} to save")
    state = get_peft_model_state_dict(unet, adapter_name=adapter_name)
    state = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}
    state = convert_state_dict_to_diffusers(state)
    folder = Path(folder)
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        folder,
        unet_lora_layers=state,
        unet_lora_adapter_metadata=unet.peft_config[adapter_name].to_dict(),
        weight_name=LORA_WEIGHT_NAME,
        safe_serialization=True,
    )
    return folder / LORA_WEIGHT_NAME


def remove_lora(components, adapter_name: str = "subject") -> bool:
    """Delete the adapter from the UNet (e.g. before a cached model serves the next job). True if it was there."""
    unet = components.unet
    if adapter_name in (getattr(unet, "peft_config", None) or {}):
        unet.delete_adapters(adapter_name)
        return True
    return False

