"""First vs second load of a diffusion model in a worker: `load_components` from a diffusers-layout folder,
then through the worker's model cache (backend/model_cache.py), with the clean-up a job end costs.

    python bench/model_cache.py                               # SD-2-sized, CUDA when available, else the CPU
    python bench/model_cache.py --device cpu --scale tiny     # a dry run in seconds

The model: `tiny.build_modules("inpaint", scale=...)` (at `sd2`: the SD 2 inpainting UNet, 865.9 M
parameters, the SD VAE, 83.7 M, the OpenCLIP-H text tower, 340.4 M) with random weights, written once with
diffusers' `save_pretrained` (safetensors, fp32 as the Hub's main files are; `--files fp16` for the fp16
variant's size) to `--dir` (a temporary folder, removed afterwards, unless given). Loaded in the device's
dtype (fp16 on CUDA, fp32 on the CPU), as a worker loads it; CUDA is synchronised before every reading.

Steps, in this order, one process:
1. first load: the files are flushed and dropped from the OS page cache first (fsync + posix_fadvise
   DONTNEED on each file, which touches no other file), so they are read from the disk; diffusers and
   transformers are imported beforehand, so import time is not in it;
2. second load, a cache hit: what a worker's next job pays (the restore check: folder stat, tensor versions);
3. the job end after a LoRA adapter (rank 16 on the UNet's attention projections, the subject LoRA's) was
   added: `model_cache.end_job()` removes it;
4. third load, a cache hit after that;
5. a load without the cache, the files now in the page cache: what every job paid before the cache, at best.
After each load a pass reads one element of every memory page of every weight (`timed_load`: on the CPU the
weights stay memory-mapped and are read at first use). Prints a markdown table (and `--json FILE`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

from likeness3d.backend import model_cache
from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.tiny import build_modules
from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, add_lora


def write_model(folder: Path, scale: str, files: str, device: torch.device) -> float:
    """The inpainting model in diffusers layout under folder/inpaint; returns the seconds it took."""
    from diffusers import StableDiffusionInpaintPipeline

    t = time.perf_counter()
    with torch.device(device if device.type == "cuda" else "cpu"):  # random init on the GPU when there is one
        parts = build_modules("inpaint", scale=scale)
    if files == "fp16":
        for name in ("unet", "vae", "text_encoder"):
            parts[name].half()
    pipe = StableDiffusionInpaintPipeline(**parts, safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.save_pretrained(folder / "inpaint", safe_serialization=True)
    del pipe, parts
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return time.perf_counter() - t


def drop_from_page_cache(folder: Path) -> bool:
    """Flush every file under folder and ask the OS to drop its cached pages; False where it cannot."""
    if not hasattr(os, "posix_fadvise"):
        return False
    for f in folder.rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)
    return True


def timed_load(root: Path, device: torch.device):
    """(bundle, seconds to load, seconds of a first pass reading one element of every page of every weight).

    On the CPU diffusers leaves the weights in memory-mapped safetensors files, so a load reads little and
    the first use pages the weights in: the pass counts that (its arithmetic is negligible); on CUDA the
    load copies everything to the device and the pass is ~0."""
    sync(device)
    t = time.perf_counter()
    comps = load_components("inpaint", root, device=device)
    sync(device)
    loaded = time.perf_counter()
    total = torch.zeros((), device=device, dtype=torch.float64)
    for m in (comps.unet, comps.vae, comps.text_encoder):
        for w in (*m.parameters(), *m.buffers()):
            total += w.detach().reshape(-1)[:: max(1, 4096 // w.element_size())].double().sum()
    float(total)  # one sync
    return comps, loaded - t, time.perf_counter() - loaded


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--scale", choices=("sd2", "tiny"), default="sd2")
    ap.add_argument("--files", choices=("fp32", "fp16"), default="fp32", help="dtype of the saved weights")
    ap.add_argument("--dir", default=None, help="where to write the model (default: a temporary folder, removed)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available; use --device cpu")
    import diffusers  # noqa: F401  (imported before any timing)
    import transformers  # noqa: F401

    root = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="likeness3d-bench-"))
    figures: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                     "scale": args.scale, "files": args.files, "torch_threads": torch.get_num_threads()}
    try:
        figures["write_s"] = round(write_model(root, args.scale, args.files, device), 2)
        figures["bytes_on_disk"] = sum(f.stat().st_size for f in (root / "inpaint").rglob("*") if f.is_file())
        figures["cold"] = drop_from_page_cache(root / "inpaint")
        model_cache.enable()
        rows = []
        first, *s = timed_load(root, device)
        rows.append(("first load" + (" (files not in the page cache)" if figures["cold"] else ""), *s, first.from_cache))
        figures["params"] = sum(p.numel() for m in (first.unet, first.vae, first.text_encoder) for p in m.parameters())
        figures["dtype"] = str(first.dtype).removeprefix("torch.")
        model_cache.end_job()
        second, *s = timed_load(root, device)
        rows.append(("second load: a cache hit", *s, second.from_cache))
        add_lora(second, SubjectLoraConfig())
        sync(device)
        t = time.perf_counter()
        model_cache.end_job()
        sync(device)
        rows.append(("job end after a LoRA adapter was added (removes it)", time.perf_counter() - t, 0.0, None))
        third, *s = timed_load(root, device)
        rows.append(("third load: a cache hit after that", *s, third.from_cache))
        assert third.unet is first.unet and not getattr(third.unet, "peft_config", None)
        del first, second, third
        model_cache.end_job()
        model_cache.enable(False)  # drops the cached bundle
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        plain, *s = timed_load(root, device)
        rows.append(("a load without the cache (files in the page cache)", *s, plain.from_cache))
        del plain
    finally:
        if args.dir is None:
            shutil.rmtree(root, ignore_errors=True)
    figures["rows"] = [{"step": r[0], "load_s": round(r[1], 4), "first_pass_s": round(r[2], 4), "from_cache": r[3]}
                       for r in rows]
    print(f"device {figures['device']}, scale {args.scale}, {figures['params'] / 1e6:.1f} M parameters loaded as "
          f"{figures['dtype']}, files {args.files} ({figures['bytes_on_disk'] / 2**30:.2f} GiB, written in "
          f"{figures['write_s']:.1f} s), torch threads {figures['torch_threads']}")
    print("\n| step | load (s) | first pass over the weights (s) | total (s) | from_cache |\n|---|---|---|---|---|")
    for step, load_s, pass_s, hit in rows:
        print(f"| {step} | {load_s:.3f} | {pass_s:.3f} | {load_s + pass_s:.3f} | {'' if hit is None else ('yes' if hit else 'no')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
