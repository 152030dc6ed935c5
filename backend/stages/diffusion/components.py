"""Stable Diffusion components by role, from local folders only (diffusers layout or the Hugging Face cache
layout with offline mode on), or built in code for `--models tiny`. Nothing here downloads anything.

In a worker process `load_components` goes through the model cache (backend/model_cache.py), keyed by (role,
folder or `tiny`, device, dtype): a later job gets the bundle an earlier one loaded, brought back to the
weights as loaded. Jobs change bundles in place, and what they may do to a cached one is:

- add peft adapters to the UNet or text encoder (the subject LoRA, `build_inpainter(lora=...)`), toggle
  them, turn on gradient checkpointing, switch to train mode, make parameters trainable: all undone at the
  end of the job and again before the bundle is handed out (`_restore`);
- change weights (a full fine-tune, a cast, a merged LoRA): call `weights_changed(components)` first, and
  the cache forgets the bundle, so the next job loads the folder again. In-place writes to the weights that
  do not go through `.data` (optimizer steps, `copy_`, `load_state_dict`) and dtype or device changes are
  also seen (tensor version counters, dtypes, devices), so a bundle changed without the call is reloaded too;
  writes through `.data` are not seen: do call `weights_changed`;
- the scheduler: every handout gets its own, made from the cached one's config (the pipelines make their
  own from it anyway); the tokenizer is shared and must not be changed (no added tokens). Attention
  processors and module hooks are not watched either: nothing in the project sets them.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ....protocol.errors import ModelMissing
from ... import model_cache
from ...model_dirs import TINY, configured_models, models_dir
from . import tiny

ROLES = ("inpaint", "base")
"""`inpaint`: an SD inpainting model (9-channel UNet, e.g. SD 2 inpainting) for TIRE; `base`: a
text-to-image SD model (4-channel UNet) for Customize-It-3D. Other role names are looked up the same way."""

DEFAULT_REPOS = {"inpaint": "stabilityai/stable-diffusion-2-inpainting", "base": "stabilityai/stable-diffusion-2-1-base"}
"""Hub repos looked for in an HF cache under the models folder when neither roles.json nor `<root>/<role>`
names a model, so `--models ~/.cache/huggingface/hub` works as it is (nothing is downloaded)."""

SUBFOLDERS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
ROLES_FILE = "roles.json"
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
    from_cache: bool = False
    """True when the modules were loaded by an earlier job of this worker (the model cache)."""
    load_seconds: float = 0.0
    """What `load_components` took: the load, or on a cache hit the check and clean-up (about 0)."""

    def provenance(self) -> dict:
        """report.json's `models` entry: where the weights came from and whether the model cache had them."""
        return {"source": self.source, "label": self.label, "degraded": self.degraded, "from_cache": self.from_cache,
                "load_seconds": round(float(self.load_seconds), 3)}

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
    folder is configured or the role's folder is absent or incomplete. Loading never changes torch's global
    random state. In a worker the bundle may come from the model cache (`from_cache`; see the module
    docstring for what a job may do to it); elsewhere every call loads afresh.
    """
    if not isinstance(role, str) or not _ROLE_NAME.match(role):
        raise ValueError(f"role must be a lower-case name like 'inpaint' or 'base', got {role!r}")
    device = torch.device(device)
    dtype = dtype or default_dtype(device)
    if dtype not in (torch.float16, torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be float16, float32 or bfloat16, got {dtype}")
    models = configured_models(models)
    if models == TINY:
        if role not in tiny.UNET_IN_CHANNELS:
            raise ValueError(f"--models tiny knows roles {sorted(tiny.UNET_IN_CHANNELS)}, got {role!r}")
        return _cached(role, TINY, device, dtype, None, lambda: _tiny_components(role, device, dtype))
    root = models_dir(models)
    if root is None:
        raise ModelMissing(
            f"no models folder is configured for role {role!r}: pass --models DIR or set LIKENESS3D_MODELS "
            f"(or use --models tiny for a smoke run)"
        )
    folder = resolve_role_folder(role, root)
    return _cached(role, str(folder), device, dtype, folder, lambda: _load_folder(role, folder, device, dtype))


def weights_changed(components: SDComponents) -> bool:
    """Say that `components`' weights are about to stop being their source's (a full fine-tune, a cast, a
    merged LoRA): the model cache forgets the bundle that shares these modules, so the next
    `load_components` loads the folder again. The caller's bundle is untouched and stays usable. Call it
    before changing anything, so a job that fails half-way leaves nothing half-changed in the cache.
    Returns whether a cached bundle was forgotten (never, outside a worker: nothing is cached there)."""
    mine = {id(components.unet), id(components.vae), id(components.text_encoder)}
    return model_cache.drop_if(lambda e: any(id(m) in mine for m in _modules(e.bundle))) > 0


@dataclass(frozen=True)
class _Cached:
    bundle: SDComponents
    state: tuple
    """`_tensor_state` as loaded."""
    files: tuple | None
    """`_folder_files` as loaded (None for models built in code)."""


def _cached(role: str, source: str, device: torch.device, dtype: torch.dtype, folder: Path | None, load) -> SDComponents:
    """The bundle through the model cache: its own scheduler, `from_cache` and `load_seconds` filled in."""
    start = time.perf_counter()
    files = _folder_files(folder) if folder is not None else None

    def load_entry() -> _Cached:
        with torch.random.fork_rng(devices=[]):  # a load (tiny's seeded init) leaves the caller's RNG as a hit does
            bundle = load()
        return _Cached(bundle, _tensor_state(bundle), files)

    def restore(entry: _Cached) -> bool:
        return entry.files == (_folder_files(folder) if folder is not None else None) and _restore(entry)

    key = (role, source, str(device), str(dtype).removeprefix("torch."))
    entry, hit = model_cache.get_or_load(key, load_entry, restore)
    b = entry.bundle
    scheduler = type(b.scheduler).from_config(b.scheduler.config) if hit else b.scheduler
    return replace(b, scheduler=scheduler, from_cache=hit, load_seconds=time.perf_counter() - start)


def _modules(bundle: SDComponents) -> tuple:
    return bundle.unet, bundle.vae, bundle.text_encoder


def _tensor_state(bundle: SDComponents) -> tuple:
    """Every parameter's and buffer's name, dtype, device and version counter (bumped by in-place writes)."""
    return tuple((n, t.dtype, t.device, t._version) for m in _modules(bundle)
                 for n, t in (*m.named_parameters(), *m.named_buffers()))


def _folder_files(folder: Path) -> tuple:
    """(relative name, size, mtime) of every file under the folder: weights replaced in place change it."""
    out = []
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            st = f.stat()
            out.append((f.relative_to(folder).as_posix(), st.st_size, st.st_mtime_ns))
    return tuple(out)


def _restore(entry: _Cached) -> bool:
    """Bring a cached bundle back to its weights as loaded: peft adapters removed from every module, gradient
    checkpointing off, eval mode, nothing trainable, no gradients kept. False when its tensors are not the
    ones loaded (an in-place write, a cast, a move): it must be loaded again."""
    for m in _modules(entry.bundle):
        _remove_adapters(m)
        for sub in m.modules():  # what diffusers' and transformers' checkpointing switches set, both
            if getattr(sub, "gradient_checkpointing", False) is True:
                sub.gradient_checkpointing = False
        m.eval().requires_grad_(False)
        for p in m.parameters():
            p.grad = None
    return _tensor_state(entry.bundle) == entry.state


def _remove_adapters(module: torch.nn.Module) -> None:
    """Replace every peft-wrapped layer by its base layer and forget the adapters' configs (diffusers'
    `unload_lora` for UNets, its text-encoder equivalent for transformers models): the module is again the
    one loaded, with the same parameter names."""
    try:
        from peft.tuners.tuners_utils import BaseTunerLayer
    except ImportError:  # without peft no adapter can have been added
        return
    if any(isinstance(m, BaseTunerLayer) for m in module.modules()):
        from diffusers.utils import recurse_remove_peft_layers

        recurse_remove_peft_layers(module)
    if "peft_config" in vars(module):
        del module.peft_config
    if getattr(module, "_hf_peft_config_loaded", None):
        module._hf_peft_config_loaded = None if hasattr(module, "unload_lora") else False


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
        scheduler = _scheduler(diffusers, role, folder, kw)
    except (OSError, ValueError) as e:
        raise ModelMissing(f"model role {role!r}: could not load the model in {folder}: {e}") from e
    for m in (unet, vae, text_encoder):
        m.to(device).eval().requires_grad_(False)
    return SDComponents(
        unet, vae, text_encoder, tokenizer, scheduler, role=role, source=str(folder), device=device, dtype=dtype,
        label=f"{role} model from {folder}",
    )


def _scheduler(diffusers, role: str, folder: Path, kw: dict):
    """The scheduler the folder's scheduler_config.json names (its `_class_name`), as diffusers loads it; a
    class this diffusers does not have is an error naming it, not a silent substitute."""
    config_file = folder / "scheduler" / "scheduler_config.json"
    name = json.loads(config_file.read_text()).get("_class_name")
    cls = getattr(diffusers, name, None) if isinstance(name, str) else None
    if cls is None or not hasattr(cls, "from_pretrained") or not name.endswith("Scheduler"):
        raise ModelMissing(f"model role {role!r}: {config_file} names the scheduler class {name!r}, which diffusers "
                           f"{diffusers.__version__} does not have (write a diffusers scheduler class there, e.g. "
                           f"'DDIMScheduler')")
    return cls.from_pretrained(folder, subfolder="scheduler", **kw)


def _tiny_components(role: str, device: torch.device, dtype: torch.dtype) -> SDComponents:
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
