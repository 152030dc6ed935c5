"""Stable Diffusion components by role, from local folders only (diffusers layout or the Hugging Face cache
layout with offline mode on), or built in code for `--models tiny`. Nothing here downloads anything."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ....protocol.errors import ModelMissing
from ...model_dirs import models_dir
from . import tiny

ROLES = ("inpaint", "base")
"""`inpaint`: an SD inpainting model (9-channel UNet, e.g. SD 2 inpainting) for TIRE; `base`: a
text-to-image SD model (4-channel UNet) for Customize-It-3D. Other role names are looked up the same way."""

DEFAULT_REPOS = {"inpaint": "stabilityai/stable-diffusion-2-inpainting", "base": "stabilityai/stable-diffusion-2-1-base"}
"""Hub repos looked for in an HF cache under the models folder when neither roles.json nor `<root>/<role>`
names a model, so `--models ~/.cache/huggingface/hub` works as it is (nothing is downloaded)."""

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
ROLES_FILE = "roles.json"
TINY = "tiny"
_ROLE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class SDComponents:
    """The five parts of a Stable Diffusion model, on one device in one dtype, eval mode, frozen weights."""

    unet: Any
    """diffusers `UNet2DConditionModel`; `unet.config.in_channels` is 9 for inpainting models, 4 otherwise."""
    vae: Any
    """diffusers `AutoencoderKL`; latents are `vae.config.scaling_factor` x its encoder's output."""
    text_encoder: Any
    """transformers `CLIPTextModel`; [B, 77] token ids -> [B, 77, D] hidden states."""
    tokenizer: Any
    """transformers `CLIPTokenizer` (pads to `model_max_length`, 77)."""
    scheduler: Any
    """A diffusers scheduler carrying the model's training noise schedule (betas, prediction type)."""
    role: str
    """The role asked for (`inpaint`, `base`, ...)."""
    source: str
    """The folder the weights came from, or `tiny`."""
    device: torch.device
    dtype: torch.dtype
    """fp16 on CUDA, fp32 on CPU unless asked otherwise."""
    degraded: bool = False
    """True for `tiny` (random weights): the output is noise; reports must say so."""
    label: str = ""
    """Human-readable description for progress text and report.json."""

    @property
    def is_inpainting(self) -> bool:
        """True when the UNet takes the 9-channel inpainting input (latents + mask + masked-image latents)."""
        return self.unet.config.in_channels == 9


def default_dtype(device: torch.device | str) -> torch.dtype:
    """fp16 on CUDA, fp32 elsewhere (CPU fp16 convolutions are slow or missing)."""
    return torch.float16 if torch.device(device).type == "cuda" else torch.float32


