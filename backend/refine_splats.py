"""`likeness3d refine tire --splats PLY|GLOB`: TIRE on a splat-only asset (one 3DGS PLY, or a sequence with the
same Gaussians in every frame). Outputs: splats.ply (the first frame), splats/frame_NNNN.ply (a sequence) and
report.json; everything read and checked before any work."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ..protocol.errors import BadMessage, InvalidAsset
from .inputs.animation import assign_frames
from .inputs.splats import read_splats
from .inputs.transforms import read_transforms

LABEL = ("classical fallback for splat-only input: photos' colours on the Gaussians they see, the others through an "
         "affine colour map learned on those; no views inpainted, not subject-personalised")


def _arrays(ply, sh=None) -> dict:
    return {"means": ply.means, "quats": ply.quats, "log_scales": ply.log_scales,
            "logit_opacities": ply.logit_opacities, "sh": ply.sh if sh is None else sh}


def _tire_config(models: str | None, preset: str | None, device: str, overrides: dict):
    """TIRE's settings for the preset and `--set` (its orbit, LoRA and inpainting strength are what splat-only
    input uses), as `refine tire` takes them; a bad setting is a BadMessage naming it, before any work."""
    from .config import config_from_dict, merge_config
    from .pipelines.tire import PRESETS, TireConfig

    name = preset or ("quality" if device.startswith("cuda") else "fast")
    data = merge_config(merge_config(PRESETS[name], overrides or {}), {"models": models or ""})
    try:
        return config_from_dict(TireConfig, data, "config")
    except ValueError as exc:
        raise BadMessage(f"--set: {exc}", field="--set") from None


def _inpaint(ctx, seq, refs, class_word: str, sh, obs, models: str, cfg, device: str):
    """The views' inpainting of what no photo sees, with the subject-personalised inpainter (`splat_inpaint`)."""
    from .stages.animation.splat_inpaint import SplatViews, inpaint_unobserved
    from .stages.diffusion.components import load_components
    from .stages.diffusion.sample.subject import personalised_inpainter

    inpainter = personalised_inpainter(
        load_components("inpaint", models, device=device), refs, class_word, lora=cfg.lora, resolution=cfg.resolution,
        seed=cfg.seed, progress=lambda step, total, text: ctx.progress("personalise", step, total, f"subject LoRA: {text}"),
        cancel=ctx.check_cancel, publish=ctx.add_artifact, batch_views=cfg.inpaint.batch_views)
    views = SplatViews(cfg.resolution, cfg.azimuths, tuple(cfg.elevations_deg), cfg.fov_deg, cfg.inpaint.strength)
    sh, report = inpaint_unobserved(_arrays(seq.frames[0]), sh, obs, inpainter, views, device=device)
    label = (f"{inpainter.label} on {report['views']} target views of the Gaussians; the Gaussians no photo sees "
             f"take the inpainted views' colours")
    return sh, label, report


def refine_splats(pattern: str, refs_path: Path, class_word: str, out: Path, *, eval_views=None, device=None,
                  models=None, preset=None, overrides=None) -> dict:
    from .model_dirs import configured_models
    from .refine import check_cuda, check_device, check_models, check_out, make_out

    check_device(device)
    check_models(models, False)
    models = configured_models(models)
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    check_cuda(device)
    cfg = _tire_config(models, preset, device, overrides)
    if eval_views:
        raise BadMessage("--eval-views is not available for --splats input yet (it scores textured meshes)",
                         field="--eval-views")
    out = Path(out)
    check_out(out)
    seq = read_splats(pattern)
    refs, unit = assign_frames(read_transforms(refs_path), refs_path, None, "--refs", numbers=seq.numbers, fps=None)
    if not refs:
        raise InvalidAsset(f"--refs {refs_path} holds no photo", field="references")
    make_out(out)

    from .context import JobContext
    from .export.ply import write_ply
    from .stages.animation.splat_colours import observe_gaussians, refit_colours

    t0 = time.monotonic()
    row = {n: i for i, n in enumerate(seq.numbers)} if seq.numbers else {}
    ctx = JobContext(out, out / ".work", device=device)
    frames = [_arrays(seq.frames[row[r.frame]] if r.frame is not None else seq.frames[0]) for r in refs]
    obs = observe_gaussians(frames, refs)
    sh, report = refit_colours(seq.frames[0].sh, obs)
    label, personalised = LABEL, False
    if models:
        sh, label, report["inpainting"] = _inpaint(ctx, seq, refs, class_word, sh, obs, models, cfg, device)
        personalised = True
    ctx.add_artifact("splats.ply", write_ply(None, **_arrays(seq.frames[0], sh)))
    for n, ply in zip(seq.numbers or [], seq.frames):
        ctx.add_artifact(f"splats/frame_{n:04d}.ply", write_ply(None, **_arrays(ply, sh)))
    full = {"pipeline": "tire", "input": "splats", "asset": seq.paths[0].stem, "class_word": class_word,
            "inpainter": label, "personalised": personalised, "frames": seq.numbers, "files": [p.name for p in seq.paths],
            "time_unit": unit, "references": [{"name": r.name, "frame": r.frame} for r in refs], **report,
            "seconds": {"total": round(time.monotonic() - t0, 3)}}
    ctx.add_artifact("report.json", json.dumps(full, indent=1).encode())
    return full


def print_report(report: dict, out: Path) -> None:
    print(f"likeness3d: tire (splat-only input) finished; results in {Path(out).resolve()}")
    print(f"  inpainter: {report['inpainter']}")
    print(f"  {report['observed']} of {report['gaussians']} Gaussians observed by the photos, {report['mapped']} mapped; "
          f"{len(report['frames'] or [])} frames")
    inp = report.get("inpainting")
    if inp:
        print(f"  inpainted {inp['pixels_inpainted']} pixels in {inp['views']} views; {inp['from_inpainted_views']} "
              f"Gaussians took the inpainted colours, {inp['unobserved_not_in_any_view']} seen by no view keep the map")

