"""The video pipeline's cost on one GPU: 3DreamBooth (+ 3Dapter) LoRA training and an 81-frame video, with
Wan-2.1-1.3B-sized random weights in bf16 (the cost does not depend on the weights). On the device:

    PYTHONUNBUFFERED=1 python bench/gpu_video.py --out $OUT/video            # the issue's figures
    PYTHONUNBUFFERED=1 python bench/gpu_video.py --out $OUT/video --quick    # a few minutes: fewer steps, extrapolated

Figures, each with and without 3Dapter (4 conditioning views), side by side:
- training: `--train-steps` (400) joint LoRA steps on one-frame views at 480 x 480 (8 subject views; the
  target: <= 3 min with 3Dapter);
- generation: one video of 81 frames at 480 x 832, `--gen-steps` (50) steps with classifier-free guidance (the
  two passes batched) and the VAE decode (the target: <= 3 min);
- peak CUDA memory of each.
The prompt embeddings are random tensors of UMT5-XXL's shape ([1, 512, 4096]): the text encoder runs once per
prompt and is not part of these figures. `--quick` times 20 training and 5 denoising steps after a warm-up and
extrapolates to 400 / 50 (the per-step cost is constant). `--smoke` runs the same code on the CPU with the tiny
models (9 frames at 32 x 32) to check the script, not to measure. Prints a table and writes video_<tag>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from likeness3d.backend.stages.video import tiny  # noqa: E402
from likeness3d.backend.stages.video.components import VideoComponents, decode_latents  # noqa: E402
from likeness3d.backend.stages.video.config import AdapterConfig, DreamBoothVideoConfig, GenerateConfig  # noqa: E402
from likeness3d.backend.stages.video.generate import generate_latents  # noqa: E402
from likeness3d.backend.stages.video.joint import BASE  # noqa: E402
from likeness3d.backend.stages.video.lora import ADAPTER, SUBJECT, add_lora  # noqa: E402
from likeness3d.backend.stages.video.train import train_subject  # noqa: E402

GB = 2**30


def sync_time() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_gb() -> float:
    return round(torch.cuda.max_memory_allocated() / GB, 2) if torch.cuda.is_available() else 0.0


def train_figure(comps, views, cond, text, steps: int, timed: int, adapter: bool, graphs: bool = True) -> dict:
    """Seconds for `steps` joint LoRA steps, timed whole (the CUDA-graph capture included) over `timed` steps
    after a 3-step warm-up run, scaled to `steps` when `timed` < `steps` (then labelled extrapolated)."""
    tr = comps.transformer
    for name in list(getattr(tr, "peft_config", {}) or {}):
        tr.delete_adapters(name)
    db, ad = DreamBoothVideoConfig(cuda_graph=graphs), AdapterConfig()
    add_lora(tr, SUBJECT, db.rank, db.alpha, db.target_modules, seed=0)
    if adapter:
        add_lora(tr, ADAPTER, ad.rank, ad.alpha, ad.target_modules, seed=1)
    train_subject(comps, views, text, db, cond=cond, adapter=adapter, steps=3)  # warm-up (kernels, allocator)
    reset_peak()
    t0 = sync_time()
    result = train_subject(comps, views, text, db, cond=cond, adapter=adapter, steps=timed, seed=1)
    total = sync_time() - t0
    return {"steps": steps, "timed_steps": timed, "extrapolated": timed < steps,
            "seconds_per_step": round(total / timed, 4), "seconds": round(total * steps / timed, 1),
            "peak_gb": peak_gb(), "loss_last": round(result.losses[-1], 4), "cuda_graphs": result.cuda_graphs,
            "graph_note": result.graph_note}


def generate_figure(comps, cond, text, negative, steps: int, timed: int, adapter: bool, video: dict) -> dict:
    """Seconds for an 81-frame 480 x 832 video of `steps` guided steps (`timed` timed, scaled) plus the decode."""
    branch = ADAPTER if adapter else BASE
    config = GenerateConfig(steps=timed, **video)
    generate_latents(comps, text, negative, GenerateConfig(steps=1, **video), cond=cond if adapter else None,
                     gen_branch=SUBJECT, cond_branch=branch)  # warm-up
    reset_peak()
    t0 = sync_time()
    latents = generate_latents(comps, text, negative, config, cond=cond if adapter else None, gen_branch=SUBJECT,
                               cond_branch=branch)
    per_step = (sync_time() - t0) / timed
    t1 = sync_time()
    frames = decode_latents(comps, latents)
    decode = sync_time() - t1
    return {"frames": int(frames.shape[0]), "size": [config.width, config.height], "steps": steps, "timed_steps": timed,
            "guidance_scale": config.guidance_scale, "seconds_per_step": round(per_step, 3),
            "denoise_seconds": round(per_step * steps, 1), "decode_seconds": round(decode, 1),
            "seconds": round(per_step * steps + decode, 1), "peak_gb": peak_gb()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    ap.add_argument("--tag", default="run")
    ap.add_argument("--quick", action="store_true", help="time 20 training and 5 denoising steps, extrapolate")
    ap.add_argument("--train-steps", type=int, default=400)
    ap.add_argument("--gen-steps", type=int, default=50)
    ap.add_argument("--views", type=int, default=8, help="subject views (one-frame videos)")
    ap.add_argument("--conditioning", type=int, default=4, help="3Dapter conditioning views")
    ap.add_argument("--smoke", action="store_true", help="tiny models on the CPU: checks the script, measures nothing")
    ap.add_argument("--sections", default="train,generate", help="comma list of train, generate")
    ap.add_argument("--eager-steps", type=int, default=None,
                    help="also time the eager step (no CUDA graphs) over this many steps, scaled to --train-steps")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.smoke:
        device, dtype, scale, label, view_px, tokens, width = torch.device("cpu"), torch.float32, "tiny", tiny.TINY_LABEL, 32, 32, 32
        video = {"frames": 9, "height": 32, "width": 32}
        args.train_steps, args.gen_steps = 4, 2
    else:
        device, dtype, scale, label, view_px, tokens, width = torch.device("cuda"), torch.bfloat16, "wan-1.3b", tiny.WAN_1_3B_LABEL, 480, 512, 4096
        video = {}
    t0 = time.perf_counter()
    with torch.device(device):
        parts = tiny.build(scale, device, dtype)
    if args.smoke:
        parts["text_encoder"] = parts["tokenizer"] = None
    comps = VideoComponents(**parts, source="random", device=device, dtype=dtype, degraded=True, label=label)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in comps.transformer.parameters())
    g = torch.Generator(device=device).manual_seed(0)
    side = view_px // 8
    views = torch.randn(args.views, 16, 1, side, side, generator=g, device=device).to(dtype)
    cond = views[: args.conditioning].permute(2, 1, 0, 3, 4).contiguous()
    text = torch.randn(1, tokens, width, generator=g, device=device).to(dtype)
    negative = torch.randn(1, tokens, width, generator=g, device=device).to(dtype)
    train_timed = min(20, args.train_steps) if args.quick else args.train_steps
    gen_timed = min(5, args.gen_steps) if args.quick else args.gen_steps
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu (smoke)"
    out = {"device": name, "torch": torch.__version__, "model": label,
           "transformer_parameters": n_params, "dtype": "bfloat16", "build_seconds": round(build_s, 1),
           "quick": args.quick, "views": args.views, "conditioning_views": args.conditioning}
    sections = set(args.sections.split(","))
    for adapter in (True, False):
        key = "with_3dapter" if adapter else "without_3dapter"
        if "train" in sections:
            print(f"training, {key} ...", flush=True)
            out[f"train_{key}"] = train_figure(comps, views, cond, text, args.train_steps, train_timed, adapter)
            print(json.dumps(out[f"train_{key}"]), flush=True)
            if args.eager_steps:
                out[f"train_{key}_eager"] = train_figure(comps, views, cond, text, args.train_steps,
                                                         min(args.eager_steps, args.train_steps), adapter, graphs=False)
                print(json.dumps(out[f"train_{key}_eager"]), flush=True)
        if "generate" in sections:
            print(f"generating, {key} ...", flush=True)
            out[f"generate_{key}"] = generate_figure(comps, cond, text, negative, args.gen_steps, gen_timed, adapter, video)
    (args.out / f"video_{args.tag}.json").write_text(json.dumps(out, indent=1))
    print(f"\n{out['device']}, {n_params / 1e9:.3f} B-parameter Wan transformer (random, {str(dtype).removeprefix('torch.')})"
          f"{', quick: extrapolated' if args.quick else ''}")
    print(f"{'figure':<44} {'with 3Dapter':>14} {'without':>14} {'target':>8}")
    rows = []
    if "train" in sections:
        rows += [(f"{args.train_steps} LoRA steps, s", "train", "seconds", "<= 180"),
                 ("  s / step", "train", "seconds_per_step", ""), ("  peak GB", "train", "peak_gb", "")]
        if args.eager_steps:
            rows += [(f"  eager (no graphs), s{' (extrapolated)' if args.eager_steps < args.train_steps else ''}",
                      "train", "seconds", "", "_eager"), ("  eager s / step", "train", "seconds_per_step", "", "_eager")]
    if "generate" in sections:
        gen = out["generate_with_3dapter"]
        rows += [(f"{gen['frames']} x {gen['size'][0]}x{gen['size'][1]} video, {args.gen_steps} steps + decode, s",
                  "generate", "seconds", "<= 180"),
                 ("  denoise s / step (cfg batched)", "generate", "seconds_per_step", ""),
                 ("  VAE decode, s", "generate", "decode_seconds", ""), ("  peak GB", "generate", "peak_gb", "")]
    for label, kind, field, target, *suffix in rows:
        sfx = suffix[0] if suffix else ""
        a, b = out[f"{kind}_with_3dapter{sfx}"][field], out[f"{kind}_without_3dapter{sfx}"][field]
        print(f"{label:<44} {a:>14} {b:>14} {target:>8}")


if __name__ == "__main__":
    main()