def load_components(
    role: str,
    models: str | Path | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
) -> SDComponents:
    """Load the SD model for `role` from `models` (`--models DIR`), else $LIKENESS3D_MODELS.

    `models == "tiny"` (or LIKENESS3D_MODELS=tiny) builds tiny random-weight models in code instead; the
    bundle is then marked `degraded`. Raises `ModelMissing` naming the role and the folder searched when no
    folder is configured or the role's folder is absent or incomplete.
    """
    if not isinstance(role, str) or not _ROLE_NAME.match(role):
        raise ValueError(f"role must be a lower-case name like 'inpaint' or 'base', got {role!r}")
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    if dtype not in (torch.float16, torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be float16, float32 or bfloat16, got {dtype}")
    if models is None:
        models = os.environ.get("LIKENESS3D_MODELS") or None
    if models is not None and str(models) == TINY:
        return _tiny_components(role, device, dtype)
    root = models_dir(models)
    if root is None:
        raise ModelMissing(
            f"no models folder is configured for role {role!r}: pass --models DIR or set LIKENESS3D_MODELS "
            f"(or use --models tiny for a smoke run)"
        )
    folder = resolve_role_folder(role, root)
    return _load_folder(role, folder, device, dtype)


def resolve_role_folder(role: str, root: Path) -> Path:
    """The diffusers-layout folder for `role` under `root`.

    Looked up in order: `<root>/roles.json` (`{"inpaint": "sd2-inpainting"}`: a folder relative to root, an
    absolute folder, or a Hub repo id `org/name` found in the HF cache layout under root or root/hub), then
    `<root>/<role>`, then the role's `DEFAULT_REPOS` entry in the HF cache layout. The folder must hold
    unet/, vae/, text_encoder/, tokenizer/ and scheduler/.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelMissing(f"model role {role!r}: the models folder {root} does not exist")
    searched: list[str] = []
    roles_file = root / ROLES_FILE
    if roles_file.is_file():
        try:
            table = json.loads(roles_file.read_text())
        except (OSError, ValueError) as e:
            raise ModelMissing(f"model role {role!r}: {roles_file} is not valid JSON ({e})") from e
        if not isinstance(table, dict):
            raise ModelMissing(f"model role {role!r}: {roles_file} must map role names to folders or repo ids")
        entry = table.get(role)
        if entry is not None:
            if not isinstance(entry, str) or not entry:
                raise ModelMissing(f"model role {role!r}: {roles_file} names {entry!r}, not a folder or repo id")
            candidate = (root / entry) if not Path(entry).is_absolute() else Path(entry)
            searched.append(str(candidate))
            if candidate.is_dir():
                return _check_layout(role, candidate)
            if _REPO_ID.match(entry):
                snapshot, looked = _hf_cache_snapshot(entry, root)
                searched.extend(looked)
                if snapshot is not None:
                    return _check_layout(role, snapshot)
            raise ModelMissing(f"model role {role!r}: {roles_file} names {entry!r}, not found (searched {', '.join(searched)})")
    candidate = root / role
    searched.append(str(candidate))
    if candidate.is_dir():
        return _check_layout(role, candidate)
    if role in DEFAULT_REPOS:
        snapshot, looked = _hf_cache_snapshot(DEFAULT_REPOS[role], root)
        searched.extend(looked)
        if snapshot is not None:
            return _check_layout(role, snapshot)
    raise ModelMissing(
        f"model role {role!r} not found: searched {', '.join(searched)} "
        f"(put a diffusers-layout model there or name it in {roles_file})"
    )


def _hf_cache_snapshot(repo_id: str, root: Path) -> tuple[Path | None, list[str]]:
    """`models--org--name/snapshots/<hash>/` under root or root/hub: the one `refs/main` names, else the
    newest snapshot. Returns (folder or None, folders searched)."""
    name = "models--" + repo_id.replace("/", "--")
    looked = []
    for cache in (root, root / "hub"):
        repo = cache / name
        looked.append(str(repo))
        snapshots = repo / "snapshots"
        if not snapshots.is_dir():
            continue
        ref = repo / "refs" / "main"
        if ref.is_file():
            chosen = snapshots / ref.read_text().strip()
            if chosen.is_dir():
                return chosen, looked
        found = sorted((p for p in snapshots.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
        if found:
            return found[-1], looked
    return None, looked


def _check_layout(role: str, folder: Path) -> Path:
    missing = [s for s in SUBFOLDERS if not (folder / s).is_dir()]
    if missing:
        raise ModelMissing(
            f"model role {role!r}: {folder} is not a complete diffusers-layout model (missing {', '.join(missing)}/)"
        )
    return folder


def _load_folder(role: str, folder: Path, device: torch.device, dtype: torch.dtype) -> SDComponents:
    # Offline for good measure; the real guarantee is a local folder + local_files_only.
    os.environ["HF_HUB_OFFLINE"] = "1"
    import diffusers
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    kw = dict(local_files_only=True)
    try:
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet", torch_dtype=dtype, **kw)
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae", torch_dtype=dtype, **kw)
        text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder", dtype=dtype, **kw)
        tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer", **kw)
        sched_cfg = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())
        sched_cls = getattr(diffusers, sched_cfg.get("_class_name", "DDIMScheduler"), diffusers.DDIMScheduler)
        scheduler = sched_cls.from_pretrained(folder, subfolder="scheduler", **kw)
    except (OSError, ValueError) as e:
        raise ModelMissing(f"model role {role!r}: could not load the model in {folder}: {e}") from e
    for m in (unet, vae, text_encoder):
        m.to(device).eval().requires_grad_(False)
    return SDComponents(
        unet, vae, text_encoder, tokenizer, scheduler, role=role, source=str(folder), device=device, dtype=dtype,
        label=f"{role} model from {folder}",
    )


def _tiny_components(role: str, device: torch.device, dtype: torch.dtype) -> SDComponents:
    if role not in tiny.UNET_IN_CHANNELS:
        raise ValueError(f"--models tiny knows roles {sorted(tiny.UNET_IN_CHANNELS)}, got {role!r}")
    return components_from_modules(
        tiny.build_modules(role), role=role, device=device, dtype=dtype, source=TINY, degraded=True, label=tiny.TINY_LABEL
    )


def components_from_modules(parts: dict, *, role: str, device: str | torch.device, dtype: torch.dtype | None = None,
                            source: str = "in-code", degraded: bool = True, label: str = "") -> SDComponents:
    """Wrap modules built in code (e.g. `tiny.build_modules(scale="sd2")` for a benchmark) as a bundle,
    moved to `device` in `dtype`."""
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    for name in ("unet", "vae", "text_encoder"):
        _cast(parts[name], dtype).to(device).eval().requires_grad_(False)
    return SDComponents(**parts, role=role, source=source, device=device, dtype=dtype, degraded=degraded, label=label)


def _cast(module: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    # Module.half()/.float() rather than .to(dtype): diffusers' ModelMixin.to warns on every dtype cast.
    casts = {torch.float16: "half", torch.float32: "float", torch.bfloat16: "bfloat16"}
    if dtype not in casts:
        raise ValueError(f"dtype must be float16, float32 or bfloat16, got {dtype}")
    return getattr(module, casts[dtype])()
