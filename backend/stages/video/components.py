"""The video model by role, from local folders only, or built in code for `--models tiny`.

Roles: `video`, a Wan 2.1/2.2 text-to-video model in diffusers layout (transformer/, vae/, text_encoder/,
tokenizer/, scheduler/, as `WanPipeline.save_pretrained` writes it); `adapter`, a pre-trained 3Dapter (the
folder `likeness3d train-3dapter --out` writes). A role's folder is `<models>/roles.json`'s entry for it (a
folder relative to the models folder, or absolute), else `<models>/<role>`. Nothing here downloads anything."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ....protocol.errors import ModelMissing
from ...model_dirs import TINY, configured_models, models_dir
from . import tiny

VIDEO_SUBFOLDERS = ("transformer", "vae", "text_encoder", "tokenizer", "scheduler")
ADAPTER_WEIGHTS = "pytorch_lora_weights.safetensors"
ADAPTER_META = "adapter_config.json"


@dataclass(frozen=True)
class VideoComponents:
    """The parts of a Wan text-to-video model on one device in one dtype, eval mode, frozen weights."""

    transformer: Any
    """diffusers `WanTransformer3DModel`: [B, 16, F, h, w] latents + timestep + prompt embeddings -> velocity."""
    vae: Any
    """diffusers `AutoencoderKLWan`: 8x spatial, 4x temporal compression (F = (frames - 1) / 4 + 1)."""
    text_encoder: Any
    """transformers `UMT5EncoderModel`."""
    tokenizer: Any
    """transformers T5-family tokenizer."""
    scheduler: Any
    """The model's flow-matching scheduler (FlowMatchEulerDiscrete, or UniPC with flow sigmas)."""
    source: str
    """The folder the weights came from, or `tiny`."""
    device: torch.device
    dtype: torch.dtype
    degraded: bool = False
    """True for `tiny` (random weights): the video is noise; reports say so."""
    label: str = ""

    def pipeline(self):
        """A diffusers `WanPipeline` over these very modules (prompt encoding, `load_lora_weights`, decoding)."""
        from diffusers import WanPipeline

        return WanPipeline(tokenizer=self.tokenizer, text_encoder=self.text_encoder, transformer=self.transformer,
                           vae=self.vae, scheduler=self.scheduler)

    @property
    def max_tokens(self) -> int:
        return int(min(getattr(self.tokenizer, "model_max_length", 512) or 512, 512))

    def provenance(self) -> dict:
        return {"source": self.source, "label": self.label, "degraded": self.degraded}


