"""Diffusion toolkit on the GPU with SD-2-sized random-weight models (the real cost per step, noise output):
subject-LoRA training steps and personalised inpainting of 512x512 views, with peak VRAM per phase.

    python bench/gpu_diffusion.py [--lora-steps 400] [--views 48] [--size 512] [--batches 1,4,8]
    python bench/gpu_diffusion.py --device cpu --scale tiny --size 64 --lora-steps 5 --views 4   # dry run

Models: the SD 2 inpainting UNet config (9 input channels, block_out_channels 320/640/1280/1280, cross
attention 1024, heads 5/10/20/20), the SD VAE and the OpenCLIP-H text tower (23 layers), built in code,
fp16 on CUDA. LoRA: the toolkit's defaults (rank 16, lr 1e-4, batch 1, flips + 15 degree rotations, masked
loss), on 4 subject views; every step is timed (the loss is read back each step, so the GPU is synced).
Inpainting: TIRE's strength 0.3 of a 50-step DDIM schedule (15 denoising steps), guidance 7.5, the
trained LoRA active, views in batches of 1, 4 and 8. Prints a markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch

from likeness3d.backend.stages.diffusion.sample.inpaint import DiffusionInpaintConfig, build_inpainter, inpaint_views
from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, train_subject_lora
from likeness3d.backend.stages.diffusion.components import components_from_modules
from likeness3d.backend.stages.diffusion.tiny import SD2_SIZED_LABEL, TINY_LABEL, build_modules


def subject_views(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n, size, size, 3] float32 images and [n, size, size] bool masks: a textured disc on white."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    disc = (yy - 0.5) ** 2 + (xx - 0.5) ** 2 <= 0.35**2
    images = np.ones((n, size, size, 3), np.float32)
    for i in range(n):
        tex = 0.5 + 0.5 * np.sin(2 * np.pi * (rng.random(3) * 4 * xx[..., None] + rng.random(3) * 4 * yy[..., None]))
        images[i][disc] = tex[disc]
    return images, np.repeat(disc[None], n, axis=0)


def infill_masks(n: int, size: int) -> np.ndarray:
    """[n, size, size] bool: the right half of the disc, as an unobserved side would be."""
    _, disc = subject_views(1, size)
    m = disc[0].copy()
    m[:, : size // 2] = False
    return np.repeat(m[None], n, axis=0)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--scale", choices=("sd2", "tiny"), default="sd2")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--lora-steps", type=int, default=400)
    ap.add_argument("--views", type=int, default=48)
    ap.add_argument("--batches", default="1,4,8")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("CUDA is not available; use --device cpu --scale tiny for a dry run")
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    rows: list[tuple[str, str, str]] = []
    figures: dict = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}

    # 1. Models with random weights, built on the device
    t = time.perf_counter()
    with torch.device(device):
        parts = build_modules("inpaint", scale=args.scale)
    c = components_from_modules(parts, role="inpaint", device=device, dtype=dtype, source=f"random {args.scale}",
                                label=SD2_SIZED_LABEL if args.scale == "sd2" else TINY_LABEL)
    counts = {k: sum(p.numel() for p in getattr(c, k).parameters()) / 1e6 for k in ("unet", "vae", "text_encoder")}
    figures["params_M"] = counts
    figures["build_s"] = time.perf_counter() - t
    print(f"models: {c.label}; parameters (M): {counts}; built in {figures['build_s']:.1f} s", flush=True)

    # 2. Subject LoRA, every step timed
    images, masks = subject_views(4, args.size)
    cfg = SubjectLoraConfig(steps=args.lora_steps)
    stamps: list[float] = []
    reset_peak(device)
    t0 = time.perf_counter()
    result = train_subject_lora(c, images, masks, class_word="toy", config=cfg,
                                progress=lambda s, n, text: stamps.append(time.perf_counter()))
    lora_total = time.perf_counter() - t0
    steps = np.diff([t0] + stamps)
    steady = steps[min(10, len(steps) - 1):]
    lora_peak = peak_gib(device)
    finite = int(np.isfinite(result.losses).sum())
    figures["lora"] = dict(steps=args.lora_steps, total_s=lora_total, first_step_s=float(steps[0]),
                           median_step_s=float(statistics.median(steady)), peak_gib=lora_peak,
                           finite_losses=finite, rank=cfg.rank)
    rows.append((f"subject LoRA, {args.lora_steps} steps (rank {cfg.rank}, batch 1, {args.size} px)",
                 f"{lora_total:.1f} s total; {1000 * statistics.median(steady):.0f} ms/step median, "
                 f"first step (incl. setup) {steps[0]:.2f} s", f"{lora_peak:.2f}"))
    print(rows[-1], f"finite losses {finite}/{len(result.losses)}", flush=True)

    # 3. Inpainting at TIRE's strength with the LoRA active
    pipe = build_inpainter(c)
    icfg = DiffusionInpaintConfig()
    views, _ = subject_views(args.views, args.size, seed=1)
    holes = infill_masks(args.views, args.size)
    inpaint_views(pipe, views[:1], holes[:1], "a photo of sks toy", config=icfg)  # warm-up (cuDNN autotune, allocator)
    figures["inpaint"] = {}
    for b in [int(x) for x in args.batches.split(",")]:
        n = args.views if b == max(int(x) for x in args.batches.split(",")) else min(args.views, 2 * b)
        reset_peak(device)
        t = time.perf_counter()
        out = inpaint_views(pipe, views[:n], holes[:n], "a photo of sks toy",
                            config=DiffusionInpaintConfig(batch_size=b))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t
        assert np.array_equal(out[~holes[:n]], views[:n][~holes[:n]])
        figures["inpaint"][b] = dict(views=n, total_s=dt, per_view_s=dt / n, peak_gib=peak_gib(device))
        rows.append((f"inpaint, strength {icfg.strength} of {icfg.num_inference_steps} steps "
                     f"({icfg.denoising_steps} run, CFG {icfg.guidance_scale}), batch {b}, {n} views",
                     f"{dt / n:.3f} s/view ({dt:.1f} s)", f"{peak_gib(device):.2f}"))
        print(rows[-1], flush=True)
    best = min(v["per_view_s"] for v in figures["inpaint"].values())
    rows.append((f"estimate for TIRE: LoRA {args.lora_steps} steps + 48 views at the best batch",
                 f"{lora_total + 48 * best:.1f} s", ""))

    print(f"\ndevice: {figures['device']}; torch {torch.__version__}; models: {c.label}\n")
    print("| what | time | peak VRAM (GiB) |\n|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=2)
    out_dir = os.environ.get("OUT")
    if out_dir:
        with open(os.path.join(out_dir, "gpu_diffusion.json"), "w") as f:
            json.dump(figures, f, indent=2)


if __name__ == "__main__":
    main()
