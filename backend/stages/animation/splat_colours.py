"""TIRE on Gaussians alone (splat-only assets): each photo observes the Gaussians it sees at its frame, by
Gaussian identity and rendered depth; the colours are refitted once for all frames.

Track: render the frame's Gaussians from the photo's camera (expected depth), project each centre, keep it where
its depth agrees with the rendered depth (not hidden behind other Gaussians) and both the render and the photo
cover the pixel. Refit: an observed Gaussian takes the photos' colour (blended by resolution, 1 / z^2) as its
base colour, view-dependent terms cleared; the others keep their own colours through an affine colour map learned
on the observed Gaussians (the classical stand-in for inpainting: no views are inpainted)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ....protocol.assets import Reference
from ..common.images import float_tensor
from ..splats.gaussians import Gaussians
from ..splats.render import render
from ..views.cameras import Cameras
from ..views.track import project, sample_image

SH_C0 = 0.28209479177387814


@dataclass
class SplatObservation:
    colour: np.ndarray
    """[N, 3] the photos' colour of each Gaussian (0 where none sees it)."""
    weight: np.ndarray
    """[N] summed weights (0 = unobserved)."""
    per_reference: list[int]


def observe_gaussians(frames: list[dict], references: list[Reference], depth_tolerance: float = 0.03) -> SplatObservation:
    """frames[i]: the write_ply arrays of the Gaussians at reference i's frame (means, quats, log_scales,
    logit_opacities, sh)."""
    views = [(Gaussians.from_arrays(arrays), Cameras.from_protocol([ref.camera]), float_tensor(ref.image))
             for arrays, ref in zip(frames, references)]
    return observe_in_views(views, depth_tolerance)


def observe_in_views(views: list[tuple[Gaussians, Cameras, torch.Tensor]], depth_tolerance: float = 0.03,
                     device: str | torch.device = "cpu") -> SplatObservation:
    """Each (Gaussians posed as the image saw them, one camera, [H, W, 4] RGBA image in [0, 1]): the colour the
    images give each Gaussian they see (its centre in front of the rendered depth, both covering the pixel),
    rendered and looked up on `device`."""
    n = len(views[0][0].means)
    acc, wsum, counts = np.zeros((n, 3)), np.zeros(n), []
    for g, cam, photo in views:
        g, cam = g.to(device), cam.to(device)
        with torch.no_grad():
            out = render(g, cam, with_depth=True)
        photo = photo.float().to(device)
        uv, z = project(g.means, cam)
        uv, z = uv[0], z[0]
        H, W = cam.height, cam.width
        inside = (z > 1e-6) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= W - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= H - 0.5)
        sel = inside.nonzero(as_tuple=True)[0]
        depth = sample_image(out.depth[0][..., None], uv[sel], "nearest")[:, 0]
        alpha = sample_image(out.alpha[0][..., None], uv[sel], "nearest")[:, 0]
        rgba = sample_image(photo, uv[sel], "bilinear")
        seen = (alpha > 0.5) & (rgba[:, 3] > 0.5) & (z[sel] <= depth * (1 + depth_tolerance))
        idx = sel[seen].cpu().numpy()
        w = (1.0 / z[sel][seen] ** 2).double().cpu().numpy()
        np.add.at(acc, idx, w[:, None] * rgba[seen, :3].double().cpu().numpy())
        np.add.at(wsum, idx, w)
        counts.append(int(len(idx)))
    colour = np.where(wsum[:, None] > 0, acc / np.maximum(wsum[:, None], 1e-30), 0.0)
    return SplatObservation(colour.astype(np.float32), wsum, counts)


def refit_colours(sh: np.ndarray, obs: SplatObservation) -> tuple[np.ndarray, dict]:
    """[N, K, 3] SH -> refined SH (one set for all frames) and a report."""
    rgb = np.clip(sh[:, 0] * SH_C0 + 0.5, 0, 1)
    seen = obs.weight > 0
    out = sh.copy()
    mapped = rgb
    if seen.sum() >= 8:
        X = np.concatenate([rgb, np.ones((len(rgb), 1))], 1)
        w = np.sqrt(obs.weight[seen] / obs.weight[seen].max())[:, None]
        A, *_ = np.linalg.lstsq(X[seen] * w, obs.colour[seen] * w, rcond=None)
        mapped = np.clip(X @ A, 0, 1)
    new = np.where(seen[:, None], obs.colour, mapped)
    out[:, 0] = (new - 0.5) / SH_C0
    out[seen, 1:] = 0.0
    return out.astype(np.float32), {"gaussians": int(len(sh)), "observed": int(seen.sum()),
                                    "mapped": int((~seen).sum()), "per_reference": obs.per_reference}

