"""Jobs side by side on several GPUs of one host, through the real server (`likeness3d serve`) and clients.

For each configuration, in one process: start `likeness3d serve` with that configuration's flags on a fresh
store, submit `--jobs` TIRE jobs (the `quality` preset unless `--preset`, SD-2-sized inpainting models of
random weights written once in diffusers layout, the demo subject at 512 px) from `--clients` clients at
once, wait for every result, stop the server. Recorded per job: seconds from accepted to result, the
worker that ran it (polled from `status` while it runs) and the job's device; per configuration: the wall
time of all jobs and each GPU's peak memory (nvidia-smi, polled every 0.25 s). Prints a table and writes
multi_gpu.json.

    python bench/multi_gpu.py --out OUT                                    # configurations one,local
    python bench/multi_gpu.py --out OUT --configs one,local,ray            # with the Ray executor
    python bench/multi_gpu.py --out OUT --configs one,shared --preset fast # one GPU: two workers on it

Configurations: `cpu` = `--gpus cpu` (a smoke run of the script), `one` = `--gpus 0` (one worker, the baseline), `local` = `--gpus auto` (one worker per GPU,
the default), `shared` = `--gpus 0,0` (two workers on GPU 0: what one large GPU allows), `ray` = `--executor
ray` (each job a Ray task holding one GPU). Goal on a two-GPU host: `local` and `ray` wall time <= 0.55x of
`one`, no job lost, each job on its own GPU, two at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

FLAGS = {"cpu": ["--gpus", "cpu"], "one": ["--gpus", "0"], "local": ["--gpus", "auto"], "shared": ["--gpus", "0,0"], "ray": ["--executor", "ray"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GpuMemory(threading.Thread):
    """Peak `memory.used` (MiB) of every GPU, polled with nvidia-smi until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak: dict[int, int] = {}
        self._halt = threading.Event()

    def run(self):
        exe = shutil.which("nvidia-smi")
        while exe and not self._halt.is_set():
            out = subprocess.run([exe, "--query-gpu=index,memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True).stdout
            for line in out.strip().splitlines():
                i, used = (int(x) for x in line.split(","))
                self.peak[i] = max(self.peak.get(i, 0), used)
            self._halt.wait(0.25)

    def stop(self) -> dict:
        self._halt.set()
        self.join(5)
        return {f"gpu{i}": round(v / 1024, 2) for i, v in sorted(self.peak.items())}


def write_models(folder: Path, scale: str) -> Path:
    from likeness3d.backend.stages.diffusion.tiny import save_tiny

    if not (folder / "roles.json").is_file():
        save_tiny(folder / "inpaint-random", "inpaint", scale=scale)
        (folder / "roles.json").write_text(json.dumps({"inpaint": "inpaint-random"}))
    return folder


def run_config(name: str, args, models: Path, asset, config: dict) -> dict:
    from likeness3d.protocol.client import Client

    store, port = args.out / f"store_{name}", free_port()
    shutil.rmtree(store, ignore_errors=True)
    address = f"tcp://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "likeness3d.backend.cli", "serve", "--listen", address, "--store", str(store),
           "--models", str(models), *FLAGS[name]]
    log = open(args.out / f"serve_{name}.log", "w")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    clients = [Client(address, timeout=120) for _ in range(args.clients)]
    try:
        info = clients[0].hello("bench-multi-gpu")
        jobs: list[dict] = []
        lock = threading.Lock()
        memory = GpuMemory()
        memory.start()
        t0 = time.monotonic()

        def client_jobs(c, k):
            mine = [c.submit("tire", asset, config) for _ in range(k)]
            accepted = time.monotonic()
            for h in mine:
                row = {"job": h.id, "client": clients.index(c), "workers_seen": set()}
                while not h.done:
                    st = c.status(h.id)
                    if st.get("worker") is not None:
                        row["workers_seen"].add(st["worker"])
                    for key in ("node", "executor_worker", "placement"):
                        if st.get(key) is not None:
                            row[key] = st[key]
                    time.sleep(0.5)
                row["seconds_since_accepted"] = round(time.monotonic() - accepted, 1)
                row["workers_seen"] = sorted(row["workers_seen"])
                try:
                    result = h.wait(timeout=3600)
                    report = json.loads(c.fetch(h.id, "report.json"))
                    row.update(state="done", job_seconds=report.get("seconds", {}).get("total"),
                               device=report.get("device"), artifacts=len(result.artifacts))
                except Exception as exc:  # noqa: BLE001 - a lost or failed job is a figure of the run
                    row.update(state="failed", error=f"{type(exc).__name__}: {exc}"[:300])
                with lock:
                    jobs.append(row)

        per_client = [args.jobs // args.clients + (1 if i < args.jobs % args.clients else 0) for i in range(args.clients)]
        threads = [threading.Thread(target=client_jobs, args=(c, k)) for c, k in zip(clients, per_client)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.monotonic() - t0
        peaks = memory.stop()
        return {"flags": FLAGS[name], "server": {k: v for k, v in vars(info).items() if not k.startswith("_")},
                "jobs": jobs, "done": sum(j["state"] == "done" for j in jobs), "submitted": args.jobs,
                "wall_s": round(wall, 1), "peak_gpu_memory_gb": peaks}
    finally:
        for c in clients:
            c.close()
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "out")) / "multi_gpu")
    ap.add_argument("--configs", default="one,local", help=f"comma list of {', '.join(FLAGS)}")
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--clients", type=int, default=2)
    ap.add_argument("--preset", default="quality", help="TIRE preset of every job")
    ap.add_argument("--scale", choices=("sd2", "tiny"), default="sd2", help="size of the random inpainting models")
    ap.add_argument("--image-size", type=int, default=512)
    ap.add_argument("--config", default="{}", help="JSON settings merged over the preset (a smoke run: tiny jobs)")
    args = ap.parse_args()
    names = [n for n in args.configs.split(",") if n]
    bad = [n for n in names if n not in FLAGS]
    if bad:
        sys.exit(f"--configs: unknown {bad}; choose from {list(FLAGS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    from likeness3d.backend.synthetic.example import example_case
    from likeness3d.protocol.assets import Asset

    t0 = time.monotonic()
    models = write_models(args.out / "models", args.scale)
    print(f"random {args.scale} inpainting models written in {time.monotonic() - t0:.1f} s", flush=True)
    case = example_case(image_size=args.image_size, texture_size=1024)
    asset = Asset(case.initial, case.references, case.class_word, "pebble")
    from likeness3d.backend.pipelines.tire import PRESETS

    config = {**PRESETS[args.preset], **json.loads(args.config)}  # presets are the client's: the tree each sends
    rows = {}
    for name in names:
        print(f"{name}: likeness3d serve {' '.join(FLAGS[name])}; {args.jobs} TIRE {args.preset} jobs from "
              f"{args.clients} clients ...", flush=True)
        rows[name] = run_config(name, args, models, asset, config)
        print(json.dumps(rows[name], default=str), flush=True)
    (args.out / "multi_gpu.json").write_text(json.dumps(rows, indent=1, default=str))
    base = rows.get("one", {}).get("wall_s")
    print(f"\n{'configuration':<14} {'done':>6} {'wall s':>8} {'x one':>7}  peak GB per GPU")
    for name, r in rows.items():
        ratio = f"{r['wall_s'] / base:.2f}" if base else "-"
        print(f"{name:<14} {r['done']:>3}/{r['submitted']:<2} {r['wall_s']:>8} {ratio:>7}  {r['peak_gpu_memory_gb']}")


if __name__ == "__main__":
    main()
