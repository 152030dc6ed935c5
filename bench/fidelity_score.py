"""The fidelity benchmark's scores: per-pixel regions of the evaluation views (ray cast with Embree from the
same cameras Blender renders, and checked against Blender's own silhouettes) and PSNR / SSIM per region.

Regions, over the true render's foreground: `observed` = the pixel's surface point is seen by some
reference (unoccluded, in its frame, within acos(0.2) = 78 degrees of the normal), `infilled` = the rest,
`all` = both. PSNR pools the squared error of every view's pixels of a region (colours premultiplied by the
true render's alpha); SSIM (the product's one SSIM, 11 px Gaussian window) is averaged over those pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fidelity_geometry import Caster

REGIONS = ("observed", "infilled", "all")
OBSERVED_MIN_COSINE = 0.2


def load_rgba(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGBA"), np.float64) / 255.0


def regions(case, truth_renders: list[np.ndarray]) -> tuple[list[dict], float]:
    """Per evaluation view {region: [H, W] bool}, and the fraction of pixels where the ray-cast silhouette
    and Blender's (alpha > 0.5) disagree (a check that both see the same cameras)."""
    caster = Caster(case.part)
    out, differ, union = [], 0, 0
    for cam, truth in zip(case.evals, truth_renders):
        hit, point, normal = caster.pixels(cam)
        blender_fg = truth[..., 3] > 0.5
        differ += int((hit != blender_fg).sum())
        union += int((hit | blender_fg).sum())
        fg = hit & blender_fg
        seen = np.zeros(hit.shape, bool)
        seen[fg] = caster.seen_by(point[fg], normal[fg], case.refs, OBSERVED_MIN_COSINE)
        out.append({"observed": fg & seen, "infilled": fg & ~seen, "all": fg})
    return out, differ / max(union, 1)


def _premultiplied(img: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return img[..., :3] * alpha[..., None]


def score(truth_renders, renders, masks) -> dict:
    """{region: {"psnr", "ssim", "pixels"}} of `renders` against `truth_renders` over `masks`."""
    import torch

    from likeness3d.backend.stages.quality.metrics import mse_to_psnr, ssim_map

    sq = {r: 0.0 for r in REGIONS}
    ss = {r: 0.0 for r in REGIONS}
    n = {r: 0 for r in REGIONS}
    for truth, img, mask in zip(truth_renders, renders, masks):
        a = truth[..., 3]
        t, x = _premultiplied(truth, a), _premultiplied(img, a)
        err = ((x - t) ** 2).mean(-1)
        smap = ssim_map(torch.from_numpy(x)[None], torch.from_numpy(t)[None])[0].numpy()
        for r in REGIONS:
            m = mask[r]
            sq[r] += float(err[m].sum())
            ss[r] += float(smap[m].sum())
            n[r] += int(m.sum())
    return {r: {"psnr": mse_to_psnr(sq[r] / n[r]) if n[r] else None, "ssim": ss[r] / n[r] if n[r] else None,
                "pixels": n[r]} for r in REGIONS}
