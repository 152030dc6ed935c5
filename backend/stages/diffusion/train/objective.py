"""The DreamBooth denoising objective both training methods optimise (`loop.train`): the masked loss of one
step on the subject images (`subject_loss`) and, with class-specific prior preservation, its instance and
prior terms from one UNet batch (`subject_prior_loss`). Every random draw of a step comes from one host
generator, in a fixed order, so a seed gives the same step on any device."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from ..config import SubjectLoraConfig
from ..upload import host_noise, to_device
from .augment import random_flip_rotate
from .masks import latent_weights, masked_mse, random_inpaint_masks


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
        if getattr(denoise, "encoder", None) is not None:  # the frozen encoder on its CUDA graph
            mean, std = denoise.encode_moments(x.to(components.dtype)).unbind(0)
        else:
            dist = vae.encode(x.to(components.dtype)).latent_dist
            mean, std = dist.mean, dist.std
        both = (mean + std * to_device(eps, dev)) * sf  # as dist.sample(generator) draws it
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
