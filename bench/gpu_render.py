"""GPU benchmarks of the render and reconstruction core (issue 4). Run on the device machine:

    PYTHONUNBUFFERED=1 python bench/gpu_render.py --out $OUT

1. Mesh passes (Embree on the CPU), views/s at 512 x 512: one process, and a warm pool of processes.
2. gsplat forward+backward at 512 x 512: 100k and 1M Gaussians, 1 and 8 cameras.
3. Resplat: 48 views of a textured mesh at 512 x 512, Gaussians started grey on its surface; time to reach
   30 dB PSNR on 8 held-out views (evaluation time excluded), then the fit loop's iterations per second
   against a bare gsplat forward+backward loop on the same Gaussians and views, in the same run.
Prints a short table last; writes bench_gpu_render.json under --out. Without CUDA (`--size 64` and small
`--fwdbwd-sizes` for a quick check of the script) the reference rasteriser stands in for gsplat.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from likeness3d.backend.stages.splats import render_ref
from likeness3d.backend.stages.views.cameras import Cameras, orbit
from likeness3d.backend.stages.splats.fit import FitConfig, fit, to_params
from likeness3d.backend.stages.splats.gaussians import Gaussians, from_mesh, rgb_to_sh, rotation_to_quat
from likeness3d.backend.stages.views.mesh_passes import Raycaster, mesh_rgba
from likeness3d.protocol.assets import Mesh
from likeness3d.backend.stages.quality.metrics import psnr
from likeness3d.backend.stages.splats.render import gsplat_intrinsics, render
from likeness3d.backend.synthetic.shapes import procedural_texture, uv_sphere

_worker_caster: Raycaster | None = None


def log(msg: str) -> None:
    print(msg, flush=True)


def the_mesh() -> Mesh:
    """The subject: a 65k-face UV sphere with a 512 px texture of about 12 cycles across."""
    m = uv_sphere(1.0, 256, 128, texture_size=16)
    return Mesh(m.vertices, m.faces, m.uvs, procedural_texture(512, seed=5, frequency=12.0))


def _init_worker() -> None:
    global _worker_caster
    torch.set_num_threads(1)
    _worker_caster = Raycaster(the_mesh())


def _render_views(args) -> np.ndarray | int:
    Ks, viewmats, size, supersample = args
    cams = Cameras(torch.as_tensor(Ks), torch.as_tensor(viewmats), size, size)
    if supersample == 0:  # all passes, count hits
        return int(_worker_caster.passes(cams).mask.sum())
    return mesh_rgba(_worker_caster, cams, supersample=supersample).numpy()


class Pool:
    """Worker processes, each with the mesh's Embree scene built once (spawned: forking a process whose
    OpenMP pool runs can deadlock torch in the child)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                        initializer=_init_worker)

    def map(self, cams: Cameras, supersample: int):
        jobs = [(cams.Ks[i:i + 1].numpy(), cams.viewmats[i:i + 1].numpy(), cams.width, supersample)
                for i in range(len(cams))]
        return list(self.pool.map(_render_views, jobs))

    def close(self) -> None:
        self.pool.shutdown()


