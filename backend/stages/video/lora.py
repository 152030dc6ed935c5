"""The two LoRAs of the video pipeline, both peft adapters inside the one `WanTransformer3DModel`:
`SUBJECT` (3DreamBooth, on the generated tokens' projections) and `ADAPTER` (3Dapter, on the conditioning
tokens'); `joint.lin` routes each stream to its own. Saved in diffusers' LoRA format (`transformer.`-prefixed
peft keys, the LoraConfig as metadata), so `WanPipeline.load_lora_weights` loads the 3DreamBooth one."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch

SUBJECT = "subject"
ADAPTER = "adapter"


def add_lora(transformer, name: str, rank: int, alpha: float, targets, *, seed: int) -> list[torch.nn.Parameter]:
    """A fresh adapter `name` (Gaussian A, zero B: the model starts exactly as the base), trainable fp32
    parameters; every base weight stays frozen. torch's global RNG is left as it was."""
    from peft import LoraConfig

    if name in (getattr(transformer, "peft_config", None) or {}):
        transformer.delete_adapters(name)
    config = LoraConfig(r=rank, lora_alpha=alpha, init_lora_weights="gaussian", target_modules=list(targets))
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # two adapters: on purpose
        torch.manual_seed(seed)
        transformer.add_adapter(config, adapter_name=name)
    return lora_parameters(transformer, name, trainable=True)


def lora_parameters(transformer, name: str, *, trainable: bool | None = None) -> list[torch.nn.Parameter]:
    params = [p for n, p in transformer.named_parameters() if "lora_" in n and f".{name}." in n]
    if trainable is not None:
        for p in params:
            p.data = p.data.float() if trainable else p.data
            p.requires_grad_(trainable)
    return params


def state_dict(transformer, name: str) -> dict[str, torch.Tensor]:
    """The adapter's weights under peft's keys without the adapter name (`blocks.0.attn1.to_q.lora_A.weight`)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(transformer, adapter_name=name).items()}


def save_diffusers(transformer, name: str, folder: Path, weight_name: str) -> Path:
    """`folder/weight_name` in diffusers' Wan LoRA format (loadable by `WanPipeline.load_lora_weights`)."""
    from diffusers import WanPipeline

    folder.mkdir(parents=True, exist_ok=True)
    meta = transformer.peft_config[name].to_dict()
    meta = {k: (sorted(v) if isinstance(v, set) else v) for k, v in meta.items()}
    WanPipeline.save_lora_weights(folder, transformer_lora_layers=state_dict(transformer, name), weight_name=weight_name,
                                  transformer_lora_adapter_metadata=meta)
    return folder / weight_name


def load_adapter(transformer, folder: Path, *, seed: int) -> dict:
    """Add adapter `ADAPTER` from a `train-3dapter` folder (its rank, alpha and targets); returns its metadata."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    from .components import ADAPTER_META, ADAPTER_WEIGHTS

    meta = json.loads((folder / ADAPTER_META).read_text()) if (folder / ADAPTER_META).is_file() else {}
    weights = load_file(str(folder / ADAPTER_WEIGHTS))
    weights = {k.removeprefix("transformer."): v for k, v in weights.items()}
    rank = int(meta.get("rank") or next(v.shape[0] for k, v in weights.items() if "lora_A" in k))
    alpha = float(meta.get("alpha", rank))
    targets = meta.get("target_modules") or sorted({k.split(".lora_")[0].split(".", 2)[2] for k in weights})
    add_lora(transformer, ADAPTER, rank, alpha, targets, seed=seed)
    result = set_peft_model_state_dict(transformer, weights, adapter_name=ADAPTER)
    unexpected = list(getattr(result, "unexpected_keys", []) or [])
    if unexpected:
        raise ValueError(f"3Dapter weights in {folder} do not fit this transformer (unexpected keys, e.g. {unexpected[0]})")
    lora_parameters(transformer, ADAPTER, trainable=True)
    return {"rank": rank, "alpha": alpha, "target_modules": list(targets), **{k: v for k, v in meta.items()
                                                                             if k not in ("rank", "alpha", "target_modules")}}


def save_adapter(transformer, folder: Path, meta: dict) -> Path:
    """A `train-3dapter` folder: the weights (diffusers format) plus adapter_config.json (rank, alpha, targets...)."""
    from .components import ADAPTER_META, ADAPTER_WEIGHTS

    cfg = transformer.peft_config[ADAPTER]
    path = save_diffusers(transformer, ADAPTER, folder, ADAPTER_WEIGHTS)
    full = {"rank": cfg.r, "alpha": cfg.lora_alpha, "target_modules": sorted(cfg.target_modules), **meta}
    (folder / ADAPTER_META).write_text(json.dumps(full, indent=1))
    return path
