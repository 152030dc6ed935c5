"""TIRE's observe stage (and the export's compositing), before and after its host work moved to torch, side by side.

  before  the stage as it was: the colour regions in numpy (`regions_reference`: a loop over the regions, [N, K, 3]
          float64 temporaries) with its k-means in line, the texel observations and the photos' comparison with
          the initial asset's renders (blurs, shifts, noise, agreement masks) on the CPU, the supersampled
          comparison renders copied to host memory and filtered there;
  after   the colour regions in torch on the job's device (float64, cache-sized chunks on the CPU, every region's
          normal equations in one product) with its k-means (OpenCV, unchanged) on a host thread while the photos
          are prepared, the observations and the comparison on the job's device, the renders filtered where the
          rays were cast. On the CPU both run the same torch code for all but the colour regions and the k-means.
Both on the same inputs as `bench/gpu_tire.py` and `likeness3d refine tire --preset quality` (the demo subject,
a 1024 x 1024 texture, its three 512 px reference photos, the default FidelityConfig), alternated `--repeats`
times (the median is reported), after a warm-up of the ray backend. Then the two results are compared: observed
texels, the composed texture's kept / from_references / infilled counts (equal), the region-mapped colours and
the composed texture (max difference). Prints a table and writes JSON.

    python bench/observe_stage.py [--device cpu|cuda] [--ray-backend auto|embree|warp] [--texture 1024]
                                  [--photo 512] [--repeats 3] [--out observe_stage.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time

import numpy as np
import torch

from likeness3d.backend.stages.texture import fidelity, observe
from likeness3d.backend.stages.texture.config import FidelityConfig
from likeness3d.backend.stages.texture.regions_reference import reference_learn_regions
from likeness3d.backend.stages.views.mesh_passes import Raycaster
from likeness3d.backend.stages.views.rays import RaySpec


def host_mesh_rgba(mesh, cameras, supersample: int = 2, background=None):
    """`mesh_rgba` as it was: the supersampled passes copied to host memory, then box-filtered there."""
    s = supersample
    hi = mesh.passes(cameras.resized(cameras.width * s, cameras.height * s))
    C, H, W = len(cameras), cameras.height, cameras.width
    cover = hi.mask.float().reshape(C, H, s, W, s).mean(dim=(2, 4))
    premult = (hi.rgb * hi.mask[..., None]).reshape(C, H, s, W, s, 3).mean(dim=(2, 4))
    rgb = premult / cover.clamp_min(1e-8)[..., None]
    return torch.cat([rgb, cover[..., None]], dim=-1)


@contextlib.contextmanager
def before():
    """While inside, `prepare_fidelity` runs its host work as it did before (see the module's docstring)."""
    saved = fidelity.learn_regions, fidelity.observe_texels, observe.mesh_rgba, fidelity.cluster_colours, observe._compare
    observe_texels, compare_ = saved[1], saved[4]
    fidelity.learn_regions = reference_learn_regions
    fidelity.cluster_colours = lambda *args: None  # the k-means in line, inside reference_learn_regions
    fidelity.observe_texels = lambda surface, refs, config, posed=None, device="cpu": observe_texels(surface, refs, config, posed)
    observe.mesh_rgba = host_mesh_rgba
    observe._compare = lambda image, render, inner, config: compare_(image.cpu(), render.cpu(), inner.cpu(), config)
    try:
        yield
    finally:
        (fidelity.learn_regions, fidelity.observe_texels, observe.mesh_rgba, fidelity.cluster_colours,
         observe._compare) = saved


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def one_run(case, caster, config: FidelityConfig, size: tuple[int, int], device: str) -> dict:
    sync(device)
    t0, c0 = time.monotonic(), time.process_time()
    fid = fidelity.prepare_fidelity(case.initial, case.references, caster, config, size)
    sync(device)
    t1, c1 = time.monotonic(), time.process_time()
    composed, _ = fidelity.finish_fidelity(fid, config, 16)
    sync(device)
    # host CPU seconds (all threads of the process): less sensitive to other load than the wall clock
    return {"observe_s": t1 - t0, "observe_cpu_s": c1 - c0, "finish_s": time.monotonic() - t1,
            "fid": fid, "composed": composed}


def compare(a: dict, b: dict) -> dict:
    """How far the after run's results are from the before run's."""
    fa, fb = a["fid"], b["fid"]
    ta, tb = a["composed"].texture.astype(np.int16), b["composed"].texture.astype(np.int16)
    diff = np.abs(ta - tb)
    return {"observed": [int(fa.observation.observed.sum()), int(fb.observation.observed.sum())],
            "counts_before": a["composed"].report(), "counts_after": b["composed"].report(),
            "counts_equal": a["composed"].report() == b["composed"].report(),
            "observation_colour_max_diff": float((fa.observation.colour - fb.observation.colour).abs().max()),
            "disagreement_max_diff": float((fa.observation.disagreement - fb.observation.disagreement).abs().max()),
            "region_maps_max_diff": float(np.abs(fa.regions.maps - fb.regions.maps).max()),
            "region_texels_equal": bool((fa.regions.texels == fb.regions.texels).all()),
            "mapped_max_diff": float(np.abs(fa.mapped - fb.mapped).max()),
            "texture_max_diff_levels": int(diff.max()), "texture_texels_differing": int((diff.max(-1) > 0).sum())}


def main() -> None:
    from likeness3d.backend.synthetic.example import example_case

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", help="the job's torch device: cpu or cuda")
    ap.add_argument("--ray-backend", default="auto", choices=["auto", "embree", "warp"])
    ap.add_argument("--texture", type=int, default=1024, help="texture side (texels)")
    ap.add_argument("--photo", type=int, default=512, help="reference photo side (px)")
    ap.add_argument("--repeats", type=int, default=3, help="before/after pairs, alternated")
    ap.add_argument("--out", default="observe_stage.json")
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: this torch sees no CUDA device (run with --device cpu)")
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else \
        f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads)"
    case = example_case(image_size=args.photo, texture_size=args.texture)
    caster = Raycaster(case.initial, RaySpec(args.ray_backend, args.device))
    config, size = FidelityConfig(), (args.texture, args.texture)
    print(f"device: {name}; rays: {caster.backend['backend']} on {caster.backend['device']}", flush=True)
    t0 = time.monotonic()
    with before():  # warm-up: the ray backend's kernels, torch's allocator, the first CUDA calls; not timed
        fidelity.prepare_fidelity(case.initial, case.references[:1], caster, config, (64, 64))
    fidelity.prepare_fidelity(case.initial, case.references[:1], caster, config, (64, 64))
    print(f"warm-up {time.monotonic() - t0:.1f} s", flush=True)
    runs: dict[str, list] = {"before": [], "after": []}
    for i in range(args.repeats):
        with before():
            runs["before"].append(one_run(case, caster, config, size, args.device))
        runs["after"].append(one_run(case, caster, config, size, args.device))
        b, a = runs["before"][-1], runs["after"][-1]
        print(f"pair {i + 1}: observe before {b['observe_s']:.2f} s ({b['observe_cpu_s']:.1f} CPU s), after "
              f"{a['observe_s']:.2f} s ({a['observe_cpu_s']:.1f} CPU s)", flush=True)
    med = {k: {s: statistics.median(r[s] for r in v) for s in ("observe_s", "observe_cpu_s", "finish_s")}
           for k, v in runs.items()}
    check = compare(runs["before"][-1], runs["after"][-1])
    rows = {"device": name, "job_device": args.device, "rays": caster.backend, "texture": args.texture,
            "photo": args.photo, "references": len(case.references), "repeats": args.repeats,
            "texels": len(runs["after"][-1]["fid"].surface),
            "before": {k: round(v, 3) for k, v in med["before"].items()},
            "after": {k: round(v, 3) for k, v in med["after"].items()},
            "observe_ratio": round(med["after"]["observe_s"] / med["before"]["observe_s"], 3),
            "observe_cpu_ratio": round(med["after"]["observe_cpu_s"] / med["before"]["observe_cpu_s"], 3),
            "finish_ratio": round(med["after"]["finish_s"] / med["before"]["finish_s"], 3),
            "all_observe_s": {k: [round(r["observe_s"], 3) for r in v] for k, v in runs.items()},
            "all_observe_cpu_s": {k: [round(r["observe_cpu_s"], 3) for r in v] for k, v in runs.items()},
            "agreement": check}
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\n{'':<8}{'observe s':>11}{'host CPU s':>12}{'finish s':>10}   (median of {args.repeats})")
    for k in ("before", "after"):
        print(f"{k:<8}{med[k]['observe_s']:>11.2f}{med[k]['observe_cpu_s']:>12.2f}{med[k]['finish_s']:>10.2f}")
    print(f"ratio   {rows['observe_ratio']:>11.3f}{rows['observe_cpu_ratio']:>12.3f}{rows['finish_ratio']:>10.3f}")
    print("agreement: " + json.dumps(check))
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
