"""Quality over time (4D): the static metrics per evaluated frame, and flicker (mean absolute difference of
consecutive frames seen by one fixed camera) of the refined and initial assets and of the truth."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch

from ....protocol.assets import Mesh, Reference
from ..common.images import float_tensor
from ..quality.evaluate import evaluate
from ..views.cameras import Cameras
from ..views.mesh_passes import mesh_rgba
from ..views.track import KnownView, TrackConfig
from .poses import Animation
from .track import track_over_frames


def _textured(animation: Animation, frame: int | None, texture: np.ndarray) -> Mesh:
    p = animation.posed(frame)
    return Mesh(p.vertices, p.faces, p.uvs, texture)


def evaluate_frames(textures: dict[str, np.ndarray], views: list[Reference], sources: list[KnownView],
                    source_frames: list[int | None], animation: Animation, track: TrackConfig = TrackConfig()) -> dict:
    """textures: {"refined": [Ht, Wt, 4], "initial": ...} on the animated mesh; views: truth views with frames.
    Returns {"per_frame": [{"frame", psnr_observed, ...}], "flicker": {...}} (see evaluate for the names)."""
    by_frame: dict = defaultdict(list)
    for v in views:
        by_frame[v.frame].append(v)
    per_frame = []
    for frame in sorted(by_frame, key=lambda f: (f is not None, f or 0)):
        def observed_by(passes):
            return track_over_frames(passes.tri, passes.bary, passes.mask, sources, source_frames, animation, track).observed[0]

        meshes = {k: _textured(animation, frame, t) for k, t in textures.items()}
        scores = evaluate(meshes, by_frame[frame], sources, track, observed_by=observed_by)
        scores.pop("scores", None)
        per_frame.append({"frame": frame, **scores})
    return {"per_frame": per_frame, "flicker": flicker(textures, views, animation)}


def _frame_difference(a: torch.Tensor, b: torch.Tensor, fg: torch.Tensor) -> tuple[float, int]:
    return float((a - b).abs().mean(-1)[fg].sum()), int(fg.sum())


def flicker(textures: dict[str, np.ndarray], views: list[Reference], animation: Animation) -> dict:
    """Mean absolute RGB difference between consecutive frames of each fixed camera (views sharing one camera),
    over the pixels either frame's truth covers; for each texture and for the truth. The raw figure grows with
    a sharper texture under the same motion, so `temporal_error` also says how far each texture's change between
    frames departs from the truth's (flicker proper: change the motion does not explain)."""
    groups: dict = defaultdict(list)
    for v in views:
        if v.frame is not None:
            key = np.round(np.concatenate([v.camera.w2c.ravel(), v.camera.K.ravel()]), 6).tobytes() + bytes(
                [v.camera.width % 256, v.camera.height % 256])
            groups[key].append(v)
    total = {k: 0.0 for k in list(textures) + ["truth"]}
    excess = {k: 0.0 for k in textures}
    count, pairs = 0, 0
    for members in groups.values():
        members = sorted(members, key=lambda v: v.frame)
        if len(members) < 2:
            continue
        cam = Cameras.from_protocol([members[0].camera])
        renders = {k: [mesh_rgba(_textured(animation, v.frame, t), cam, supersample=2)[0, ..., :3] for v in members]
                   for k, t in textures.items()}
        truth = [float_tensor(v.image) for v in members]
        for i in range(len(members) - 1):
            fg = (truth[i][..., 3] > 0.5) | (truth[i + 1][..., 3] > 0.5)
            s, n = _frame_difference(truth[i][..., :3], truth[i + 1][..., :3], fg)
            total["truth"] += s
            true_change = truth[i + 1][..., :3] - truth[i][..., :3]
            for k in textures:
                total[k] += _frame_difference(renders[k][i], renders[k][i + 1], fg)[0]
                excess[k] += _frame_difference(renders[k][i + 1] - renders[k][i], true_change, fg)[0]
            count += n
            pairs += 1
    if not pairs:
        return {"note": "no fixed camera sees two evaluated frames: flicker needs the same camera at several frames"}
    return {**{k: round(v / max(count, 1), 6) for k, v in total.items()},
            "temporal_error": {k: round(v / max(count, 1), 6) for k, v in excess.items()},
            "temporal_error_means": "mean |(render[t+1] - render[t]) - (truth[t+1] - truth[t])|: the change between "
                                    "frames that the true motion does not explain",
            "pairs": pairs, "cameras": len(groups)}
