"""The Ray executor against the local one, through the ZeroMQ front (`likeness3d serve` processes, a real Ray
cluster started here with `ray start --head`):

1. cluster start time (`ray start --head`) and the server's join time;
2. per-job overhead of each executor for `selftest` (one step, no sleep) and for a TIRE job: the client's wall
   time from submit to result minus the pipeline's own time (selftest.json / report.json), median of the warm
   jobs (a worker's first job also imports the pipeline's code and loads its models: reported apart); the Ray
   executor's overhead over the local one (goal <= 1 s);
3. jobs per second with 2 and 4 logical GPUs (Ray slots; 1 s `selftest` jobs, 4 per slot at once);
4. the TIRE job's result through both executors compared (texture PSNR, identical bytes or not).

    python bench/ray_executor.py [--device cpu|cuda] [--jobs 5] [--tire-jobs 1] [--preset fast] [--out DIR] [--json PATH]

`--device cuda` (a GPU host): the TIRE job runs with SD-2-sized inpainting models of random weights (the cost per
step does not depend on the weights), saved once into a local models folder in diffusers layout (`--out`
/models/inpaint) and loaded by each executor's worker from there, as `serve --models` does on every node; the
logical-GPU figures are skipped (they need a CPU cluster with logical GPUs). On the CPU the TIRE job uses the
classical inpainter (no weights), as `likeness3d demo` does.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))  # the cluster and server helpers the tests use

import numpy as np  # noqa: E402

from likeness3d.protocol.client import Client  # noqa: E402
from likeness3d.protocol.messages import Result  # noqa: E402
from ray_head import RayHead  # noqa: E402
from servers import Served  # noqa: E402


def subject(image_size: int):
    from likeness3d.backend.synthetic.example import example_case
    from likeness3d.protocol.assets import Asset

    case = example_case(image_size=image_size, texture_size=2 * image_size)
    return Asset(case.initial, case.references, case.class_word, "pebble")


def save_sd2_models(folder: Path) -> float:
    """SD-2-sized inpainting models of random weights, in diffusers layout (as a node's models folder holds)."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    from likeness3d.backend.stages.diffusion.tiny import build_modules

    t0 = time.monotonic()
    if not (folder / "inpaint" / "model_index.json").is_file():
        with torch.device("cuda"):
            parts = build_modules("inpaint", scale="sd2")
        pipe = StableDiffusionInpaintPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(folder / "inpaint", safe_serialization=True)
        del pipe, parts
        torch.cuda.empty_cache()
    return time.monotonic() - t0


def run_job(c: Client, pipeline: str, asset, config: dict, own: str) -> dict:
    """One job, submit to result; `own` names the artifact holding the pipeline's own seconds."""
    t0 = time.monotonic()
    job = c.submit(pipeline, asset, config)
    events = list(job.events(timeout=3600))
    wall = time.monotonic() - t0
    if not isinstance(events[-1], Result):
        raise SystemExit(f"{pipeline} job {job.id} failed: {events[-1]}")
    report = json.loads(c.fetch(job.id, own))
    seconds = report["seconds"]["total"] if isinstance(report["seconds"], dict) else report["seconds"]
    return {"job": job.id, "wall_s": wall, "pipeline_s": float(seconds), "overhead_s": wall - float(seconds),
            "where": c.status(job.id).get("where", "local worker")}


def wait_ready(c: Client) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if all(w["state"] == "idle" for w in c.status()["workers"]):
            return
        time.sleep(0.2)
    raise SystemExit("the workers did not start within 600 s")


def overheads(address: str, asset, tire_asset, tire_config: dict, jobs: int, tire_jobs: int) -> dict:
    with Client(address, timeout=120) as c:
        wait_ready(c)
        sel = {"steps": 1, "step_seconds": 0.0, "preview_size": 0}
        run_job(c, "selftest", asset, sel, "selftest.json")  # the worker's first job imports the pipeline code
        selftest = [run_job(c, "selftest", asset, sel, "selftest.json") for _ in range(jobs)]
        tire = [run_job(c, "tire", tire_asset, tire_config, "report.json") for _ in range(tire_jobs)]
        texture = c.fetch(tire[-1]["job"], "texture.png")
    return {"selftest": selftest, "tire": tire, "texture": texture}


def jobs_per_second(address: str, asset, slots: int) -> dict:
    cfg = {"steps": 4, "step_seconds": 0.25, "preview_size": 0}  # 1 s a job
    n = 4 * slots
    with Client(address, timeout=120) as c:
        wait_ready(c)
        t0 = time.monotonic()
        handles = [c.submit("selftest", asset, cfg) for _ in range(n)]
        finals = [list(h.events(timeout=3600))[-1] for h in handles]
        wall = time.monotonic() - t0
    assert all(isinstance(f, Result) for f in finals), finals
    return {"slots": slots, "jobs": n, "wall_s": round(wall, 2), "jobs_per_s": round(n / wall, 2), "ideal_jobs_per_s": slots}


def texture_psnr(a: bytes, b: bytes) -> float:
    from PIL import Image

    x, y = (np.asarray(Image.open(io.BytesIO(d)).convert("RGB"), np.float64) for d in (a, b))
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def _finite(psnr: float) -> float | None:
    """None for identical images (JSON has no infinity)."""
    return None if psnr == float("inf") else round(psnr, 2)


def median(rows: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in rows), 3)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--jobs", type=int, default=5, help="selftest jobs per executor (after one warm-up)")
    ap.add_argument("--tire-jobs", type=int, default=2,
                    help="TIRE jobs per executor: the first (cold: imports, first model loads) is reported apart, the "
                         "others' median is the overhead figure; the last one's result is compared")
    ap.add_argument("--preset", choices=("fast", "quality"), default="fast")
    ap.add_argument("--out", default="bench_ray_out")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    from likeness3d.backend.pipelines.tire import PRESETS

    gpu = args.device == "cuda"
    rows: dict = {"device": args.device, "preset": args.preset}
    models: list[str] = []
    if gpu:
        rows["models_saved_s"] = round(save_sd2_models(out / "models"), 1)
        models = ["--models", str(out / "models")]
    asset = subject(32)
    tire_asset = subject(512 if gpu and args.preset == "quality" else 128)
    tire_config = dict(PRESETS[args.preset])
    local_gpus = "0" if gpu else "cpu"

    head = RayHead(cpus=None if gpu else 2, gpus=None if gpu else 4)
    rows["ray_start_head_s"] = round(head.start_seconds, 1)
    import os

    os.environ.update({k: head.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")})
    try:
        local = Served(out / "store_local", out / "local.log", extra=["--gpus", local_gpus, *models], timeout=600)
        try:
            res_local = overheads(local.address, asset, tire_asset, tire_config, args.jobs, args.tire_jobs)
        finally:
            local.stop()
        ray_flags = ["--executor", "ray", "--ray-address", head.address, "--ray-slots", "1", "--gpus", "cuda" if gpu else "auto"]
        t0 = time.monotonic()
        ray_srv = Served(out / "store_ray", out / "ray.log", extra=[*ray_flags, *models], timeout=600)
        rows["serve_join_s"] = round(time.monotonic() - t0, 1)
        m = re.search(r"cluster joined at \S+ in ([0-9.]+) s", ray_srv.log())
        rows["ray_init_join_s"] = float(m.group(1)) if m else None
        try:
            res_ray = overheads(ray_srv.address, asset, tire_asset, tire_config, args.jobs, args.tire_jobs)
        finally:
            ray_srv.stop()
        for name, res in (("local", res_local), ("ray", res_ray)):
            rows[name] = {"selftest_overhead_s": median(res["selftest"], "overhead_s"),
                          "selftest_wall_s": median(res["selftest"], "wall_s"),
                          "tire_first_overhead_s": round(res["tire"][0]["overhead_s"], 3),
                          "tire_overhead_s": median(res["tire"][1:] or res["tire"], "overhead_s"),
                          "tire_wall_s": median(res["tire"][1:] or res["tire"], "wall_s"),
                          "tire_pipeline_s": median(res["tire"][1:] or res["tire"], "pipeline_s"), "where": res["tire"][-1]["where"]}
        rows["ray_over_local_s"] = {k: round(rows["ray"][f"{k}_overhead_s"] - rows["local"][f"{k}_overhead_s"], 3)
                                    for k in ("selftest", "tire")}
        rows["tire_texture"] = {"identical": res_local["texture"] == res_ray["texture"],
                                "psnr_db_ray_vs_local": _finite(texture_psnr(res_local["texture"], res_ray["texture"]))}
        if not gpu:
            rows["throughput"] = []
            for slots in (2, 4):
                srv = Served(out / f"store_ray{slots}", out / f"ray{slots}.log",
                             extra=["--executor", "ray", "--ray-address", head.address, "--ray-slots", str(slots), "--gpus", "auto"], timeout=600)
                try:
                    rows["throughput"].append(jobs_per_second(srv.address, asset, slots))
                finally:
                    srv.stop()
    finally:
        head.stop()
    text = json.dumps(rows, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    r = rows["ray_over_local_s"]
    print(f"\nRay executor's per-job overhead over the local one: selftest {r['selftest']:+.3f} s, TIRE {r['tire']:+.3f} s "
          f"(goal <= 1 s); cluster start {rows['ray_start_head_s']} s, join {rows['ray_init_join_s']} s; TIRE texture "
          f"ray vs local: {'identical' if rows['tire_texture']['identical'] else str(rows['tire_texture']['psnr_db_ray_vs_local']) + ' dB'}")
    for t in rows.get("throughput", []):
        print(f"{t['slots']} logical GPUs: {t['jobs_per_s']} jobs/s ({t['jobs']} jobs of 1 s; ideal {t['ideal_jobs_per_s']})")


if __name__ == "__main__":
    main()
