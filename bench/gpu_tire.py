"""TIRE on the GPU, in one run (issue 5's benchmark):

A. The full pipeline with SD-2-sized inpainting models of random weights (the cost per step does not depend
   on the weights): 512 px, 24 azimuths x 2 elevations = 48 target views, subject LoRA 400 steps, on the
   demo subject. Seconds per stage, total, peak VRAM. Goals: <= 90 s total, <= 12 GB.
B. The demo subject at 512 px with the classical (OpenCV) inpainter: metrics and time.

    python bench/gpu_tire.py [--out DIR] [--lora-steps 400] [--skip-a] [--skip-b] [--ray-backend auto|embree|warp]
                             [--batch-views 8]

The mesh passes, texel lookup, view planning and bake cast their rays with `--ray-backend` (default auto: Warp's
BVH on the GPU); each run prints the backend that ran, and Warp's kernels are compiled in a warm-up first.

The random-weight models are injected in place of the local-folder loader (`make_inpainter`): the rest of
the pipeline is exactly what `likeness3d refine tire --preset quality` runs. gsplat compiles its CUDA code
on first use (~70 s on a fresh machine): a warm-up fit runs first, outside every timing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

# as a backend worker runs (backend/workers.py), before torch initialises CUDA
os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

import torch  # noqa: E402

from likeness3d.backend.context import JobContext  # noqa: E402
from likeness3d.backend.synthetic.example import example_case  # noqa: E402
from likeness3d.backend.pipelines import tire  # noqa: E402
from likeness3d.protocol.assets import Asset  # noqa: E402


def warm_up_gsplat(device: str) -> float:
    from likeness3d.backend.stages.views.cameras import orbit
    from likeness3d.backend.stages.splats.gaussians import random_gaussians
    from likeness3d.backend.stages.splats.render import render

    t0 = time.monotonic()
    g = random_gaussians(1000).to(device)
    g.means.requires_grad_(True)
    out = render(g, orbit((0, 0, 0), 1.0, [0.0], [0.0], 64, 64).to(device))
    out.rgb.sum().backward()
    torch.cuda.synchronize()
    return time.monotonic() - t0


def warm_up_rays(backend: str, device: str) -> float:
    """Compile the ray backend's kernels (Warp: once per machine, then cached) outside every timing."""
    from likeness3d.backend.stages.views.cameras import orbit
    from likeness3d.backend.stages.views.mesh_passes import Raycaster
    from likeness3d.backend.stages.views.rays import RaySpec
    from likeness3d.backend.synthetic.shapes import uv_cube

    t0 = time.monotonic()
    caster = Raycaster(uv_cube(1.0), RaySpec(backend, device))
    caster.passes(orbit((0, 0, 0), 1.0, [0.0], [0.0], 16, 16))
    caster.first_hits([[0.0, 0.0, 3.0]], [[0.0, 0.0, -1.0]])
    return time.monotonic() - t0


@contextlib.contextmanager
def random_sd2_inpainter(device: str):
    """While inside, TIRE's `make_inpainter` personalises SD-2-sized inpainting models of random weights built in
    memory (the cost per step does not depend on the weights) instead of loading a local folder; the pipeline's
    own call otherwise."""
    from likeness3d.backend.stages.diffusion.components import components_from_modules
    from likeness3d.backend.stages.diffusion.sample.subject import personalised_inpainter
    from likeness3d.backend.stages.diffusion.tiny import SD2_SIZED_LABEL, build_modules

    with torch.device(device):
        parts = build_modules("inpaint", scale="sd2")
    comps = components_from_modules(parts, role="inpaint", device=device, source="random sd2", label=SD2_SIZED_LABEL)
    original = tire.make_inpainter

    def make_inpainter(config, ctx, asset, dev):
        return personalised_inpainter(
            comps, asset.references, asset.class_word, lora=config.lora, resolution=config.resolution,
            seed=config.seed, progress=lambda s, n, t: ctx.progress("personalise", s, n, t), cancel=ctx.check_cancel,
            publish=ctx.add_artifact, batch_views=config.inpaint.batch_views)

    tire.make_inpainter = make_inpainter
    try:
        yield comps
    finally:
        tire.make_inpainter = original


