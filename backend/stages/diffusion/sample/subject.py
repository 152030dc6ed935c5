"""The personalised inpainter TIRE calls: a subject LoRA trained on the reference photos, then Stable
Diffusion inpainting of rendered views at low strength with that LoRA active."""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ...common.images import pad_to_square, unit_float
from ..config import DiffusionInpaintConfig, SubjectLoraConfig
from ..train.lora import save_lora, train_subject_lora
from .inpaint import build_inpainter, inpaint_views


def square_references(references, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference photos padded to squares (transparent, centred), resized to size x size and put over white (as
    the renders are), for LoRA training. Returns ([N, size, size, 3] float32 in [0, 1], [N, size, size] bool
    foreground)."""
    import cv2

    imgs, masks = [], []
    for ref in references:
        canvas = pad_to_square(unit_float(ref.image), (1.0, 1.0, 1.0, 0.0))
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
        self.training = None
        """The LoRA's training result (`LoraTrainResult`) when `personalised_inpainter` made this one."""
        self.components = None
        """The diffusion model (`SDComponents`) it samples, for the report."""

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


def personalised_inpainter(
    components,
    references,
    class_word: str,
    *,
    lora: SubjectLoraConfig = SubjectLoraConfig(),
    resolution: int = 512,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], None] | None = None,
    publish: Callable[[str, Path], object] | None = None,
    batch_views: int = 8,
) -> DiffusionInpainter:
    """Personalise an `inpaint` model (TIRE step 3): train the subject LoRA in place on the reference photos
    (squared to `resolution`), publish it in diffusers' format (`publish(name, path)`), and return the inpainter
    with the adapter active, inpainting `batch_views` views per pipeline call. `progress(step, total, text)` after
    each LoRA step, `cancel()` before each."""
    images, masks = square_references(references, resolution)
    result = train_subject_lora(components, images, masks, class_word=class_word, config=lora, seed=seed,
                                progress=progress, cancel=cancel)
    if components.device.type == "cuda":
        torch.cuda.empty_cache()  # the training's optimizer state and activations are gone: give their pool back
    if publish is not None:
        with tempfile.TemporaryDirectory() as folder:
            path = save_lora(components, folder, lora.adapter_name)
            publish(path.name, path)
    pipe = build_inpainter(components)  # the adapter trained in place stays active
    label = f"subject-LoRA Stable Diffusion inpainting ({components.label or components.source})"
    if components.degraded and "noise" not in label:
        label += " [random weights: the output is noise]"
    inpainter = DiffusionInpainter(pipe, lora.prompt(class_word), label, DiffusionInpaintConfig(batch_size=batch_views),
                                   seed=seed, cancel=cancel)
    inpainter.training, inpainter.components = result, components
    return inpainter
