"""Subject LoRA for a Stable Diffusion UNet (inpainting or base) via peft, with a loss restricted to the
valid foreground (`objective`), trained by the shared loop (`loop.train`); saved and loaded in diffusers'
LoRA format (`pytorch_lora_weights.safetensors`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..config import SubjectLoraConfig
from ..text import prompt_list
from .loop import CancelFn, LoraTrainResult, ProgressFn, PromptEmbeds, Trainable, subject_batch, train
from .objective import subject_loss, subject_prior_loss  # noqa: F401  (imported from here by callers)
from .prior import ClassPrior

LORA_WEIGHT_NAME = "pytorch_lora_weights.safetensors"
"""The file diffusers' `load_lora_weights(folder)` looks for."""


def add_lora(components, config: SubjectLoraConfig, *, resume: bool = False, seed: int | None = None
             ) -> list[torch.nn.Parameter]:
    """Give the UNet a fresh peft LoRA adapter named `config.adapter_name` (or, with `resume`, keep training
    an existing one) and make it the active one. Returns its parameters, fp32 and trainable; every other
    UNet weight stays frozen in the components' dtype. With `seed`, a fresh adapter's Gaussian A matrices are
    drawn from it (torch's global generator is left as it was), so a training run depends on its seed alone."""
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
        if seed is None:
            unet.add_adapter(lora, adapter_name=name)
        else:
            dev = components.device
            cuda = [dev.index or 0] if dev.type == "cuda" else []
            with torch.random.fork_rng(devices=cuda):  # manual_seed seeds CUDA too: fork it as well
                torch.manual_seed(seed)
                unet.add_adapter(lora, adapter_name=name)
    unet.set_adapter(name)
    params = [p for n, p in unet.named_parameters() if "lora_" in n and f".{name}." in n]
    for p in params:
        p.requires_grad_(True)
    cast_training_params(unet, torch.float32)  # fp32 LoRA parameters on an fp16 UNet (mixed precision)
    return params


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
    `config.prompt(class_word)`, encoded once by the frozen text encoder. `resume` continues an existing
    adapter of that name (staged training); otherwise any old one is replaced. `prior`: class images of the
    same size with their prompt; every step then adds `config.batch_size` of them and the loss is instance +
    prior.weight x prior (`subject_prior_loss`). fp16 UNet with fp32 LoRA parameters and loss scaling on
    CUDA, fp32 on CPU; the UNet call on CUDA graphs where it can be (the result's `cuda_graphs`,
    `graph_note`). Save with `save_lora`, remove with `remove_lora`.
    """
    imgs, valid = subject_batch(components, images, masks, prior)
    text = prompt_list(prompts if prompts is not None else config.prompt(class_word), imgs.shape[0])
    embed = PromptEmbeds(components, text, prior.prompt if prior is not None else None, config.batch_size,
                         trained=False)
    params = add_lora(components, config, resume=resume, seed=seed)

    def restore():
        for p in params:
            p.requires_grad_(False)

    lora = Trainable("subject LoRA", config.adapter_name, params, config.learning_rate, (components.unet,), restore)
    return train(components, imgs, valid, embed, lora, config, seed=seed, prior=prior, progress=progress,
                 cancel=cancel)


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

