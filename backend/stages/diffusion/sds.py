"""Score distillation sampling (DreamFusion) with a diffusers UNet: a reusable guidance stage.

Images rendered from a 3D representation (fp32 "master" parameters) are encoded by the VAE encoder *with*
gradients, noised at a timestep t, denoised by the (frozen, possibly fp16) UNet with classifier-free
guidance, and the residual w(t) (eps_hat - eps) is pushed back as the gradient of the latents:

    d loss / d latents = w(t) (eps_hat - eps) / B,   loss = 0.5 ||latents - sg(latents - g)||^2 / B

(threestudio's `stable_diffusion_guidance.py` writes it the same way; the UNet Jacobian is skipped).
Timesteps come from a range of the schedule (Customize-It-3D: t in [0.2, 0.6]) under one of three
schedules: `random` (uniform in the range every step), `linear` (deterministic, t_max -> t_min) or `sqrt`
(HiFA's square-root annealing, t_max - (t_max - t_min) sqrt(step / total)).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from .config import SCHEDULES, SDSConfig
import torch.nn.functional as F



def timestep_fraction(schedule: str, step: int, total: int, t_range: tuple[float, float],
                      generator: torch.Generator | None = None) -> float:
    """The timestep, as a fraction of the schedule, for optimisation step `step` of `total`.

    random: uniform in [t_min, t_max]; linear: t_max - (t_max - t_min) p; sqrt: t_max - (t_max - t_min) sqrt(p),
    with p = step / (total - 1) in [0, 1] (so step 0 gives t_max and the last step t_min).
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    if not (isinstance(total, int) and total >= 1):
        raise ValueError(f"total must be a positive integer, got {total!r}")
    if not (isinstance(step, int) and 0 <= step < total):
        raise ValueError(f"step must be an integer in [0, {total}), got {step!r}")
    lo, hi = t_range
    if schedule == "random":
        u = float(torch.rand((), generator=generator))
        return lo + (hi - lo) * u
    p = step / (total - 1) if total > 1 else 1.0
    return hi - (hi - lo) * (p if schedule == "linear" else math.sqrt(p))


def to_timestep(fraction: float, num_train_timesteps: int) -> int:
    """A schedule fraction in [0, 1] -> an integer training timestep in [0, T - 1]."""
    if not (0 <= fraction <= 1):
        raise ValueError(f"fraction must be in [0, 1], got {fraction!r}")
    return int(round(fraction * (num_train_timesteps - 1)))


@dataclass(frozen=True)
class SDSResult:
    """One SDS evaluation. The diagnostics stay on the device (`norm`, `ok`); reading `grad_norm` or `finite`
    waits for the GPU, so loops read them once in a while, not every step."""

    loss: torch.Tensor
    """[] scalar whose gradient w.r.t. the latents is w(t) (eps_hat - eps) / B; backward() it."""
    timestep: int
    weight: float
    """w(t)."""
    norm: torch.Tensor
    """[] L2 norm of w(t) (eps_hat - eps) over the batch (after clipping), on the device."""
    ok: torch.Tensor
    """[] bool on the device: False when the UNet returned NaN/inf; the loss is then 0 with zero gradient."""

    @property
    def grad_norm(self) -> float:
        return float(self.norm)

    @property
    def finite(self) -> bool:
        return bool(self.ok)


def encode_latents(components, images: torch.Tensor, config: SDSConfig) -> torch.Tensor:
    """[B, 3, H, W] in [0, 1], fp32 -> [B, 4, h, w] fp32 latents x scaling_factor, differentiable.

    The VAE runs in the components' dtype (fp16 on CUDA); the posterior mean is used (deterministic; the
    encoder's sampling noise is tiny next to the diffusion noise)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [B, 3, H, W], got {tuple(images.shape)}")
    x = images
    if config.resolution is not None and tuple(x.shape[-2:]) != (config.resolution,) * 2:
        x = F.interpolate(x, size=(config.resolution,) * 2, mode="bilinear", align_corners=False, antialias=True)
    full = (x.shape[-2], x.shape[-1])
    if config.encode_scale < 1:
        size = tuple(max(8, int(round(s * config.encode_scale / 8)) * 8) for s in full)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    vae = components.vae
    lat = vae.encode((x * 2 - 1).to(components.dtype)).latent_dist.mean.float() * vae.config.scaling_factor
    if config.encode_scale < 1:
        down = 2 ** (len(vae.config.block_out_channels) - 1)
        lat = F.interpolate(lat, size=(full[0] // down, full[1] // down), mode="bilinear", align_corners=False)
    return lat


def alphas_cumprod(components) -> torch.Tensor:
    """[T] alpha_bar_t of the model's training schedule, fp32 on CPU."""
    return components.scheduler.alphas_cumprod.detach().float().cpu()


