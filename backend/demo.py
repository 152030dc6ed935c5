"""`likeness3d demo`: the main job (TIRE) on the bundled example subject, and `start_server`, which runs a
real backend process for the tests and benchmarks."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path



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


def write_inputs(case, inputs: Path) -> dict[str, Path]:
    """The demo case as a user would hand it over: a GLB, and transforms.json camera sets with images."""
    from .export.glb import write_glb
    from .inputs.transforms import write_transforms

    inputs.mkdir(parents=True, exist_ok=True)
    paths = {"mesh": inputs / "mesh.glb", "refs": inputs / "references" / "transforms.json", "truth": inputs / "truth" / "transforms.json"}
    write_glb(case.initial, path=paths["mesh"])
    paths["refs"].parent.mkdir(exist_ok=True)
    paths["truth"].parent.mkdir(exist_ok=True)
    write_transforms(paths["refs"], list(case.references))
    write_transforms(paths["truth"], list(case.eval_views))
    return paths


def metrics_table(report: dict, views: int) -> list[str]:
    """The inpainter and PSNR / SSIM on held-out views, refined against initial, as printed lines."""
    m = report.get("metrics") or {}
    lines = [f"  inpainter: {report['inpainter']}"] if "inpainter" in report else []
    if not all(f"psnr_{r}" in m for r in ("observed", "infilled")):
        return lines
    lines.append(f"  held-out views ({views}), region: PSNR dB / SSIM      refined       initial")
    for region in ("observed", "infilled"):
        lines.append(f"    {region:<42} {m[f'psnr_{region}']:6.2f} / {m[f'ssim_{region}']:.3f}   "
                     f"{m[f'psnr_{region}_initial']:6.2f} / {m[f'ssim_{region}_initial']:.3f}")
    return lines


def run_demo(out: Path, device: str | None = None) -> int:
    """TIRE on the bundled example subject, from the files it writes, scored against held-out true views."""
    from .synthetic.example import example_case
    from .refine import default_device, refine

    out = out.resolve()
    device = device or default_device()
    print("likeness3d demo: TIRE (Track, Inpaint, Resplat) on the bundled example subject, a painted pebble whose")
    print("  initial asset has a wrong (hue-shifted, blurred) hidden side; 3 reference photos show the truth.")
    t0 = time.monotonic()
    case = example_case()
    paths = write_inputs(case, out / "inputs")
    print(f"  inputs written to {out / 'inputs'} (mesh.glb, references/transforms.json, truth/transforms.json)")
    print(f"  the same run from the command line:\n    likeness3d refine tire --mesh {paths['mesh']} --refs {paths['refs']} "
          f"--class pebble --out {out} --eval-views {paths['truth']}")
    report = refine("tire", paths["mesh"], paths["refs"], case.class_word, out, device=device, eval_views=paths["truth"])
    print("\n".join(metrics_table(report, len(case.eval_views))))
    print(f"  results in {out}: mesh.glb (refined texture on the artist's UVs), splats.ply, texture.png, sheet.png, report.json")
    print(f"  done in {time.monotonic() - t0:.0f} s on {device}")
    return 0
