"""TIRE 4D against static TIRE on one GPU (issue 14's speed goal: 4D <= 1.5x static).

The same job twice, side by side, with SD-2-sized inpainting models of random weights (the cost per step does not
depend on the weights), the quality preset (512 px, 24 azimuths x 2 elevations = 48 target views, subject LoRA):
  static: the animated example's rest-pose mesh, its 4 photos taken as photos of the rest pose;
  4D:     the same mesh with 48 frames of animation, each photo at its own frame (every output per frame written).

    python bench/gpu_tire_4d.py [--out DIR] [--frames 48] [--lora-steps 400] [--ray-backend auto|embree|warp]
                                [--batch-views 8]

CUDA only (gsplat has no CPU path). gsplat compiles on first use: a warm-up fit runs first, outside the timings.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_tire import quiet_context, random_sd2_inpainter, warm_up_gsplat, warm_up_rays  # noqa: E402

from likeness3d.backend.pipelines import tire  # noqa: E402
from likeness3d.backend.synthetic.animated import animated_case  # noqa: E402
from likeness3d.protocol.assets import Asset, Mesh  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_tire_4d_out")
    ap.add_argument("--frames", type=int, default=48)
    ap.add_argument("--lora-steps", type=int, default=400)
    ap.add_argument("--ray-backend", default="auto", choices=["auto", "embree", "warp"])
    ap.add_argument("--batch-views", type=int, default=8, help="views per inpainting pipeline call (inpaint.batch_views)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench/gpu_tire_4d.py needs a CUDA GPU (gsplat has no CPU path)")
    device, out = "cuda", Path(args.out)
    print(f"device: {torch.cuda.get_device_name(0)}; gsplat warm-up (compile) {warm_up_gsplat(device):.1f} s; rays "
          f"({args.ray_backend}) warm-up {warm_up_rays(args.ray_backend, device):.1f} s", flush=True)
    case = animated_case(image_size=512, texture_size=1024, count=args.frames)
    animated = Asset(case.initial, case.references, case.class_word, "pebble_4d")
    m = case.initial
    static = Asset(Mesh(m.vertices, m.faces, m.uvs, m.texture), tuple(replace(r, frame=None) for r in case.references),
                   case.class_word, "pebble_static")

    from likeness3d.backend.stages.diffusion.config import SubjectLoraConfig
    from likeness3d.backend.stages.tire.config import InpaintConfig

    rows = {}
    with random_sd2_inpainter(device):
        cfg = tire.TireConfig(lora=SubjectLoraConfig(steps=args.lora_steps), ray_backend=args.ray_backend,
                              inpaint=InpaintConfig(batch_views=args.batch_views))
        for name, asset in (("static", static), ("4d", animated)):
            torch.cuda.reset_peak_memory_stats()
            t0 = time.monotonic()
            rep = tire.run(quiet_context(out / name, device, []), asset, cfg)
            rows[name] = {"wall_s": round(time.monotonic() - t0, 1), "seconds": rep["seconds"],
                          "peak_memory": rep["peak_memory"], "views": rep["views"], "gaussians": rep["gaussians"]}
    print(json.dumps(rows, indent=1))
    s, d = rows["static"]["seconds"]["total"], rows["4d"]["seconds"]["total"]
    print(f"\nstatic TIRE {s:.1f} s; 4D TIRE ({args.frames} frames) {d:.1f} s; ratio {d / s:.2f} (goal <= 1.5)")
    for name in rows:
        print(f"{name} per stage (s): " + ", ".join(f"{k} {v}" for k, v in rows[name]["seconds"].items()))


if __name__ == "__main__":
    main()