def shell_gaussians(n: int, sh_degree: int = 3, seed: int = 0) -> Gaussians:
    """n flat Gaussians spread on the unit sphere (a surface-like scene, as fits start from)."""
    g = torch.Generator().manual_seed(seed)
    p = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    helper = torch.where(p[:, :1].abs() < 0.9, torch.tensor([[1.0, 0, 0]]), torch.tensor([[0, 1.0, 0]]))
    t1 = torch.nn.functional.normalize(torch.cross(p, helper, dim=-1), dim=-1)
    t2 = torch.cross(p, t1, dim=-1)
    spacing = math.sqrt(4 * math.pi / n)
    sh = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.1
    sh[:, 0] = rgb_to_sh(torch.rand(n, 3, generator=g))
    return Gaussians(
        means=p,
        quats=rotation_to_quat(torch.stack([t1, t2, p], dim=2)),
        log_scales=torch.log(torch.tensor([0.7 * spacing, 0.7 * spacing, 0.07 * spacing])).expand(n, 3).clone(),
        logit_opacities=torch.full((n,), math.log(0.9 / 0.1)),
        sh=sh,
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def median_ms(fn, device: torch.device, iters: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def rasterizer(device: torch.device):
    if device.type == "cuda":
        from gsplat.rendering import rasterization

        return lambda *a, **k: rasterization(*a, **k, packed=False)
    return render_ref.rasterization


def bench_mesh_passes(results: dict, pool: Pool, size: int) -> None:
    mesh = the_mesh()
    cams = orbit((0, 0, 0), 1.0, [i * 30.0 for i in range(12)], [15.0], size, size)
    caster = Raycaster(mesh)
    caster.passes(cams[[0]])
    t = time.perf_counter()
    caster.passes(cams)
    single = len(cams) / (time.perf_counter() - t)
    pool.map(cams[list(range(pool.workers))], 0)  # every worker up, its Embree scene built
    t = time.perf_counter()
    pool.map(cams, 0)
    pooled = len(cams) / (time.perf_counter() - t)
    results["mesh_passes"] = {"size": size, "faces": int(len(mesh.faces)), "views": len(cams),
                              "views_per_s_1proc": single, "views_per_s_pool": pooled, "workers": pool.workers}
    log(f"mesh passes {size}px, {len(mesh.faces)} faces: {single:.1f} views/s (1 process), "
        f"{pooled:.1f} views/s ({pool.workers} processes)")


def bench_fwd_bwd(results: dict, device: torch.device, size: int, sizes: list[int]) -> None:
    raster = rasterizer(device)
    rows = []
    for n in sizes:
        params = {k: v.requires_grad_(True) for k, v in to_params(shell_gaussians(n).to(device)).items()}
        for c in (1, 8):
            cams = orbit((0, 0, 0), 1.0, [i * 45.0 for i in range(c)], [20.0], size, size).to(device)
            Ks = gsplat_intrinsics(cams.Ks)

            def step() -> None:
                sh = torch.cat([params["sh0"], params["shN"]], 1)
                img, alpha, _ = raster(params["means"], params["quats"], params["scales"].exp(),
                                       torch.sigmoid(params["opacities"]), sh, cams.viewmats, Ks, size, size,
                                       sh_degree=3)
                (img.sum() + alpha.sum()).backward()

            ms = median_ms(step, device, iters=30 if device.type == "cuda" else 3, warmup=3)
            rows.append({"gaussians": n, "cameras": c, "ms": ms})
            log(f"fwd+bwd {size}px N={n} C={c}: {ms:.2f} ms")
            for p in params.values():
                p.grad = None
    results["fwd_bwd"] = {"size": size, "rows": rows}


class BareLoop:
    """The reference of issue 4's loop-rate ratio: gsplat's rasterization (SH colours, exp/sigmoid
    activations) + L1 + backward() on copies of the fit's Gaussians, over its views; no optimiser.
    rgba: [C, H, W, 4] targets (over white) on the device; cams: their C cameras on the device."""

    def __init__(self, device: torch.device, g: Gaussians, rgba: torch.Tensor, cams: Cameras, size: int):
        self.device, self.size, self.raster = device, size, rasterizer(device)
        self.params = {k: v.detach().clone().requires_grad_(True) for k, v in to_params(g).items()}
        self.views = [cams[i] for i in range(len(cams))]
        self.Ks = [gsplat_intrinsics(v.Ks) for v in self.views]
        self.targets = rgba[..., :3] * rgba[..., 3:] + (1 - rgba[..., 3:])

    def step(self, i: int) -> None:
        p, k = self.params, i % len(self.views)
        sh = torch.cat([p["sh0"], p["shN"]], 1)
        img, _, _ = self.raster(p["means"], p["quats"], p["scales"].exp(), torch.sigmoid(p["opacities"]), sh,
                                self.views[k].viewmats, self.Ks[k], self.size, self.size, sh_degree=3)
        (img[0] - self.targets[k]).abs().mean().backward()

    def rate(self, steps: int, warmup: int = 50) -> float:
        """Iterations per second over `steps` after `warmup` untimed ones."""
        for i in range(warmup):
            self.step(i)
        sync(self.device)
        t = time.perf_counter()
        for i in range(steps):
            self.step(i)
        sync(self.device)
        return steps / (time.perf_counter() - t)


class Reached(Exception):
    """Raised by the cancel hook once the held-out PSNR reaches the target."""


def bench_resplat(results: dict, pool: Pool, device: torch.device, size: int, count: int, max_steps: int,
                  ratio_steps: int, target_db: float, profile_dir: Path | None = None, rounds: int = 3,
                  compile_variant: bool = False) -> None:
    mesh = the_mesh()
    train = orbit((0, 0, 0), 1.0, [i * 22.5 for i in range(16)], [-20.0, 10.0, 40.0], size, size)
    held = orbit((0, 0, 0), 1.0, [11.25 + i * 45.0 for i in range(8)], [25.0], size, size)
    t = time.perf_counter()
    train_rgba = torch.as_tensor(np.concatenate(pool.map(train, 2)))
    held_rgba = torch.as_tensor(np.concatenate(pool.map(held, 2)))
    log(f"ground truth: {len(train)} + {len(held)} views, 2x2 supersampled, {time.perf_counter() - t:.1f} s")
    white = torch.ones(3, device=device)
    held_rgba = held_rgba.to(device)
    held_truth = held_rgba[..., :3] * held_rgba[..., 3:] + white * (1 - held_rgba[..., 3:])
    held_dev = held.to(device)
    t = time.perf_counter()
    start = from_mesh(mesh, count=count, sh_degree=3, color=(0.5, 0.5, 0.5)).to(device)
    log(f"init: {len(start)} Gaussians on the surface, grey, {time.perf_counter() - t:.1f} s")

    def held_psnr(g: Gaussians) -> float:
        with torch.no_grad():
            return psnr(render(g, held_dev, background=white).rgb.clamp(0, 1), held_truth)

    log(f"held-out PSNR at start: {held_psnr(start):.2f} dB")
    warm = FitConfig(steps=20, refine_start=10**9)
    fit(start, train_rgba, train, config=warm)  # kernels, cuDNN plans, allocator: outside the timing
    sync(device)

    # Phase A: time to the target. The monitor evaluates every 25 steps; its time is subtracted.
    curve, state = [], {"eval_s": 0.0, "reached": None, "final": None}
    t0 = time.perf_counter()

    def monitor(step: int, g: Gaussians) -> None:
        sync(device)
        t = time.perf_counter()
        value = held_psnr(g)
        row = {"step": step, "train_s": t - t0 - state["eval_s"], "psnr": value, "gaussians": len(g)}
        curve.append(row)
        log(f"  step {step:5d}  {row['train_s']:7.2f} s  {value:6.2f} dB  N={len(g)}")
        state["final"] = g
        if value >= target_db and state["reached"] is None:
            state["reached"] = row
        state["eval_s"] += time.perf_counter() - t

    def check_cancel() -> None:
        if state["reached"] is not None:
            raise Reached()

    config = FitConfig(steps=max_steps, lr_sh0=0.01, refine_start=500, refine_every=100)
    try:
        fit(start, train_rgba, train, config=config, monitor=monitor, monitor_every=25, check_cancel=check_cancel)
    except Reached:
        pass
    results["resplat"] = {"size": size, "train_views": len(train), "held_out_views": len(held),
                          "start_gaussians": len(start), "target_db": target_db, "max_steps": max_steps,
                          "config": "FitConfig(lr_sh0=0.01, refine_start=500, refine_every=100), others default",
                          "reached": state["reached"], "curve": curve}
    log(f"time to {target_db} dB: {state['reached']}")

    # Phase B: loop rate of fit() against a bare rasterise + L1 + backward loop, same Gaussians and views.
    # Each is timed over ratio_steps iterations after 50 warm-up ones, images already on the device; the
    # loops alternate for `rounds` rounds (a shared host's noise hits both) and the ratio is the median of
    # the per-round ratios.
    g = state["final"] if state["final"] is not None else start
    rgba = train_rgba.to(device)
    train_dev = train.to(device)
    steady = dict(refine_start=10**9, sh_degree_interval=1)  # no densification, SH degree 3 throughout
    variants = {"graph": dict(cuda_graph=True), "loss graph + fused Adam": dict(update="fused"),
                "loss graph + foreach Adam": dict(update="foreach"), "eager": dict(cuda_graph=False)} \
        if device.type == "cuda" else {"eager": {}}
    if compile_variant and device.type == "cuda":
        variants["graph+compile"] = dict(cuda_graph=True, compile_loss=True)

    def fit_rate(extra: dict) -> tuple[float, float]:
        marks: dict[int, float] = {}

        def progress(step: int, total: int, loss: float) -> None:
            if step in (1, 50, 50 + ratio_steps):
                sync(device)
                marks[step] = time.perf_counter()

        t = time.perf_counter()
        fit(g, rgba, train_dev, config=FitConfig(steps=50 + ratio_steps, **steady, **extra),
            progress=progress, check_cancel=lambda: None)
        return ratio_steps / (marks[50 + ratio_steps] - marks[50]), marks[1] - t

    bare = BareLoop(device, g, rgba, train_dev, size)
    per_round = []
    for r in range(rounds):
        row = {"bare_its": bare.rate(ratio_steps)}
        for name, extra in variants.items():
            its, first = fit_rate(extra)
            row[name] = {"its": its, "ratio": its / row["bare_its"], "first_step_s": first}
        per_round.append(row)
        log(f"round {r + 1}: bare {row['bare_its']:.1f} it/s; " + ", ".join(
            f"{n} {row[n]['its']:.1f} it/s ({row[n]['ratio']:.3f}x)" for n in variants))
    main_name = "graph" if "graph" in variants else "eager"
    med = {n: statistics.median(r[n]["ratio"] for r in per_round) for n in variants}
    fit_its = statistics.median(r[main_name]["its"] for r in per_round)
    bare_its = statistics.median(r["bare_its"] for r in per_round)
    hooks = dict(progress=lambda s, n, loss: None, check_cancel=lambda: None)
    results["loop_rate"] = {"gaussians": len(g), "steps": ratio_steps, "rounds": per_round, "variant": main_name,
                            "fit_its": fit_its, "bare_its": bare_its, "ratio": med[main_name],
                            "median_ratios": med}
    if profile_dir is not None:
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        for name, run in (("fit", lambda: fit(g, rgba, train_dev, config=FitConfig(steps=30, **steady), **hooks)),
                          ("bare", lambda: [bare.step(i) for i in range(30)])):
            with profile(activities=activities) as prof:
                run()
                sync(device)
            table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=40)
            cuda = prof.key_averages().table(sort_by="self_cuda_time_total" if device.type == "cuda"
                                             else "self_cpu_time_total", row_limit=25)
            (profile_dir / f"profile_{name}.txt").write_text(table + "\n\n" + cuda)
        log(f"profiles written to {profile_dir}")
    log(f"loop rate on {len(g)} Gaussians: fit ({main_name}) {fit_its:.1f} it/s, bare fwd+bwd {bare_its:.1f} it/s, "
        f"median ratio {med[main_name]:.3f}; " + ", ".join(f"{n} {v:.3f}x" for n, v in med.items()))


def summary(results: dict) -> None:
    log("\n== bench/gpu_render.py summary ==")
    log(f"device: {results['device']}, torch {results['torch']}, gsplat {results.get('gsplat')}")
    if "mesh_passes" in results:
        m = results["mesh_passes"]
        log(f"mesh passes {m['size']}px ({m['faces']} faces)   {m['views_per_s_1proc']:7.1f} views/s 1 process, "
            f"{m['views_per_s_pool']:.1f} views/s {m['workers']} processes")
    if "fwd_bwd" in results:
        for row in results["fwd_bwd"]["rows"]:
            log(f"fwd+bwd {results['fwd_bwd']['size']}px  N={row['gaussians']:>9,}  C={row['cameras']}"
                f"   {row['ms']:8.2f} ms")
    if "resplat" in results:
        r, rr = results["resplat"], results["resplat"]["reached"]
        head = f"resplat to {r['target_db']} dB ({r['train_views']} views, {r['held_out_views']} held out, {r['size']}px)"
        log(head + (f"   {rr['train_s']:.1f} s, {rr['step']} steps, {rr['psnr']:.2f} dB, N={rr['gaussians']}"
                    if rr else f"   not reached in {r['max_steps']} steps"))
    if "loop_rate" in results:
        lr = results["loop_rate"]
        log(f"fit loop ({lr['variant']}) vs bare fwd+bwd ({lr['gaussians']:,} Gaussians)   {lr['fit_its']:.1f} vs "
            f"{lr['bare_its']:.1f} it/s, median of {len(lr['rounds'])} rounds' ratios = {lr['ratio']:.3f} (goal >= 0.9)")
        for name, value in lr["median_ratios"].items():
            log(f"  {name:14s} {value:.3f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--fwdbwd-sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    parser.add_argument("--count", type=int, default=100_000, help="Gaussians the resplat starts from")
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--ratio-steps", type=int, default=400)
    parser.add_argument("--target-db", type=float, default=30.0)
    parser.add_argument("--skip", nargs="*", default=[], choices=["passes", "fwdbwd", "resplat"])
    parser.add_argument("--profile", action="store_true", help="torch.profiler tables of both loops under --out")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the loop-rate comparison")
    parser.add_argument("--compile", action="store_true", help="also time FitConfig(compile_loss=True) (35-42 s compile)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu (reference rasteriser)",
               "torch": torch.__version__, "python": sys.version.split()[0], "args": vars(args) | {"out": str(args.out)}}
    if device.type == "cuda":
        import gsplat

        results["gsplat"] = gsplat.__version__
        t = time.perf_counter()
        render(shell_gaussians(100).to(device), orbit((0, 0, 0), 1.0, [0], [0], 32, 32).to(device))
        sync(device)
        log(f"gsplat warm-up (CUDA build or cache load): {time.perf_counter() - t:.1f} s")
    pool = Pool(args.workers)
    try:
        if "passes" not in args.skip:
            bench_mesh_passes(results, pool, args.size)
        if "resplat" not in args.skip:
            bench_resplat(results, pool, device, args.size, args.count, args.max_steps, args.ratio_steps,
                          args.target_db, args.out if args.profile else None, args.rounds, args.compile)
    finally:
        pool.close()
    if "fwdbwd" not in args.skip:
        bench_fwd_bwd(results, device, args.size, args.fwdbwd_sizes)
    (args.out / "bench_gpu_render.json").write_text(json.dumps(results, indent=2))
    summary(results)


if __name__ == "__main__":
    main()
