"""Multi-modal DreamBooth (Customize-It-3D, seed 003; DESIGN.md 5.2.1-2): one identifier, four modalities.

The reference photo gives RGB and the foreground mask; depth and normal come from the aligned mesh at the
reference camera (exact ray casting, no monocular estimator). Each modality is encoded as the image its
prompt names ("a depth map of sks cat": near bright, far dark, background black; "a normal map": camera-space
normals as RGB, x right / y up / z towards the viewer, background black) and the `base` UNet is personalised
in stages mask -> depth -> normal -> rgb, one LoRA adapter continued from stage to stage (or, method `full`,
every UNet and text-encoder weight, the authors' way).

Prior preservation (DreamBooth's class-specific prior, the authors' 200 class images) is given per stage as a
`prior.ClassPrior`; the pipeline gives it to the rgb stage only, with class images the base model makes from
`class_prompt("rgb", class_word)` ("a rgb photo of cat"). Why only there: the prior is meant to keep what the
class word means to the base model, which has learned it from photos; asked for "a depth map of cat" or "a
normal map of cat" the base model draws pictures in no fixed encoding (neither our near-bright inverse depth
on black nor our camera-space normal colours), so a prior from them would pull the depth and normal stages
away from the encoding the coarse stage renders and scores. The adapter (or the fine-tuned weights) is shared
by all four prompts and the rgb stage comes last, so its prior regularises the model every later SDS prompt
uses; one set of class images per class also keeps the cost (50 denoising steps an image) to one set.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..components import weights_changed
from ..config import MultiModalConfig, SubjectLoraConfig
from .lora import train_subject_lora
from .loop import LoraTrainResult, PromptEmbeds, Trainable, subject_batch, train
from .prior import ClassPrior

MODALITIES = ("mask", "depth", "normal", "rgb")
"""Training order (the authors')."""
PROMPTS = {
    "mask": "a foreground mask of sks {class_word}",
    "depth": "a depth map of sks {class_word}",
    "normal": "a normal map of sks {class_word}",
    "rgb": "a rgb photo of sks {class_word}",
}


def prompt(modality: str, class_word: str) -> str:
    """The modality's prompt, e.g. prompt("depth", "cat") == "a depth map of sks cat"."""
    if modality not in PROMPTS:
        raise ValueError(f"modality must be one of {MODALITIES}, got {modality!r}")
    return PROMPTS[modality].format(class_word=class_word)


def class_prompt(modality: str, class_word: str) -> str:
    """The modality's prompt without the identifier, for prior preservation: class_prompt("rgb", "cat") ==
    "a rgb photo of cat"."""
    return prompt(modality, class_word).replace("sks ", "", 1)


def depth_image(depth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[H, W] camera depth + [H, W] bool -> [H, W, 3] float32 in [0, 1]: inverse depth normalised over the
    foreground to [0.1, 1] (near bright), background 0 (as MiDaS-style depth maps look)."""
    out = np.zeros(depth.shape, np.float32)
    if mask.any():
        inv = 1.0 / np.maximum(depth[mask], 1e-6)
        lo, hi = inv.min(), inv.max()
        out[mask] = 0.1 + 0.9 * ((inv - lo) / (hi - lo) if hi > lo else 1.0)
    return np.repeat(out[..., None], 3, axis=-1)


def normal_image(normal_world: np.ndarray, mask: np.ndarray, viewmat: np.ndarray) -> np.ndarray:
    """[H, W, 3] world normals + [H, W] bool + [4, 4] world-to-camera (OpenCV axes) -> [H, W, 3] float32 in
    [0, 1]: camera-space normal with x right, y up, z towards the viewer, as (n + 1) / 2; background 0."""
    n = normal_world @ np.asarray(viewmat, np.float64)[:3, :3].T  # OpenCV camera axes: x right, y down, z forward
    n = n * np.array([1.0, -1.0, -1.0])
    out = ((n + 1) / 2).astype(np.float32)
    out[~mask] = 0
    return out


def mask_image(mask: np.ndarray) -> np.ndarray:
    """[H, W] bool -> [H, W, 3] float32: white foreground on black."""
    return np.repeat(mask.astype(np.float32)[..., None], 3, axis=-1)


def modality_images(rgb: np.ndarray, mask: np.ndarray, passes, viewmats: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The four training sets of N references: {modality: (images [N, H, W, 3] float32 in [0, 1], valid
    [N, H, W] bool)}.

    rgb [N, H, W, 3] in [0, 1] and mask [N, H, W] bool come from the photos; `passes` are the mesh passes at
    the same N cameras (`Raycaster(mesh).passes(cameras)`), viewmats [N, 4, 4]. The RGB stage learns only the
    photo's foreground (`valid` = mask; the background is replaced by white); mask, depth and normal images are
    whole pictures (`valid` everywhere), their black background included.
    """
    rgb, mask = np.asarray(rgb, np.float32), np.asarray(mask, bool)
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or mask.shape != rgb.shape[:3]:
        raise ValueError(f"rgb must be [N, H, W, 3] and mask [N, H, W], got {rgb.shape} and {mask.shape}")
    depth, hit, normal = (np.asarray(t.cpu()) for t in (passes.depth, passes.mask, passes.normal))
    if depth.shape != mask.shape:
        raise ValueError(f"passes must be at the references' cameras and size {mask.shape}, got {depth.shape}")
    everywhere = np.ones_like(mask)
    return {
        "mask": (np.stack([mask_image(m) for m in mask]), everywhere),
        "depth": (np.stack([depth_image(d, h) for d, h in zip(depth, hit)]), everywhere),
        "normal": (np.stack([normal_image(n, h, v) for n, h, v in zip(normal, hit, viewmats)]), everywhere),
        "rgb": (rgb, mask),
    }


@dataclass(frozen=True)
class MultiModalResult:
    stages: tuple[tuple[str, LoraTrainResult], ...]
    """(modality, its training result) in training order; stages with 0 steps are left out."""
    adapter_name: str
    seconds: float


def train_multimodal(
    components,
    modalities: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    class_word: str,
    config: MultiModalConfig = MultiModalConfig(),
    seed: int = 0,
    prior: dict[str, ClassPrior] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    cancel: Callable[[], None] | None = None,
) -> MultiModalResult:
    """Personalise `components.unet` (a 4-channel `base` UNet) in place: one LoRA adapter trained on the mask,
    then depth, normal and rgb images (from `modality_images`), each with its prompt. Method `full` trains the
    UNet's weights and (`train_text_encoder`) `components.text_encoder`'s in place instead, so every later
    `encode_prompts(components, ...)` uses the fine-tuned encoder. `prior`: {modality: ClassPrior} for the
    stages that preserve the class prior (the pipeline: {"rgb": ...}, see the module docstring). Save with
    `lora.save_lora(components, folder, result.adapter_name)` (method `lora`) or `save_full(components, folder)`
    (method `full`)."""
    if components.unet.config.in_channels != 4:
        raise ValueError(f"multi-modal DreamBooth needs the `base` model (4-channel UNet), got {components.unet.config.in_channels} channels")
    missing = [m for m in MODALITIES if m not in modalities]
    if missing:
        raise ValueError(f"modalities lacks {missing}: pass modality_images(...)")
    prior = dict(prior or {})
    unknown = sorted(set(prior) - set(MODALITIES))
    if unknown:
        raise ValueError(f"prior names modalities {unknown}; they are {MODALITIES}")
    total, done, results, start = sum(config.steps), 0, [], time.perf_counter()
    first = True
    for i, (modality, steps) in enumerate(zip(MODALITIES, config.steps)):
        if steps == 0:
            continue
        images, valid = modalities[modality]
        cfg = dataclasses.replace(config.lora, steps=steps)
        if modality in ("depth", "normal") and not config.geometric_augment:
            cfg = dataclasses.replace(cfg, hflip_prob=0.0, max_rotation_deg=0.0)
        text = prompt(modality, class_word)

        def stage_progress(step, _n, msg, _done=done, _m=modality):
            if progress is not None:
                progress(_done + step, total, f"multi-modal DreamBooth ({_m}): {msg}")

        if config.method == "full":
            r = train_full(components, images, valid, text, cfg, config.full_learning_rate, seed + i, stage_progress, cancel,
                           train_text_encoder=config.train_text_encoder, prior=prior.get(modality))
        else:
            r = train_subject_lora(
                components, images, valid, prompts=text, config=cfg, seed=seed + i, resume=not first,
                prior=prior.get(modality), progress=stage_progress, cancel=cancel,
            )
        first = False
        done += steps
        results.append((modality, r))
    return MultiModalResult(tuple(results), config.lora.adapter_name, time.perf_counter() - start)


def train_full(components, images, valid, prompt_text: str, config: SubjectLoraConfig, learning_rate: float, seed: int,
               progress=None, cancel=None, *, train_text_encoder: bool = True, prior: ClassPrior | None = None
               ) -> LoraTrainResult:
    """Fine-tune every weight of `components.unet` (and, with `train_text_encoder`, of
    `components.text_encoder`) in place on one modality, in the loop the LoRA trains in (`loop.train`: the
    same image order, masked denoising loss, augmentation, scaler, clipping and CUDA-graphed UNet call), one
    AdamW over both at `learning_rate` (diffusers' DreamBooth with `--train_text_encoder`), the prompt
    re-encoded every step so its gradient reaches the encoder (else encoded once by the frozen one). With
    `prior`, every step adds class images and their prompt (`objective.subject_prior_loss`). The trained
    models run in fp32 (master weights; fp16 autocast on CUDA) and are cast back to the components' dtype
    afterwards."""
    if getattr(components.unet, "peft_config", None):
        raise ValueError("the UNet carries LoRA adapters: remove them before a full fine-tune")
    weights_changed(components)  # the model cache must not hand these weights to a later job
    imgs, masks = subject_batch(components, images, valid, prior)
    embed = PromptEmbeds(components, [prompt_text] * imgs.shape[0], prior.prompt if prior is not None else None,
                         config.batch_size, trained=train_text_encoder)
    models = (components.unet,) + ((components.text_encoder,) if train_text_encoder else ())
    for m in models:
        m.float().requires_grad_(True)

    def restore():
        for m in models:
            m.requires_grad_(False).to(components.dtype)

    full = Trainable("full fine-tune", "full", [p for m in models for p in m.parameters()], learning_rate, models,
                     restore)
    return train(components, imgs, masks, embed, full, config, seed=seed, prior=prior, progress=progress,
                 cancel=cancel)


def save_full(components, folder, *, text_encoder: bool = True) -> "Path":
    """Write the fine-tuned models in diffusers layout: `folder/unet/` and, with `text_encoder`, the fine-tuned
    `folder/text_encoder/` (safetensors), loadable with `UNet2DConditionModel.from_pretrained(folder,
    subfolder="unet")`, `CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")`, or as the parts of
    a pipeline: `StableDiffusionPipeline.from_pretrained(base, unet=..., text_encoder=...)`. Returns `folder`."""
    out = Path(folder)
    components.unet.save_pretrained(out / "unet", safe_serialization=True)
    if text_encoder:
        components.text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    return out
