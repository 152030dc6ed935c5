"""`likeness3d refine PIPELINE ...`: the server's pipelines on local files, with no server (scripts, tests,
the demo). Inputs: a mesh file and nerfstudio transforms.json camera sets; outputs land in --out.

Everything a user hands over is checked first, without torch (`prepare`: the flags, the config, the files,
the asset), so a bad argument is answered in about a second, before the slow imports and any work."""

from __future__ import annotations

import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..protocol.assets import Asset, Reference
from ..protocol.errors import BadMessage, InvalidAsset, ModelMissing
from .config import canonical, config_from_dict, merge_config
from .context import JobContext
from .inputs.animation import assign_frames, attach_cache, parse_frames, select_frames
from .inputs.budget import fit_references
from .inputs.mesh import read_mesh
from .inputs.transforms import read_transforms
from .pipelines import get_pipeline

_DEVICE = re.compile(r"^(cpu|cuda(:\d{1,2})?)$")


def default_device() -> str:
    try:
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        return "cpu"


def _likely_device() -> str:
    """The default device guessed without torch (an NVIDIA driver is present), for checking the config early."""
    return "cuda" if Path("/dev/nvidiactl").exists() and os.environ.get("CUDA_VISIBLE_DEVICES", "0") not in ("", "-1") else "cpu"


def check_device(device: str | None) -> None:
    if device is not None and not (isinstance(device, str) and _DEVICE.match(device)):
        raise BadMessage(f"--device {device!r} is not a device: use cpu, cuda (the first GPU) or cuda:N", field="--device")


def check_cuda(device: str) -> None:
    """After the checks: torch says whether `device` exists."""
    if not device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise BadMessage(f"--device {device}: this machine has no CUDA device; use --device cpu", field="--device")
    index = int(device.partition(":")[2] or 0)
    if index >= torch.cuda.device_count():
        raise BadMessage(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s), "
                         f"cuda:0 to cuda:{torch.cuda.device_count() - 1}", field="--device")


def check_out(out: Path) -> None:
    """--out must be (or become) a folder this process can write: refused before any work when it cannot."""
    if out.exists() and not out.is_dir():
        raise BadMessage(f"--out {out} is a file: name a folder for the results (it is created when missing)", field="--out")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadMessage(f"--out {out}: {parent} is a file, so no folder can be made under it: name another folder",
                         field="--out")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadMessage(f"--out {out}: {parent} is not writable by this user: name a folder you can write to", field="--out")