def quiet_context(out: Path, device: str, log: list) -> JobContext:
    def on_progress(stage, step, total, text, elapsed, preview):
        if step == total:
            log.append(f"{elapsed:8.1f}s [{stage} {step}/{total}] {text}")
            print(log[-1], flush=True)

    return JobContext(out, out / ".work", device=device, on_progress=on_progress)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="bench_tire_out")
    ap.add_argument("--lora-steps", type=int, default=400)
    ap.add_argument("--skip-a", action="store_true")
    ap.add_argument("--skip-b", action="store_true")
    ap.add_argument("--ray-backend", default="auto", choices=["auto", "embree", "warp"])
    ap.add_argument("--batch-views", type=int, default=8, help="views per inpainting pipeline call (inpaint.batch_views)")
    args = ap.parse_args()
    device = "cuda"
    out = Path(args.out)
    print(f"device: {torch.cuda.get_device_name(0)}; gsplat warm-up (compile) {warm_up_gsplat(device):.1f} s", flush=True)
    print(f"rays: warm-up {warm_up_rays(args.ray_backend, device):.1f} s", flush=True)
    case = example_case(image_size=512, texture_size=1024)
    asset = Asset(case.initial, case.references, case.class_word, "pebble")
    rows = {}

    if not args.skip_a:
        from likeness3d.backend.stages.diffusion.config import SubjectLoraConfig
        from likeness3d.backend.stages.tire.config import InpaintConfig

        with random_sd2_inpainter(device):
            torch.cuda.reset_peak_memory_stats()
            log: list = []
            cfg = tire.TireConfig(lora=SubjectLoraConfig(steps=args.lora_steps), ray_backend=args.ray_backend,  # quality
                                  inpaint=InpaintConfig(batch_views=args.batch_views))
            t0 = time.monotonic()
            rep = tire.run(quiet_context(out / "a", device, log), asset, cfg)
            wall = time.monotonic() - t0
        rows["A"] = {"wall_s": round(wall, 1), "seconds": rep["seconds"], "peak_memory": rep["peak_memory"],
                     "resplat_fit_s": rep["coverage"].get("fit_seconds"),
                     "views": rep["views"], "inpainter": rep["inpainter"], "gaussians": rep["gaussians"],
                     "rays": rep["rays"]}
        torch.cuda.empty_cache()

    if not args.skip_b:
        torch.cuda.reset_peak_memory_stats()
        log = []
        cfg = tire.TireConfig(inpainter="opencv", ray_backend=args.ray_backend)
        t0 = time.monotonic()
        rep = tire.run(quiet_context(out / "b", device, log), asset, cfg, list(case.eval_views))
        wall = time.monotonic() - t0
        rows["B"] = {"wall_s": round(wall, 1), "seconds": rep["seconds"], "peak_memory": rep["peak_memory"],
                     "metrics": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rep["metrics"].items()},
                     "gaussians": rep["gaussians"], "rays": rep["rays"]}

    print(json.dumps(rows, indent=1))
    print(f"\n{'run':<48}{'total s':>9}{'peak VRAM GB':>14}")
    for key, name in (("A", "A: SD-2-sized inpainting, LoRA, 48 views, 512 px"), ("B", "B: demo subject, OpenCV, 512 px")):
        if key in rows:
            r = rows[key]
            vram = r["peak_memory"].get("cuda_peak_reserved_mb", 0) / 1024
            print(f"{name:<48}{r['seconds']['total']:>9.1f}{vram:>14.2f}   rays: {r['rays']['backend']} "
                  f"on {r['rays']['device']}")
    if "A" in rows:
        print("A per stage (s): " + ", ".join(f"{k} {v}" for k, v in rows["A"]["seconds"].items()))
    if "B" in rows:
        m = rows["B"]["metrics"]
        print(f"B metrics: PSNR observed {m['psnr_observed']} (initial {m['psnr_observed_initial']}), "
              f"infilled {m['psnr_infilled']} (initial {m['psnr_infilled_initial']}); SSIM infilled {m['ssim_infilled']} "
              f"(initial {m['ssim_infilled_initial']})")


if __name__ == "__main__":
    main()
