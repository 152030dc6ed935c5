"""Inpaint a batch of views from initial images at a given strength with diffusers'
StableDiffusionInpaintPipeline (optionally with a subject LoRA); pixels outside the mask are kept exactly."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..config import DiffusionInpaintConfig
from ..images import as_image_batch, as_mask_batch
from ..steps import step_callback
from ..text import prompt_list

ProgressFn = Callable[[int, int, str], None]
CancelFn = Callable[[], None]


def build_inpainter(
    components, *, lora: str | Path | None = None, scheduler: str = "ddim", adapter_name: str = "subject"
):
    """A `StableDiffusionInpaintPipeline` over the loaded components (no download, no safety checker).

    `lora`: a folder holding `pytorch_lora_weights.safetensors` (from `save_lora` or any diffusers SD LoRA),
    loaded with the pipeline's own `load_lora_weights` under `adapter_name`, replacing an adapter of that
    name. Without `lora`, whatever adapter the UNet carries (e.g. one just trained in place) stays active.
    `scheduler`: `DiffusionInpaintConfig.scheduler`.
    Note: the components' UNet is shared, so loading a LoRA changes it for every user of the bundle.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, StableDiffusionInpaintPipeline

    if scheduler not in ("ddim", "dpm"):
        raise ValueError(f"scheduler must be 'ddim' or 'dpm', got {scheduler!r}")
    cls = DDIMScheduler if scheduler == "ddim" else DPMSolverMultistepScheduler
    pipe = StableDiffusionInpaintPipeline(
        vae=components.vae,
        text_encoder=components.text_encoder,
        tokenizer=components.tokenizer,
        unet=components.unet,
        scheduler=cls.from_config(components.scheduler.config),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        folder = Path(lora)
        if folder.is_file():
            folder = folder.parent
        if not folder.is_dir():
            raise ValueError(f"lora must be a folder with pytorch_lora_weights.safetensors, got {str(lora)!r}")
        unet = components.unet
        if adapter_name in (getattr(unet, "peft_config", None) or {}):
            unet.delete_adapters(adapter_name)
        pipe.load_lora_weights(str(folder), adapter_name=adapter_name)
    return pipe


@torch.no_grad()
def inpaint_views(
    pipe,
    images,  # [N, H, W, 3|4] uint8 or float in [0, 1]: the initial renders; H, W multiples of 8
    masks,  # [N, H, W]: 1 (>= 0.5) where to inpaint, 0 where the input is kept
    prompts: str | Sequence[str],
    *,
    config: DiffusionInpaintConfig = DiffusionInpaintConfig(),
    seed: int = 0,
    progress: ProgressFn | None = None,
    cancel: CancelFn | None = None,
) -> np.ndarray:  # [N, H, W, 3] float32 in [0, 1]
    """Inpaint each view at `config.strength` from its initial image, with classifier-free guidance.

    View i uses noise seeded by `seed + i` alone, so a view's result does not depend on the batch it is in.
    The output equals the input exactly where the mask is < 0.5 (uint8 input as value / 255; composited at
    the end, since the VAE round trip would otherwise change kept pixels slightly). `progress(step, total, text)` after every denoising step;
    `cancel()` before each (raise to stop).
    """
    imgs = as_image_batch(images, "images")  # [N, 3, H, W]
    m = as_mask_batch(masks, "masks", like=imgs)  # [N, 1, H, W]
    N, _, H, W = imgs.shape
    text = prompt_list(prompts, N)
    keep = imgs.permute(0, 2, 3, 1).numpy()  # [N, H, W, 3] the input, exactly
    if config.strength == 0:
        return keep.copy()
    steps = config.denoising_steps
    if steps < 1:
        raise ValueError(
            f"strength {config.strength} x num_inference_steps {config.num_inference_steps} runs no denoising "
            f"step; use strength 0 to keep the input, or more steps"
        )
    total = steps * math.ceil(N / config.batch_size)
    out = np.empty_like(keep)

    on_step = step_callback(total, progress, cancel, lambda d, n: f"inpainting: denoising step {d}/{n}")

    for start in range(0, N, config.batch_size):
        sl = slice(start, min(start + config.batch_size, N))
        n = sl.stop - sl.start
        if cancel is not None:
            cancel()
        gens = [torch.Generator().manual_seed(seed + i) for i in range(sl.start, sl.stop)]
        result = pipe(
            prompt=text[sl],
            negative_prompt=[config.negative_prompt] * n,
            image=imgs[sl],
            mask_image=m[sl],
            height=H,
            width=W,
            strength=float(config.strength),
            num_inference_steps=config.num_inference_steps,
            guidance_scale=float(config.guidance_scale),
            generator=gens,
            output_type="np",
            callback_on_step_end=on_step,
        ).images  # [n, H, W, 3] float32 in [0, 1]
        out[sl] = result
    inside = (m[:, 0] >= 0.5).numpy()[..., None]  # the pipeline binarises its mask at 0.5 too
    return np.where(inside, out, keep).astype(np.float32)

