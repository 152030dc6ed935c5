"""The colour regions' plain numpy loop (`regions` before it moved to torch), kept as the reference.

gsplat keeps a pure-torch reference beside its CUDA path and tests one against the other; this is the same
for the colour regions: `tests/backend/stages/texture/test_regions_fast.py` holds the fast path (`regions`)
to these functions, and `bench/observe_stage.py` times both in one run. Nothing in a job calls them.
"""

from __future__ import annotations

import numpy as np

from .regions import RegionMap, rgb_to_lab


def reference_membership(rm: RegionMap, rgb: np.ndarray) -> np.ndarray:
    """[N, 3] RGB -> [N, K] soft membership (rows sum to 1), through an [N, K, 3] float64 temporary."""
    lab = rgb_to_lab(rgb)
    d2 = ((lab[:, None, :] - rm.centres[None]) ** 2).sum(-1)
    d2 = d2 - d2.min(1, keepdims=True)
    w = np.exp(-d2 / (2 * rm.sigma**2))
    return w / w.sum(1, keepdims=True)


def reference_apply(rm: RegionMap, rgb: np.ndarray, chunk: int = 262_144) -> np.ndarray:
    """[N, 3] initial RGB in [0, 1] -> [N, 3] mapped (every region's map applied to every texel, [N, K, 3])."""
    out = np.empty_like(rgb, dtype=np.float32)
    for s in range(0, len(rgb), chunk):
        x = rgb[s:s + chunk].astype(np.float64)
        m = reference_membership(rm, x)
        xh = np.concatenate([x, np.ones((len(x), 1))], 1)
        mapped = np.einsum("nd,kde->nke", xh, rm.maps)
        out[s:s + chunk] = np.clip((m[..., None] * mapped).sum(1), 0, 1)
    return out


class ReferenceRegionMap(RegionMap):
    """A RegionMap whose `membership` and `apply` are the numpy reference's."""

    def membership(self, rgb: np.ndarray) -> np.ndarray:
        return reference_membership(self, rgb)

    def apply(self, rgb: np.ndarray, chunk: int = 262_144) -> np.ndarray:
        return reference_apply(self, rgb, chunk)


def reference_learn_regions(initial: np.ndarray, target: np.ndarray, weight: np.ndarray, regions: int = 12,
                            min_texels: int = 200, edge: np.ndarray | None = None, seed: int = 0,
                            max_samples: int = 200_000, softness: float = 0.25, device: str = "cpu",
                            clusters=None) -> RegionMap:
    """`regions.learn_regions` as a loop over the regions in numpy, its k-means run here, in line (same arguments;
    `device` and `clusters` are ignored: the reference runs on the CPU), returning a `ReferenceRegionMap`."""
    import cv2

    rng = np.random.default_rng(seed)
    T = len(initial)
    sample = rng.choice(T, min(T, max_samples), replace=False) if T > max_samples else np.arange(T)
    lab = rgb_to_lab(initial[sample])
    K = int(min(regions, max(1, len(np.unique(np.round(lab), axis=0)))))
    cv2.setRNGSeed(seed)
    _, _, centres = cv2.kmeans(lab.astype(np.float32), K, None,
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1), 3, cv2.KMEANS_PP_CENTERS)
    centres = centres.astype(np.float64)
    if K > 1:
        dc = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1)) + np.eye(K) * 1e9
        sigma = float(max(1.0, softness * np.median(dc.min(1))))
    else:
        sigma = 1e3
    rm = ReferenceRegionMap(centres, sigma, np.zeros((K, 4, 3)), np.zeros(K), np.zeros(K))
    w = weight.astype(np.float64)
    if edge is not None:
        w = w / (1.0 + (edge / 0.05) ** 2)
    obs = np.flatnonzero(w > 0)
    if len(obs) > max_samples:
        obs = rng.choice(obs, max_samples, replace=False)
        w_scale = (w > 0).sum() / max_samples
    else:
        w_scale = 1.0
    x = initial[obs].astype(np.float64)
    y = target[obs].astype(np.float64)
    memb = reference_membership(rm, x) if len(obs) else np.zeros((0, K))
    xh = np.concatenate([x, np.ones((len(x), 1))], 1)
    ident = np.concatenate([np.eye(3), np.zeros((1, 3))])
    lam = float(min_texels)
    for k in range(K):
        wk = memb[:, k] * w[obs] * w_scale
        G = (xh * wk[:, None]).T @ xh
        rm.maps[k] = np.linalg.solve(G + lam * np.eye(4), (xh * wk[:, None]).T @ y + lam * ident)
        rm.support[k] = wk.sum()
    hard = np.argmin(((rgb_to_lab(initial)[:, None, :] - centres[None]) ** 2).sum(-1), 1) if T else np.zeros(0, int)
    rm.texels = np.bincount(hard, minlength=K)
    return rm
