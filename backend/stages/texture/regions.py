"""Colour from the right place: how the initial asset's colours map to the references', region by region.

Materials differ (a pink body and grey hooves need different corrections), so one global colour transfer is
wrong for most of them. The initial texture's used texels are clustered by colour (k-means in Lab); each
region learns an affine colour map (initial RGB -> the references' RGB, 3 x 4) on the texels the references
observe, ridge-regularised toward the identity by `region_min_texels`, so a region the references barely
see keeps (nearly) its own colours and one nobody sees keeps them exactly. Texels belong to the regions
softly (Gaussian weights in Lab), so neighbouring colours get neighbouring corrections and no seam appears
where one region meets the next. Pairs on strong edges of the initial texture weigh less: a photo's pixel
straddling an edge is a mix, not a mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb, np.float32).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)


@dataclass
class RegionMap:
    """K colour regions of the initial texture and their colour maps."""

    centres: np.ndarray
    """[K, 3] Lab centres."""
    sigma: float
    """Lab distance scale of the soft membership."""
    maps: np.ndarray
    """[K, 4, 3]: rgb' = [rgb, 1] @ maps[k]."""
    support: np.ndarray
    """[K] observed texels (weighted) each region learned from."""
    texels: np.ndarray
    """[K] used texels in each region (hard assignment)."""

    def membership(self, rgb: np.ndarray) -> np.ndarray:
        """[N, 3] RGB -> [N, K] soft membership (rows sum to 1)."""
        lab = rgb_to_lab(rgb)
        d2 = ((lab[:, None, :] - self.centres[None]) ** 2).sum(-1)
        d2 = d2 - d2.min(1, keepdims=True)
        w = np.exp(-d2 / (2 * self.sigma**2))
        return w / w.sum(1, keepdims=True)

    def apply(self, rgb: np.ndarray, chunk: int = 262_144) -> np.ndarray:
        """[N, 3] initial RGB in [0, 1] -> [N, 3] mapped."""
        out = np.empty_like(rgb, dtype=np.float32)
        for s in range(0, len(rgb), chunk):
            x = rgb[s:s + chunk].astype(np.float64)
            m = self.membership(x)
            xh = np.concatenate([x, np.ones((len(x), 1))], 1)
            mapped = np.einsum("nd,kde->nke", xh, self.maps)
            out[s:s + chunk] = np.clip((m[..., None] * mapped).sum(1), 0, 1)
        return out

    def report(self) -> dict:
        ident = np.concatenate([np.eye(3), np.zeros((1, 3))])
        return {"regions": len(self.centres), "method": "k-means of the initial texture's colours (Lab), an affine "
                "colour map per region learned on the observed surface, ridge toward the identity",
                "per_region": [{"texels": int(n), "observed_support": round(float(s), 1),
                                "change": round(float(np.abs(m - ident).max()), 4),
                                "centre_lab": [round(float(c), 1) for c in ctr]}
                               for n, s, m, ctr in zip(self.texels, self.support, self.maps, self.centres)]}


def learn_regions(initial: np.ndarray, target: np.ndarray, weight: np.ndarray, regions: int = 12,
                  min_texels: int = 200, edge: np.ndarray | None = None, seed: int = 0,
                  max_samples: int = 200_000, softness: float = 0.25) -> RegionMap:
    """initial: [T, 3] the initial texture's used texels (RGB [0, 1]); target: [T, 3] the references' colour;
    weight: [T] >= 0 how much each pair counts (0 = unobserved); edge: [T] >= 0 gradient magnitude of the
    initial texture (pairs on edges weigh less)."""
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
    rm = RegionMap(centres, sigma, np.zeros((K, 4, 3)), np.zeros(K), np.zeros(K))
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
    memb = rm.membership(x) if len(obs) else np.zeros((0, K))
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