def sds_loss(
    components,
    images: torch.Tensor,  # [B, 3, H, W] in [0, 1], fp32, requires grad (rendered from the 3D representation)
    cond: torch.Tensor,  # [B, L, D] text embeddings of the prompts
    uncond: torch.Tensor,  # [B, L, D] text embeddings of "" (or a negative prompt)
    config: SDSConfig = SDSConfig(),
    *,
    fraction: float,  # timestep as a fraction of the schedule (see `timestep_fraction`)
    generator: torch.Generator | None = None,  # CPU generator for the noise
    noise: torch.Tensor | None = None,  # [B, 4, h, w] fixed noise (tests); drawn from `generator` otherwise
    graphs=None,  # an `sds_graphs.SDSGraphs` of these components and config: its CUDA graphs run the two big calls
) -> SDSResult:
    """One SDS evaluation; call `.loss.backward()` to push w(t)(eps_hat - eps) through the VAE encoder
    into the images and on into the 3D representation."""
    B = images.shape[0]
    if cond.shape[0] != B or uncond.shape[0] != B:
        raise ValueError(f"cond and uncond must have batch {B} like images, got {cond.shape[0]} and {uncond.shape[0]}")
    unet, dev = components.unet, components.device
    if unet.config.in_channels != 4:
        raise ValueError(f"SDS needs a text-to-image UNet (4 input channels), this one takes {unet.config.in_channels}")
    latents = graphs.encode(images) if graphs is not None else encode_latents(components, images, config)  # [B, 4, h, w]
    T = components.scheduler.config.num_train_timesteps
    t = to_timestep(fraction, T)
    abar = float(alphas_cumprod(components)[t])
    if noise is None:
        noise = torch.randn(latents.shape, generator=generator)
    noise = noise.to(dev, torch.float32)
    if noise.shape != latents.shape:
        raise ValueError(f"noise must be {tuple(latents.shape)}, got {tuple(noise.shape)}")
    with torch.no_grad():
        noisy = math.sqrt(abar) * latents.detach() + math.sqrt(1 - abar) * noise
        model_in = torch.cat([noisy, noisy]).to(components.dtype)
        tt = torch.full((2 * B,), t, device=dev, dtype=torch.long)
        emb = torch.cat([cond, uncond]).to(components.dtype)
        pred = (graphs.denoise(model_in, tt, emb) if graphs is not None else
                unet(model_in, tt, encoder_hidden_states=emb).sample).float()
        if components.scheduler.config.prediction_type == "v_prediction":
            pred = math.sqrt(abar) * pred + math.sqrt(1 - abar) * torch.cat([noisy, noisy])  # v -> eps
        eps_c, eps_u = pred.chunk(2)
        eps_hat = eps_u + config.guidance_scale * (eps_c - eps_u)
        w = (1 - abar) if config.weighting == "sds" else 1.0
        grad = w * (eps_hat - noise)
        ok = torch.isfinite(grad).all()
        grad = torch.where(ok, grad, torch.zeros_like(grad))  # a non-finite score skips the step, sync-free
        if config.grad_clip is not None:
            grad = grad.clamp(-config.grad_clip, config.grad_clip)
        target = latents.detach() - grad
    loss = 0.5 * F.mse_loss(latents, target, reduction="sum") / B
    return SDSResult(loss, t, float(w), grad.norm(), ok)
