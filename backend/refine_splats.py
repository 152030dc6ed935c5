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


def refine_splats(pattern: str, refs_path: Path, class_word: str, out: Path, *, eval_views=None, device=None) -> dict:
    from .refine import check_device, check_out, make_out

    check_device(device)
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
    ctx = JobContext(out, out / ".work", device=device or "cpu")
    frames = [_arrays(seq.frames[row[r.frame]] if r.frame is not None else seq.frames[0]) for r in refs]
    obs = observe_gaussians(frames, refs)
    sh, report = refit_colours(seq.frames[0].sh, obs)
    ctx.add_artifact("splats.ply", write_ply(None, **_arrays(seq.frames[0], sh)))
    for n, ply in zip(seq.numbers or [], seq.frames):
        ctx.add_artifact(f"splats/frame_{n:04d}.ply", write_ply(None, **_arrays(ply, sh)))
    full = {"pipeline": "tire", "input": "splats", "asset": seq.paths[0].stem, "class_word": class_word,
            "inpainter": LABEL, "personalised": False, "frames": seq.numbers, "files": [p.name for p in seq.paths],
            "time_unit": unit, "references": [{"name": r.name, "frame": r.frame} for r in refs], **report,
            "seconds": {"total": round(time.monotonic() - t0, 3)}}
    ctx.add_artifact("report.json", json.dumps(full, indent=1).encode())
    return full


def print_report(report: dict, out: Path) -> None:
    print(f"likeness3d: tire (splat-only input) finished; results in {Path(out).resolve()}")
    print(f"  inpainter: {report['inpainter']}")
    print(f"  {report['observed']} of {report['gaussians']} Gaussians observed by the photos, {report['mapped']} mapped; "
          f"{len(report['frames'] or [])} frames")