def default_dtype(device: torch.device | str) -> torch.dtype:
    """bf16 on CUDA (Wan's training dtype), fp32 on the CPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


def role_folder(role: str, root: Path) -> Path | None:
    """`roles.json`'s folder for `role`, else `<root>/<role>`; None when neither names an existing folder
    (a roles.json entry that names a missing folder is `ModelMissing`)."""
    table_file = root / "roles.json"
    if table_file.is_file():
        try:
            table = json.loads(table_file.read_text())
        except (OSError, ValueError) as e:
            raise ModelMissing(f"model role {role!r}: {table_file} is not valid JSON ({e})") from e
        entry = table.get(role) if isinstance(table, dict) else None
        if entry is not None:
            folder = Path(entry) if Path(str(entry)).is_absolute() else root / str(entry)
            if not folder.is_dir():
                raise ModelMissing(f"model role {role!r}: {table_file} names {entry!r}, which is not a folder ({folder})")
            return folder
    folder = root / role
    return folder if folder.is_dir() else None


def load_video_components(models: str | Path | None, *, device: str | torch.device = "cpu",
                          dtype: torch.dtype | None = None) -> VideoComponents:
    """The `video` role from `models` (a folder, or "tiny"), else $LIKENESS3D_MODELS; `ModelMissing` naming the
    role and the folder when there is none."""
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    value = configured_models(models)
    if value == TINY:
        parts = tiny.build("tiny", device, dtype)
        return VideoComponents(**parts, source=TINY, device=device, dtype=dtype, degraded=True, label=tiny.TINY_LABEL)
    root = models_dir(value)
    if root is None:
        raise ModelMissing("model role 'video' (a Wan text-to-video model in diffusers layout): no models folder is "
                           "configured; pass --models DIR or set LIKENESS3D_MODELS (--models tiny runs a smoke test)",
                           field="models")
    if not root.is_dir():
        raise ModelMissing(f"model role 'video': the models folder {root} does not exist", field="models")
    folder = role_folder("video", root)
    if folder is None:
        raise ModelMissing(f"model role 'video' not found: searched {root / 'video'} (put a Wan text-to-video model in "
                           f"diffusers layout there, or name its folder in {root / 'roles.json'})", field="models")
    missing = [s for s in VIDEO_SUBFOLDERS if not (folder / s).is_dir()]
    if missing:
        raise ModelMissing(f"model role 'video': {folder} is not a complete diffusers-layout Wan model (missing "
                           f"{', '.join(missing)}/)", field="models")
    os.environ["HF_HUB_OFFLINE"] = "1"
    from diffusers import WanPipeline

    try:
        pipe = WanPipeline.from_pretrained(folder, dtype=dtype, local_files_only=True)
    except (OSError, ValueError) as e:
        raise ModelMissing(f"model role 'video': could not load the model in {folder}: {e}", field="models") from e
    if getattr(pipe, "transformer_2", None) is not None or pipe.config.get("expand_timesteps"):
        raise ModelMissing(f"model role 'video': {folder} is a Wan 2.2 two-expert or TI2V model (transformer_2 / "
                           f"expand_timesteps), which the video pipeline does not run yet; use a Wan 2.1 or 2.2 "
                           f"single-transformer text-to-video model", field="models")
    for m in (pipe.transformer, pipe.vae, pipe.text_encoder):
        m.to(device).eval().requires_grad_(False)
    return VideoComponents(pipe.transformer, pipe.vae, pipe.text_encoder, pipe.tokenizer, pipe.scheduler,
                           source=str(folder), device=device, dtype=dtype, label=f"video model from {folder}")


def find_adapter(models: str | Path | None) -> Path | None:
    """The pre-trained 3Dapter's folder (role `adapter`) when the models folder has one, else None (the subject
    stage then starts 3Dapter from zero and says so). A folder without the weights file is `ModelMissing`."""
    value = configured_models(models)
    root = models_dir(value) if value and value != TINY else None
    if root is None or not root.is_dir():
        return None
    folder = role_folder("adapter", root)
    if folder is None:
        return None
    if not (folder / ADAPTER_WEIGHTS).is_file():
        raise ModelMissing(f"model role 'adapter': {folder} has no {ADAPTER_WEIGHTS} (write one with likeness3d "
                           f"train-3dapter --out {folder})", field="models")
    return folder


@torch.no_grad()
def encode_prompts(components: VideoComponents, prompts: list[str]) -> torch.Tensor:
    """[P, L, D] prompt embeddings through the pipeline's own T5 encoding (padding zeroed past each prompt)."""
    pipe = components.pipeline()
    embeds, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, max_sequence_length=components.max_tokens,
                                   device=components.device, dtype=components.dtype)
    return embeds


@torch.no_grad()
def encode_images(components: VideoComponents, images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [0, 1] -> [N, 16, 1, H/8, W/8] normalised latents, each image a one-frame video."""
    vae = components.vae
    x = (images.to(components.device, vae.dtype) * 2 - 1)[:, :, None]
    mean, inv_std = latent_stats(vae, x.device, x.dtype)
    z = torch.cat([vae.encode(x[i:i + 1]).latent_dist.mode() for i in range(len(x))])
    return ((z - mean) * inv_std).to(components.dtype)


def latent_stats(vae, device, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Wan's latent normalisation: z_norm = (z - mean) * inv_std (as WanPipeline decodes it back)."""
    zd = vae.config.z_dim
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=dtype).view(1, zd, 1, 1, 1)
    inv_std = 1.0 / torch.tensor(vae.config.latents_std, device=device, dtype=dtype).view(1, zd, 1, 1, 1)
    return mean, inv_std


@torch.no_grad()
def decode_latents(components: VideoComponents, latents: torch.Tensor) -> torch.Tensor:
    """[1, 16, F, h, w] normalised latents -> [frames, H, W, 3] uint8."""
    vae = components.vae
    mean, inv_std = latent_stats(vae, latents.device, vae.dtype)
    video = vae.decode(latents.to(vae.dtype) / inv_std + mean, return_dict=False)[0]  # [1, 3, T, H, W] in [-1, 1]
    video = ((video[0].float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return video.permute(1, 2, 3, 0).cpu()
