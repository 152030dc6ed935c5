"""Step 4: a video from the personalised model, with the conditioning views in every self-attention.

The denoising loop of `WanPipeline.__call__` (the model's own flow-matching scheduler, classifier-free
guidance with the negative prompt) around `joint_forward` instead of the plain transformer call."""

from __future__ import annotations

from typing import Callable

import torch

from .joint import BASE, joint_forward


def flow_scheduler(scheduler, shift: float):
    """A fresh copy of the model's scheduler with the schedule shifted by `shift` (the key its class uses)."""
    cfg = dict(scheduler.config)
    key = "flow_shift" if "flow_shift" in cfg else "shift"
    return type(scheduler).from_config(cfg, **{key: shift})


@torch.no_grad()
def generate_latents(
    components,
    text: torch.Tensor,  # [1, L, D]
    negative: torch.Tensor | None,  # [1, L, D] or None (no guidance)
    config,  # GenerateConfig
    *,
    cond: torch.Tensor | None = None,  # [1, 16, K, hc, wc] clean conditioning latents
    gen_branch: str = BASE,
    cond_branch: str = BASE,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    cancel: Callable[[], None] | None = None,
) -> torch.Tensor:
    """[1, 16, F, H/8, W/8] denoised latents of a `config.frames`-frame video."""
    device, dtype = components.device, components.dtype
    scheduler = flow_scheduler(components.scheduler, config.flow_shift)
    scheduler.set_timesteps(config.steps, device=device)
    shape = (1, components.transformer.config.in_channels, config.latent_frames, config.height // 8, config.width // 8)
    gen = torch.Generator(device=device).manual_seed(seed)
    latents = torch.randn(shape, generator=gen, device=device, dtype=torch.float32)
    guided = negative is not None and config.guidance_scale > 1.0
    tr = components.transformer
    for i, t in enumerate(scheduler.timesteps):
        if cancel is not None:
            cancel()
        x = latents.to(dtype)
        if guided:  # the conditional and the unconditional pass as one batch of two
            c2 = None if cond is None else cond.expand(2, -1, -1, -1, -1)
            v2 = joint_forward(tr, x.expand(2, -1, -1, -1, -1), t.expand(2).to(device), torch.cat([text, negative]), c2,
                               gen_branch=gen_branch, cond_branch=cond_branch).float()
            v = v2[1:] + config.guidance_scale * (v2[:1] - v2[1:])
        else:
            v = joint_forward(tr, x, t.expand(1).to(device), text, cond, gen_branch=gen_branch, cond_branch=cond_branch).float()
        latents = scheduler.step(v, t, latents, return_dict=False)[0]
        if progress is not None:
            progress(i + 1, config.steps)
    return latents.to(dtype)
