"""`likeness3d train-3dapter`: 3Dapter's single-view pre-training on (clean reference, target in context,
prompt) triples, saved as the folder the video pipeline loads as the `adapter` role.

The pairs folder holds one folder per pair:

    PAIRS/<name>/reference.png   the object alone on white (RGBA: masked to white; RGB: taken as it is)
    PAIRS/<name>/target.png      the same object in a scene
    PAIRS/<name>/prompt.txt      one line describing the target ("a red sneaker on a wooden floor")

Both images are square-padded with white and resized to --size. The output folder holds
`pytorch_lora_weights.safetensors` (diffusers' Wan LoRA format) and `adapter_config.json` (rank, alpha,
targets, steps, losses, pairs)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ...protocol.errors import InvalidAsset

PAIR_FILES = ("reference.png", "target.png", "prompt.txt")


def read_pairs(folder: Path) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    """(name, reference RGBA uint8, target RGBA uint8, prompt) of every pair; each problem names the pair and file."""
    from PIL import Image

    if not folder.is_dir():
        raise InvalidAsset(f"--pairs: {folder} is not a folder (expected PAIRS/<name>/reference.png, target.png, "
                           f"prompt.txt)", field="pairs")
    pairs = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        missing = [f for f in PAIR_FILES if not (sub / f).is_file()]
        if missing:
            raise InvalidAsset(f"--pairs: pair {sub.name!r} lacks {', '.join(missing)} (each pair folder holds "
                               f"{', '.join(PAIR_FILES)})", field=f"pairs.{sub.name}")
        prompt = (sub / "prompt.txt").read_text(encoding="utf-8").strip()
        if not prompt:
            raise InvalidAsset(f"--pairs: pair {sub.name!r} has an empty prompt.txt; write one line describing the "
                               f"target", field=f"pairs.{sub.name}.prompt")
        imgs = []
        for f in ("reference.png", "target.png"):
            try:
                with Image.open(sub / f) as im:
                    imgs.append(np.asarray(im.convert("RGBA")))
            except OSError as e:
                raise InvalidAsset(f"--pairs: pair {sub.name!r}: cannot read {f}: {e}", field=f"pairs.{sub.name}") from None
        pairs.append((sub.name, imgs[0], imgs[1], prompt))
    if not pairs:
        raise InvalidAsset(f"--pairs: {folder} holds no pair folders (expected PAIRS/<name>/reference.png, target.png, "
                           f"prompt.txt)", field="pairs")
    return pairs


def train_3dapter(pairs_dir: Path, out: Path, *, models, device: str, config, steps: int | None = None,
                  size: int = 480, seed: int = 0, progress=None) -> dict:
    """Train 3Dapter on the pairs with the frozen `video` model; write the adapter folder; return its metadata."""
    import torch

    from ..stages.video import components as vc
    from ..stages.video.lora import ADAPTER, add_lora, save_adapter
    from ..stages.video.train import pretrain_adapter
    from ..stages.video.views import prepare_view

    if not isinstance(size, int) or size < 16 or size % 16:
        raise InvalidAsset(f"--size must be a multiple of 16 (>= 16), got {size!r}", field="size")
    pairs = read_pairs(pairs_dir)
    start = time.perf_counter()
    comps = vc.load_video_components(models, device=device)
    samples = []
    for name, ref, target, prompt in pairs:
        r, _ = prepare_view(ref, size)
        t, _ = prepare_view(target, size)
        lat = vc.encode_images(comps, torch.from_numpy(np.stack([r, t])).permute(0, 3, 1, 2))
        samples.append((lat[0:1], lat[1:2], vc.encode_prompts(comps, [prompt])))
    add_lora(comps.transformer, ADAPTER, config.rank, config.alpha, config.target_modules, seed=seed)
    say = progress or (lambda s, n, loss: print(f"  [3dapter {s}/{n}] loss {loss:.4f}", flush=True)
                       if s == n or s % max(1, n // 20) == 0 else None)
    result = pretrain_adapter(comps, samples, config, seed=seed, steps=steps, progress=say)
    meta = {"steps": len(result.losses), "pairs": len(pairs), "size": size, "seconds": round(time.perf_counter() - start, 3),
            "loss_first": round(result.losses[0], 6), "loss_last_10_mean": round(float(np.mean(result.losses[-10:])), 6),
            "video_model": comps.provenance(), "learning_rate": config.pretrain_learning_rate}
    out.mkdir(parents=True, exist_ok=True)
    save_adapter(comps.transformer, out, meta)
    return meta
