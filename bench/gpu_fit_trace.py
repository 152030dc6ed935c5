"""Where the fit loop's time goes, against the bare gsplat loop of issue 4's 0.9x goal. On the device:

    PYTHONUNBUFFERED=1 python bench/gpu_fit_trace.py --out $OUT

The scene is bench/gpu_render.py's (48 views of the textured sphere at 512 px, 100k Gaussians started on
its surface, fitted `--prefit` steps so their footprint is a fit's). Then:

1. Rates in alternating rounds: the bare loop (rasterise + L1 + backward, no optimiser), `fit()` as
   configured by default, and ablations of it that show what each part costs: the gradients copied into
   the update graph instead of read in place ("copy grads"), torch's fused Adam in the update graph
   instead of ours ("torch Adam"), the parameter update skipped ("no update"), the loss
   replaced by a constant gradient ("no loss"), both.
2. CUDA timelines of `--trace-steps` steady steps of the bare loop and of `fit()`, recorded with CUPTI only
   (recording CPU ops would slow the host and change what is measured): wall time per step, GPU busy time
   per step (the union of kernel, copy and memset intervals), GPU idle time split into the turnaround
   after a host synchronisation and the rest (the GPU waiting for the host to launch), and the GPU time
   of each kernel per step.
Prints a short table last; writes bench_gpu_fit_trace.json (and the two Chrome traces) under --out.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_render import BareLoop, Pool, sync, the_mesh  # noqa: E402

from likeness3d.backend.stages.splats.fast import fit_graph  # noqa: E402
from likeness3d.backend.stages.views.cameras import orbit  # noqa: E402
from likeness3d.backend.stages.splats.fit import FitConfig, fit  # noqa: E402
from likeness3d.backend.stages.splats.gaussians import from_mesh  # noqa: E402

SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize", "cudaMemcpy",
              "cudaMemcpyAsync")


def log(msg: str) -> None:
    print(msg, flush=True)


@contextmanager
def ablation(no_update: bool = False, no_loss: bool = False, torch_adam: bool = False, copy_grads: bool = False):
    """Diagnostics only: fit() with its update or its loss taken out (the rasteriser's work is unchanged),
    with torch's fused Adam kernel in the update graph instead of `adam_kernel`, or with the gradients
    always copied into the update graph's buffers. Patches the classes of `fast.fit_graph` that the default
    step (`fast.step.GraphedStep`) calls each step: GraphedUpdate.step, GraphedLoss.backward."""
    saved_step, saved_backward = fit_graph.GraphedUpdate.step, fit_graph.GraphedLoss.backward
    saved_triton, saved_in_place = fit_graph.GraphedUpdate.use_triton, fit_graph.GraphedUpdate.max_in_place

    def skip_update(self, params, optimizers, state, info):
        for p in params.values():
            p.grad = None

    def constant_loss(self, rgb, alpha, extra=None):
        if not hasattr(self, "_ones"):
            self._ones = (torch.full_like(rgb, 1e-6), torch.full_like(alpha, 1e-6))
        torch.autograd.backward([rgb, alpha], list(self._ones))

    if no_update:
        fit_graph.GraphedUpdate.step = skip_update
    if no_loss:
        fit_graph.GraphedLoss.backward = constant_loss
    fit_graph.GraphedUpdate.use_triton = not torch_adam
    if copy_grads:
        fit_graph.GraphedUpdate.max_in_place = 0
    try:
        yield
    finally:
        fit_graph.GraphedUpdate.step, fit_graph.GraphedLoss.backward = saved_step, saved_backward
        fit_graph.GraphedUpdate.use_triton, fit_graph.GraphedUpdate.max_in_place = saved_triton, saved_in_place


def timeline(path: Path, steps: int) -> dict:
    """Per-step figures from a Chrome trace made with CUPTI activity only."""
    events = json.loads(path.read_text())["traceEvents"]
    gpu = sorted((e["ts"], e["ts"] + e["dur"], e["name"]) for e in events
                 if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset"))
    syncs = sorted((e["ts"], e["ts"] + e["dur"]) for e in events
                   if e.get("ph") == "X" and e.get("cat") == "cuda_runtime" and e["name"] in SYNC_CALLS
                   and e["dur"] > 5)
    runtime = defaultdict(lambda: [0, 0.0])
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "cuda_runtime":
            runtime[e["name"]][0] += 1
            runtime[e["name"]][1] += e["dur"]
    busy, gaps, start, end = 0.0, [], gpu[0][0], gpu[0][1]
    for s, e, _ in gpu[1:]:
        if s > end:
            busy += end - start
            gaps.append((end, s))
            start = s
        end = max(end, e)
    busy += end - start
    span = gpu[-1][1] - gpu[0][0]
    turnaround = host_bound = 0.0
    for g0, g1 in gaps:  # a gap that a host sync ends inside is the sync's turnaround
        if any(g0 - 1 <= s1 <= g1 + 1 for _, s1 in syncs):
            turnaround += g1 - g0
        else:
            host_bound += g1 - g0
    kernels = defaultdict(float)
    counts = defaultdict(int)
    for s, e, name in gpu:
        short = name.split("(")[0].replace("void ", "")[:70]
        kernels[short] += e - s
        counts[short] += 1
    top = sorted(kernels.items(), key=lambda kv: -kv[1])[:25]
    return {
        "steps": steps, "wall_us": span / steps, "gpu_busy_us": busy / steps,
        "idle_after_sync_us": turnaround / steps, "idle_host_bound_us": host_bound / steps,
        "kernels_per_step": len(gpu) / steps, "host_sync_wait_us": sum(b - a for a, b in syncs) / steps,
        "kernel_us": [{"name": n, "us_per_step": t / steps, "per_step": counts[n] / steps} for n, t in top],
        "runtime_calls": {k: {"per_step": v[0] / steps, "us_per_step": v[1] / steps}
                          for k, v in sorted(runtime.items(), key=lambda kv: -kv[1][1])[:12]},
    }


def graph_time_us(fn, reps: int = 20, before=None) -> float:
    """Median GPU time of one fn() call: `reps` calls captured in a CUDA graph, replayed 20 times."""
    fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    times = []
    for _ in range(20):
        if before is not None:
            before()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        graph.replay()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) * 1e3 / reps)
    return statistics.median(times)


def adam_blocks(device: torch.device, count: int) -> list[dict]:
    """GPU time of the Adam update of a fit's six parameters (`count` Gaussians, SH degree 3) by the
    kernel's elements and warps per program, and with torch's fused Adam."""
    from likeness3d.backend.stages.splats.fast import adam_kernel

    sizes = [3, 3, 4, 1, 3, 45]
    p = [torch.rand(count * k, device=device) for k in sizes]
    g, m, v = ([torch.rand_like(t) for t in p] for _ in range(3))
    step, lr = torch.ones((), device=device), torch.full((), 1e-3, device=device)
    rows = []
    saved = adam_kernel.BLOCK, adam_kernel.WARPS

    def ours():
        for a, b, c, d in zip(p, g, m, v):
            adam_kernel.adam_(a, b, c, d, step, lr, 0.9, 0.999, 1e-15)

    def theirs():
        for a, b, c, d in zip(p, g, m, v):
            torch._fused_adam_([a], [b], [c], [d], [], [step], lr=lr, beta1=0.9, beta2=0.999, weight_decay=0.0,
                               eps=1e-15, amsgrad=False, maximize=False)

    try:
        for block, warps in ((1024, 4), (2048, 4), (2048, 8), (4096, 8), (512, 4), (4096, 16)):
            adam_kernel.BLOCK, adam_kernel.WARPS = block, warps
            rows.append({"block": block, "warps": warps, "us": graph_time_us(ours)})
            log(f"Adam, {sum(sizes) * count / 1e6:.1f} M floats, {block} elements and {warps} warps a program: "
                f"{rows[-1]['us']:.1f} us")
    finally:
        adam_kernel.BLOCK, adam_kernel.WARPS = saved
    rows.append({"torch fused": True, "us": graph_time_us(theirs)})
    log(f"Adam, torch's fused kernel: {rows[-1]['us']:.1f} us")
    return rows


def loss_blocks(device: torch.device, size: int) -> list[dict]:
    """GPU time of one call of the fit graph's loss kernels (B = 1, RGBA, weights) by the blurs' columns and
    warps per program."""
    from likeness3d.backend.stages.splats.fast import fused_loss

    gen = torch.Generator(device=device).manual_seed(0)
    images = torch.rand(4, size, size, 4, generator=gen, device=device)
    weights = torch.rand(4, size, size, generator=gen, device=device)
    batches = torch.randint(0, 4, (1000, 1), generator=gen, device=device)
    backgrounds = torch.rand(1000, 3, generator=gen, device=device)
    raw = torch.rand(1, size, size, 3, generator=gen, device=device)
    alpha = torch.rand(1, size, size, generator=gen, device=device)
    rows = []
    saved = fused_loss.BLOCK, fused_loss.WARPS
    try:
        for block, warps in ((128, 4), (256, 4), (256, 8), (512, 8)):
            fused_loss.BLOCK, fused_loss.WARPS = block, warps
            step, logt = torch.zeros((), dtype=torch.long, device=device), torch.zeros(1000, device=device)
            k = fused_loss.FitLossKernels(raw, alpha, images, weights, batches, backgrounds, step, logt, 0.2, 0.1, True)
            us = graph_time_us(k, before=step.zero_)
            rows.append({"block": block, "warps": warps, "us_per_call": us})
            log(f"loss kernels, {block} columns and {warps} warps a program: {rows[-1]['us_per_call']:.1f} us a call")
    finally:
        fused_loss.BLOCK, fused_loss.WARPS = saved
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--prefit", type=int, default=225)
    parser.add_argument("--steps", type=int, default=400, help="timed steps per rate measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--trace-steps", type=int, default=40)
    parser.add_argument("--variants", nargs="*", default=["default", "copy grads", "torch Adam", "no update",
                                                          "no loss", "no update, no loss"])
    parser.add_argument("--kernels", action="store_true", help="time the loss and Adam kernels' block sizes")
    parser.add_argument("--kernels-only", action="store_true", help="only that")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda")
    size = args.size
    results = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "args": vars(args) | {"out": str(args.out)}}

    if args.kernels:
        results["loss_blocks"] = loss_blocks(device, size)
        results["adam_blocks"] = adam_blocks(device, args.count)
    if args.kernels_only:
        (args.out / "bench_gpu_fit_trace.json").write_text(json.dumps(results, indent=2))
        return
    mesh = the_mesh()
    train = orbit((0, 0, 0), 1.0, [i * 22.5 for i in range(16)], [-20.0, 10.0, 40.0], size, size)
    pool = Pool(min(8, os.cpu_count() or 1))
    try:
        rgba = torch.as_tensor(np.concatenate(pool.map(train, 2))).to(device)
    finally:
        pool.close()
    start = from_mesh(mesh, count=args.count, sh_degree=3, color=(0.5, 0.5, 0.5)).to(device)
    t = time.perf_counter()
    g = fit(start, rgba, train, config=FitConfig(steps=args.prefit, lr_sh0=0.01)).gaussians
    sync(device)
    log(f"prefit: {args.prefit} steps on {len(g)} Gaussians, {time.perf_counter() - t:.1f} s (gsplat build included)")
    train_dev = train.to(device)
    steady = dict(refine_start=10**9, sh_degree_interval=1)
    flags = {"default": {}, "copy grads": dict(copy_grads=True), "torch Adam": dict(torch_adam=True), "no update": dict(no_update=True),
             "no loss": dict(no_loss=True), "no update, no loss": dict(no_update=True, no_loss=True)}

    updates: dict[str, dict] = {}

    def run_fit(name: str, steps: int, marks_at: tuple[int, ...], on_mark=None) -> dict[int, float]:
        marks: dict[int, float] = {}

        def progress(step: int, total: int, loss: float) -> None:
            if step in marks_at:
                sync(device)
                marks[step] = time.perf_counter()
                if on_mark is not None:
                    on_mark(step)

        made = []
        init = fit_graph.GraphedUpdate.__init__

        def recording_init(self, *a, **k):
            init(self, *a, **k)
            made.append(self)

        fit_graph.GraphedUpdate.__init__ = recording_init
        try:
            with ablation(**flags[name]):
                result = fit(g, rgba, train_dev, config=FitConfig(steps=steps, **steady), progress=progress,
                             check_cancel=lambda: None)
        finally:
            fit_graph.GraphedUpdate.__init__ = init
        paths = {"paths": dataclasses.asdict(result.paths), "graphs_captured": result.graphs_captured}
        if made:
            updates[name] = {"captures": made[-1].captures, "in_place_steps": made[-1].in_place_steps, "steps": steps,
                             **paths}
        else:
            updates[name] = {"steps": steps, **paths}
        return marks

    bare = BareLoop(device, g, rgba, train_dev, size)

    rounds = []
    for r in range(args.rounds):
        row = {"bare": bare.rate(args.steps)}
        for name in args.variants:
            marks = run_fit(name, 50 + args.steps, (50, 50 + args.steps))
            row[name] = args.steps / (marks[50 + args.steps] - marks[50])
        rounds.append(row)
        log(f"round {r + 1}: " + ", ".join(f"{k} {v:.1f} it/s" for k, v in row.items()))
    rates = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    ratios = {k: statistics.median(r[k] / r["bare"] for r in rounds) for k in rounds[0] if k != "bare"}
    results["rates"] = {"rounds": rounds, "median_its": rates, "median_ratio_to_bare": ratios}
    results["update_graphs"] = updates
    log("update graphs (last fit of each variant): " + ", ".join(
        f"{k}: {v['captures']} captures, {v['in_place_steps']}/{v['steps']} steps in place" if "captures" in v
        else f"{k}: no update graph ({v['paths']})" for k, v in updates.items()))

    from torch.profiler import ProfilerActivity, profile

    T = args.trace_steps
    traces = {}
    prof = profile(activities=[ProfilerActivity.CUDA])
    for i in range(50):
        bare.step(i)
    sync(device)
    prof.start()
    for i in range(T):
        bare.step(i)
    sync(device)
    prof.stop()
    prof.export_chrome_trace(str(args.out / "trace_bare.json"))
    traces["bare"] = timeline(args.out / "trace_bare.json", T)

    prof = profile(activities=[ProfilerActivity.CUDA])
    run_fit("default", 50 + T, (50, 50 + T), on_mark=lambda s: prof.start() if s == 50 else prof.stop())
    prof.export_chrome_trace(str(args.out / "trace_fit.json"))
    traces["fit"] = timeline(args.out / "trace_fit.json", T)
    results["timelines"] = traces
    (args.out / "bench_gpu_fit_trace.json").write_text(json.dumps(results, indent=2))

    log("\n== bench/gpu_fit_trace.py summary ==")
    log(f"device: {results['device']}, {len(g)} Gaussians, {size} px")
    log("rates (median of rounds): " + ", ".join(f"{k} {v:.1f} it/s" for k, v in rates.items()))
    log("ratios to bare: " + ", ".join(f"{k} {v:.3f}x" for k, v in ratios.items()))
    for name, tl_ in traces.items():
        log(f"{name}: wall {tl_['wall_us']:.0f} us/step, GPU busy {tl_['gpu_busy_us']:.0f}, idle after sync "
            f"{tl_['idle_after_sync_us']:.0f}, idle host-bound {tl_['idle_host_bound_us']:.0f}, host in sync "
            f"{tl_['host_sync_wait_us']:.0f}; {tl_['kernels_per_step']:.0f} kernels/step")
        for k in tl_["kernel_us"][:18]:
            log(f"    {k['us_per_step']:7.1f} us  x{k['per_step']:.0f}  {k['name']}")
        log("    runtime: " + ", ".join(f"{k} x{v['per_step']:.0f} {v['us_per_step']:.0f} us"
                                       for k, v in tl_["runtime_calls"].items()))


if __name__ == "__main__":
    main()
