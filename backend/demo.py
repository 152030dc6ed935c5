"""`likeness3d demo`: the main job on the bundled example subject, through a real server process and client.

Until the TIRE pipeline exists, the main job is `inspect` (validate the asset, report which references see
the mesh, preview overlays); the demo says so in its output.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ..protocol.client import Client
from ..protocol.messages import Progress
from .example import example_asset


def start_server(
    store: Path, gpus: str = "cpu", extra: list[str] | None = None, timeout: float = 60.0, listen: str = "tcp://127.0.0.1:*"
) -> tuple[subprocess.Popen, str]:
    """Start `likeness3d serve` as a child process (its output in <store>/server.log); return it and its address."""
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    log_path = store / "server.log"
    cmd = [sys.executable, "-m", "likeness3d.backend.cli", "serve", "--listen", listen, "--store", str(store), "--gpus", gpus]
    with open(log_path, "ab") as log:
        start = log.tell()
        proc = subprocess.Popen(cmd + (extra or []), stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        with open(log_path, "rb") as fh:
            fh.seek(start)
            m = re.search(rb"listening on (tcp://\S+|ipc://\S+)", fh.read())
        if m:
            return proc, m.group(1).decode()
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the backend did not start; its log {log_path} says: {log_path.read_text()[-2000:]}")


def _save_png(path: Path, rgba: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(rgba).save(path)


def run_demo(out: Path, device: str | None = None) -> int:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    print("likeness3d demo: the main job on the bundled example subject (a painted pebble, 3 reference photos).")
    print("  note: the TIRE refinement pipeline has not landed yet; this demo runs the `inspect` pipeline")
    print("        (asset validation, which references see the mesh, overlay previews) through a real server.")
    gpus = {"cpu": "cpu", "cuda": "auto", None: "auto"}[device]
    asset = example_asset()
    proc, address = start_server(out / "store", gpus)
    try:
        with Client(address, timeout=60) as client:
            info = client.hello("likeness3d-demo")
            print(f"  backend {info.server} at {address}; pipelines {info.pipelines}; GPUs {info.gpus or 'none'}")
            job = client.submit("inspect", asset)
            print(f"  job {job.id} accepted")
            previews = []
            for ev in job.events(timeout=120):
                if isinstance(ev, Progress):
                    print(f"  [{ev.stage} {ev.step}/{ev.total}] {ev.text}")
                    if ev.preview is not None:
                        previews.append(ev.preview)
            result = job.wait()
            paths = client.fetch_all(job.id, out)
        for i, img in enumerate(previews):
            path = out / f"preview_{asset.references[i].name}.png"
            _save_png(path, img)
            paths.append(path)
        report = json.loads((out / "inspect.json").read_text())
        m = report["mesh"]
        print(f"  mesh: {m['vertices']} vertices, {m['faces']} faces, area {m['surface_area']:.3f} m^2, "
              f"bounds {np.round(m['bounds_min'], 3).tolist()} .. {np.round(m['bounds_max'], 3).tolist()}")
        for r in report["references"]:
            print(f"  reference {r['name']}: sees mesh {r['sees_mesh']}, vertices on subject "
                  f"{r.get('vertices_on_subject', 0):.3f}, bbox IoU {r.get('bbox_iou', 0):.3f}")
        print(f"  results ({len(result.artifacts)} artifacts) in {out}:")
        for p in paths:
            print(f"    {p}")
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
