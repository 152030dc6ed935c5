"""Splat-only assets: one 3DGS PLY, or a PLY sequence with the same Gaussians in the same order in every frame
(what 4DGaussians and DreamGaussian4D export), given as a glob (`dir/frame_*.ply`). Frame numbers come from the
digits at the end of each file name (frame_0012.ply is frame 12), else from the files' order."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...protocol.errors import InvalidAsset
from ..export.ply import SplatPly, read_ply

MAX_FRAMES = 10_000


@dataclass
class SplatSequence:
    frames: list[SplatPly]
    """One PLY a frame, the same Gaussians in the same order."""
    numbers: list[int] | None
    """Scene frame numbers, strictly increasing; None for a single static PLY."""
    paths: list[Path]


def read_splats(pattern: str) -> SplatSequence:
    """A PLY file or a glob of PLY files -> SplatSequence; a bad file or differing counts name the file."""
    paths = [Path(p) for p in glob.glob(pattern)] if any(c in pattern for c in "*?[") else [Path(pattern)]
    tail = [re.search(r"(\d+)$", p.stem) for p in paths]
    order = sorted(range(len(paths)), key=lambda i: (int(tail[i].group(1)) if tail[i] else -1, paths[i].name))
    paths = [paths[i] for i in order]
    if not paths or not all(p.is_file() for p in paths):
        missing = next((p for p in paths if not p.is_file()), pattern)
        raise InvalidAsset(f"--splats {pattern!r}: no PLY file {missing} (give a .ply, or a quoted glob such as "
                           "'dir/frame_*.ply')", field="splats")
    if len(paths) > MAX_FRAMES:
        raise InvalidAsset(f"--splats {pattern!r} matches {len(paths)} files; at most {MAX_FRAMES} frames", field="splats")
    frames = []
    for p in paths:
        try:
            ply = read_ply(p)
        except (OSError, ValueError) as exc:
            raise InvalidAsset(f"splat file {p}: {exc}: write it as a binary 3DGS PLY", field="splats") from None
        if not all(np.isfinite(a).all() for a in (ply.means, ply.quats, ply.log_scales, ply.logit_opacities, ply.sh)):
            raise InvalidAsset(f"splat file {p} holds non-finite values", field="splats")
        if frames and len(ply.means) != len(frames[0].means):
            raise InvalidAsset(f"splat file {p} holds {len(ply.means)} Gaussians but {paths[0].name} holds "
                               f"{len(frames[0].means)}: a sequence needs the same Gaussians in the same order in every "
                               "frame", field="splats")
        if frames and ply.sh.shape != frames[0].sh.shape:
            raise InvalidAsset(f"splat file {p} has SH of shape {list(ply.sh.shape[1:])} but {paths[0].name} has "
                               f"{list(frames[0].sh.shape[1:])}", field="splats")
        frames.append(ply)
    if len(paths) == 1:
        return SplatSequence(frames, None, paths)
    digits = [re.search(r"(\d+)$", p.stem) for p in paths]
    numbers = [int(d.group(1)) for d in digits] if all(digits) else list(range(len(paths)))
    if any(b <= a for a, b in zip(numbers, numbers[1:])):
        numbers = list(range(len(paths)))
    return SplatSequence(frames, numbers, paths)
