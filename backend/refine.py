"""`likeness3d refine PIPELINE ...`: the server's pipelines on local files, with no server (scripts, tests,
the demo). Inputs: a mesh file and nerfstudio transforms.json camera sets; outputs land in --out."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from ..protocol.assets import Asset
from .config import canonical, config_from_dict, merge_config
from .context import JobContext
from .inputs.mesh import read_mesh
from .inputs.transforms import read_transforms
from .pipelines import get_pipeline


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def printing_context(out: Path, device: str, every_s: float = 1.0, stream=sys.stdout) -> JobContext:
    """A JobContext that prints progress lines (at most one a second, plus each stage's last step)."""
    last = {"t": 0.0, "stage": None}

    def on_progress(stage, step, total, text, elapsed, preview):
        now = time.monotonic()
        if stage != last["stage"] or step == total or now - last["t"] >= every_s:
            print(f"  {elapsed:7.1f}s [{stage} {step}/{total}] {text}", file=stream, flush=True)
            last.update(t=now, stage=stage)

    return JobContext(out, out / ".work", device=device, on_progress=on_progress, log_fn=lambda t: None)


def refine(
    pipeline: str,
    mesh_path: Path,
    refs_path: Path,
    class_word: str,
    out: Path,
    *,
    device: str | None = None,
    models: str | None = None,
    preset: str | None = None,
    eval_views: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict:
    """Run `pipeline` on files; returns the report (also written to out/report.json)."""
    spec = get_pipeline(pipeline)
    device = device or default_device()
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"--device {device}: this machine has no CUDA device")
    mod = sys.modules[spec.run.__module__]
    presets = getattr(mod, "PRESETS", {})
    preset = preset or ("quality" if device.startswith("cuda") else "fast")
    if presets and preset not in presets:
        raise ValueError(f"--preset {preset!r}: this pipeline has {sorted(presets)}")
    settings = merge_config(presets.get(preset, {}), canonical(spec.config_cls, overrides or {}))
    if models:
        settings["models"] = models
    config = config_from_dict(spec.config_cls, settings)
    asset = Asset(read_mesh(mesh_path), tuple(read_transforms(refs_path)), class_word, name=Path(mesh_path).stem)
    truth = read_transforms(eval_views) if eval_views else None
    out.mkdir(parents=True, exist_ok=True)
    ctx = printing_context(out, device)
    report = spec.run(ctx, asset, config, truth) if truth is not None else spec.run(ctx, asset, config)
    if report is None:
        report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else {}
    return report