def make_out(out: Path) -> None:
    """Create --out and prove it is writable (a read-only file system, /proc, ...)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".likeness3d-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise BadMessage(f"--out {out}: cannot write there ({exc.strerror or exc}): name a folder you can write to",
                         field="--out") from None


def check_models(models: str | None, required: bool) -> None:
    from .model_dirs import TINY, configured_models

    value = configured_models(models)
    where = "--models" if models else "$LIKENESS3D_MODELS"
    if value and value != TINY:
        folder = Path(value).expanduser()
        if not folder.is_dir():
            raise ModelMissing(f"{where} {value}: no such folder; name a folder of diffusers-layout models "
                               "(or 'tiny' for a smoke run)", field="models")
    elif not value and required:
        raise ModelMissing("customize needs diffusion models (score distillation has no classical fallback): pass "
                           "--models DIR (a diffusers-layout text-to-image model for role 'base') or set "
                           "LIKENESS3D_MODELS; --models tiny runs a smoke test; the tire pipeline runs without models",
                           field="models")


@dataclass
class Plan:
    """A checked `refine`: everything read and validated, nothing run."""

    spec: Any
    config: Any
    asset: Asset
    truth: list[Reference] | None
    out: Path
    device: str | None
    preset: str | None
    settings: dict
    gltf_source: Path | None = None
    """An animated glTF input: mesh.glb is this file with only its base-colour image replaced."""


def prepare(
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
    cache: Path | None = None,
    frames: str | None = None,
) -> Plan:
    """Check every argument and read every file (no torch); raises a typed error naming the flag or the
    file, the field and what to do."""
    check_device(device)
    spec = get_pipeline(pipeline)
    mod = sys.modules[spec.run.__module__]
    presets = getattr(mod, "PRESETS", {})
    if presets and preset is not None and preset not in presets:
        raise BadMessage(f"--preset {preset!r}: the {pipeline} pipeline has {sorted(presets)}", field="--preset")
    out = Path(out)
    check_out(out)
    overrides = canonical(spec.config_cls, overrides or {})
    guess = device or _likely_device()
    chosen = preset or ("quality" if guess.startswith("cuda") else "fast")
    settings = merge_config(presets.get(chosen, {}), overrides)
    if models:
        settings["models"] = models
    config = config_from_dict(spec.config_cls, settings)
    if hasattr(config, "models"):
        check_models(getattr(config, "models") or None, getattr(mod, "MODELS_REQUIRED", False))
    if not isinstance(class_word, str) or not class_word.strip():
        raise InvalidAsset(f"--class {class_word!r}: give the subject's class word (cat, sneaker)", field="class_word")
    frame_range = parse_frames(frames)
    mesh = read_mesh(mesh_path, frame_range)
    if cache is not None and mesh.frames is not None:
        raise BadMessage(f"--cache {cache}: the mesh {mesh_path} is animated already (a glTF with animations); give "
                         "one of the two", field="--cache")
    if cache is not None:
        mesh = attach_cache(mesh, cache)
    mesh = select_frames(mesh, frame_range, str(cache or mesh_path))
    refs, time_unit = assign_frames(read_transforms(refs_path), refs_path, mesh, "--refs")
    refs = tuple(refs)
    try:
        asset = Asset(mesh, refs, class_word, name=Path(mesh_path).stem[:200] or "asset")
    except InvalidAsset as exc:
        raise InvalidAsset(f"{exc.message} (from --mesh {mesh_path} and --refs {refs_path})", field=exc.field) from None
    if pipeline in ("tire", "customize"):  # the refinements' own first check, here before any import
        from .pipelines.common import check_refinable

        try:
            check_refinable(asset, pipeline)
        except InvalidAsset as exc:
            raise InvalidAsset(f"{exc.message} (from --mesh {mesh_path} and --refs {refs_path})", field=exc.field) from None
    asset = fit_references(asset, config)  # no larger than the job uses, before any work
    truth = assign_frames(read_transforms(eval_views), eval_views, mesh, "--eval-views")[0] if eval_views else None
    if device is not None:
        check_cuda(device)  # imports torch, after every other check
    make_out(out)
    animated_gltf = mesh.frames is not None and cache is None and Path(mesh_path).suffix.lower() in (".glb", ".gltf")
    return Plan(spec, config, asset, truth, out, device, preset, overrides | ({"models": models} if models else {}),
                Path(mesh_path) if animated_gltf else None)


def printing_context(out: Path, device: str, every_s: float = 1.0, stream=sys.stdout) -> JobContext:
    """A JobContext that prints progress lines (at most one a second, plus each stage's last step)."""
    last = {"t": 0.0, "stage": None}

    def on_progress(stage, step, total, text, elapsed, preview):
        now = time.monotonic()
        if stage != last["stage"] or step == total or now - last["t"] >= every_s:
            print(f"  {elapsed:7.1f}s [{stage} {step}/{total}] {text}", file=stream, flush=True)
            last.update(t=now, stage=stage)

    return JobContext(out, out / ".work", device=device, on_progress=on_progress, log_fn=lambda t: None)


def run_plan(plan: Plan) -> dict:
    """Run a checked plan (imports torch); returns the report (also written to out/report.json)."""
    device = plan.device or default_device()
    check_cuda(device)
    config = plan.config
    if plan.preset is None and device.startswith("cuda") != (plan.device or _likely_device()).startswith("cuda"):
        presets = getattr(sys.modules[plan.spec.run.__module__], "PRESETS", {})
        chosen = "quality" if device.startswith("cuda") else "fast"
        config = config_from_dict(plan.spec.config_cls, merge_config(presets.get(chosen, {}), plan.settings))
    ctx = printing_context(plan.out, device)
    spec = plan.spec
    report = spec.run(ctx, plan.asset, config, plan.truth) if plan.truth is not None else spec.run(ctx, plan.asset, config)
    if report is None:
        path = plan.out / "report.json"
        report = json.loads(path.read_text()) if path.exists() else {}
    if plan.gltf_source is not None and (plan.out / "texture.png").is_file():
        from .export.gltf_replace import replace_base_colour

        ctx.add_artifact("mesh.glb", replace_base_colour(plan.gltf_source, (plan.out / "texture.png").read_bytes()))
    return report


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
    cache: Path | None = None,
    frames: str | None = None,
) -> dict:
    """Run `pipeline` on files; returns the report (also written to out/report.json)."""
    plan = prepare(pipeline, mesh_path, refs_path, class_word, out, device=device, models=models, preset=preset,
                   eval_views=eval_views, overrides=overrides, cache=cache, frames=frames)
    return run_plan(plan)
