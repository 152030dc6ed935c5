"""The personalised inpainter TIRE calls: a subject LoRA trained on the reference photos, then Stable
Diffusion inpainting of rendered views at low strength with that LoRA active."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from .inpaint import DiffusionInpaintConfig, build_inpainter, inpaint_views
from ..train.lora import SubjectLoraConfig, save_lora, train_subject_lora
from ..components import load_components


def square_references(references, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference photos padded to squares (white, centred) and resized to size x size, for LoRA training.
    Returns ([N, size, size, 3] float32 in [0, 1], [N, size, size] bool foreground)."""
    import cv2

    imgs, masks = [], []
    for ref in references:
        img = ref.image.astype(np.float32) / (255.0 if ref.image.dtype == np.uint8 else 1.0)
        h, w = img.shape[:2]
        side = max(h, w)
        canvas = np.ones((side, side, 4), np.float32)
        canvas[..., 3] = 0.0
        y0, x0 = (side - h) // 2, (side - w) // 2
        canvas[y0 : y0 + h, x0 : x0 + w] = img
        canvas = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
        alpha = canvas[..., 3:]
        imgs.append(canvas[..., :3] * alpha + (1.0 - alpha))  # over white, as the renders
        masks.append(canvas[..., 3] > 0.5)
    return np.stack(imgs), np.stack(masks)


class DiffusionInpainter:
    """Inpaints [B, H, W, 3] views inside masks with the subject LoRA active; pixels outside stay exact."""

    personalised = True

    def __init__(self, pipe, prompt: str, label: str, config: DiffusionInpaintConfig = DiffusionInpaintConfig(),
                 seed: int = 0, progress=None, cancel=None):
        self.pipe, self.prompt, self.label, self.config = pipe, prompt, label, config
        self.seed, self.progress, self.cancel = seed, progress, cancel
        self.calls = 0

    def __call__(self, images: Tensor, masks: Tensor, strength: float, valid: Tensor | None = None) -> Tensor:
        cfg = replace(self.config, strength=float(strength))
        if not masks.any() or cfg.denoising_steps < 1:
            return images.clone()
        x = images.clamp(0, 1)
        if valid is not None:  # the LoRA learned the subject over white; the renders' background is white too
            x = torch.where(valid[..., None], x, torch.ones_like(x))
        self.calls += 1
        out = inpaint_views(self.pipe, x.cpu().numpy(), masks.cpu().numpy().astype(np.float32), self.prompt, config=cfg,
                            seed=self.seed + 1000 * self.calls, progress=self.progress, cancel=self.cancel)
        out = torch.from_numpy(out).to(images)
        return torch.where(masks[..., None], out, images)


def personalised_inpainter(models: str, asset, config, ctx, device: str) -> DiffusionInpainter:
    """Load the `inpaint` role from `models` (a folder, "tiny", or "" for $LIKENESS3D_MODELS) and personalise it."""
    return personalise(load_components("inpaint", models or None, device=device), asset, config, ctx)


def personalise(comps, asset, config, ctx) -> DiffusionInpainter:
    """Train the subject LoRA on the references (saved as an artifact in diffusers' format) and return the
    inpainter. `config` is the pipeline's (lora_steps, resolution, strength, seed)."""
    lcfg = SubjectLoraConfig(steps=config.lora_steps)
    images, masks = square_references(asset.references, config.resolution)
    result = train_subject_lora(
        comps, images, masks, class_word=asset.class_word, config=lcfg, seed=config.seed,
        progress=lambda step, total, text: ctx.progress("personalise", step, total, f"subject LoRA: {text}"),
        cancel=ctx.check_cancel,
    )
    ctx.log(f"subject LoRA: {result.steps} steps in {result.seconds:.1f} s, last loss {result.losses[-1]:.4f}")
    if comps.device.type == "cuda":
        torch.cuda.empty_cache()  # the training's optimizer state and activations are gone: give their pool back
    path = save_lora(comps, ctx.work_dir / "lora", lcfg.adapter_name)
    ctx.add_artifact(path.name, path)
    pipe = build_inpainter(comps)  # the adapter trained in place stays active
    label = f"subject-LoRA Stable Diffusion inpainting ({comps.label or comps.source})"
    if comps.degraded and "noise" not in label:
        label += " [random weights: the output is noise]"
    return DiffusionInpainter(
        pipe, lcfg.prompt(asset.class_word), label, DiffusionInpaintConfig(strength=config.strength), seed=config.seed,
        progress=None, cancel=ctx.check_cancel,
    )
