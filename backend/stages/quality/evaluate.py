"""Quality against a ground truth: PSNR and SSIM (torchmetrics) on held-out views, split into the region
some reference photo observes and the region that had to be infilled."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from ....protocol.assets import Reference
from ..views.cameras import Cameras
from ..views.mesh_passes import Raycaster, mesh_rgba
from ..views.meshes import MeshLike
from ..views.track import KnownView, TrackConfig, track_backward


def _ssim_map(a: Tensor, b: Tensor) -> Tensor:
    """[H, W] SSIM map of two [H, W, 3] images in [0, 1] (torchmetrics, Gaussian window 11, sigma 1.5)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, full = structural_similarity_index_measure(
        a.permute(2, 0, 1)[None].double(), b.permute(2, 0, 1)[None].double(), data_range=1.0, return_full_image=True
    )
    return full[0].mean(0).float()


def evaluate(
    meshes: dict[str, MeshLike],
    truth_views: list[Reference],
    sources: list[KnownView],
    track: TrackConfig = TrackConfig(),
) -> dict:
    """For each mesh (e.g. {"refined": ..., "initial": ...}), PSNR/SSIM over the truth views' foreground,
    split by whether a source observes the pixel. Keys: psnr_observed, psnr_infilled, ssim_..., and the
    same with the mesh name as suffix for meshes other than "refined"; pixel counts."""
    casters = {k: Raycaster(m) for k, m in meshes.items()}
    first = next(iter(casters.values()))
    sq = {k: {"observed": 0.0, "infilled": 0.0} for k in meshes}
    ss = {k: {"observed": 0.0, "infilled": 0.0} for k in meshes}
    count = {"observed": 0, "infilled": 0}
    for view in truth_views:
        cam = Cameras.from_protocol([view.camera])
        truth = torch.from_numpy(view.image.astype(np.float32) / (255.0 if view.image.dtype == np.uint8 else 1.0))
        passes = first.passes(cam, normals="smooth")
        obs = track_backward(passes.points, passes.normal, passes.mask, sources, track).observed[0]
        fg = passes.mask[0] & (truth[..., 3] > 0.5)
        regions = {"observed": fg & obs, "infilled": fg & ~obs}
        for name, caster in casters.items():
            img = mesh_rgba(caster, cam, supersample=3)[0, ..., :3]
            err = ((img - truth[..., :3]) ** 2).mean(-1)
            smap = _ssim_map(img, truth[..., :3])
            for region, m in regions.items():
                sq[name][region] += float(err[m].sum())
                ss[name][region] += float(smap[m].sum())
        for region, m in regions.items():
            count[region] += int(m.sum())
    out: dict = {"pixels_observed": count["observed"], "pixels_infilled": count["infilled"]}
    for name in meshes:
        suffix = "" if name == "refined" else f"_{name}"
        for region in ("observed", "infilled"):
            n = count[region]
            mse = sq[name][region] / n if n else float("nan")
            out[f"psnr_{region}{suffix}"] = (float("inf") if mse == 0 else -10 * math.log10(mse)) if n else None
            out[f"ssim_{region}{suffix}"] = ss[name][region] / n if n else None
    return out
