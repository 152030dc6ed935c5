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
import torch
from torch import Tensor

def _chunk(device: torch.device) -> int:
    """Texels whose [n, K] float64 memberships are computed at once: 32k on the CPU (8 MiB at K = 32, in cache:
    3-5x faster than 256k there), 1M on a GPU."""
    return 32_768 if device.type == "cpu" else 1_048_576


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(rgb, np.float32).reshape(-1, 1, 3), cv2.COLOR_RGB2LAB).reshape(-1, 3)


def _lab_d2(lab: Tensor, centres: Tensor) -> Tensor:
    """[N, 3] Lab, [K, 3] centres -> [N, K] float64 squared distances, a channel at a time (no [N, K, 3])."""
    d2 = (lab[:, 0:1] - centres[None, :, 0]).square_()
    for c in (1, 2):
        d2 += (lab[:, c:c + 1] - centres[None, :, c]).square_()
    return d2


def _soft(d2: Tensor, sigma: float) -> Tensor:
    """[N, K] squared distances (overwritten) -> [N, K] soft membership (rows sum to 1)."""
    w = d2.sub_(d2.amin(1, keepdim=True)).div_(-2 * sigma**2).exp_()
    return w.div_(w.sum(1, keepdim=True))


def _lab_tensor(rgb: np.ndarray, device: torch.device) -> Tensor:
    return torch.as_tensor(rgb_to_lab(rgb), device=device).double()


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
    device: str = "cpu"
    """Where `membership` and `apply` compute (the job's torch device), in float64."""

    def _centres(self) -> Tensor:
        return torch.as_tensor(np.asarray(self.centres, np.float64), device=self.device)

    def membership(self, rgb: np.ndarray) -> np.ndarray:
        """[N, 3] RGB -> [N, K] soft membership (rows sum to 1)."""
        return _soft(_lab_d2(_lab_tensor(rgb, torch.device(self.device)), self._centres()), self.sigma).cpu().numpy()

    def apply(self, rgb: np.ndarray, chunk: int | None = None) -> np.ndarray:
        """[N, 3] initial RGB in [0, 1] -> [N, 3] mapped: sum_k m_k [rgb, 1] @ maps[k], as four [N, K] @ [K, 3]
        products (one a row of the affine maps), never an [N, K, 3] temporary."""
        dev = torch.device(self.device)
        centres = self._centres()
        maps = torch.as_tensor(np.asarray(self.maps, np.float64), device=dev)  # [K, 4, 3]
        out = np.empty((len(rgb), 3), np.float32)
        chunk = chunk or _chunk(dev)
        for s in range(0, len(rgb), chunk):
            part = rgb[s:s + chunk]
            x = torch.as_tensor(np.asarray(part, np.float64), device=dev)
            m = _soft(_lab_d2(_lab_tensor(part, dev), centres), self.sigma)  # [n, K]
            mapped = m @ maps[:, 3]
            for d in range(3):
                mapped += x[:, d:d + 1] * (m @ maps[:, d])
            out[s:s + chunk] = mapped.clamp_(0, 1).cpu().numpy()
        return out

    def report(self) -> dict:
        ident = np.concatenate([np.eye(3), np.zeros((1, 3))])
        return {"regions": len(self.centres), "method": "k-means of the initial texture's colours (Lab), an affine "
                "colour map per region learned on the observed surface, ridge toward the identity",
                "per_region": [{"texels": int(n), "observed_support": round(float(s), 1),
                                "change": round(float(np.abs(m - ident).max()), 4),
                                "centre_lab": [round(float(c), 1) for c in ctr]}
                               for n, s, m, ctr in zip(self.texels, self.support, self.maps, self.centres)]}


@dataclass
class Clusters:
    """The k-means of the initial texture's colours: what `learn_regions` starts from. It needs no photo, so a
    job computes it on a host thread while the photos are prepared (`cluster_colours`)."""

    centres: np.ndarray
    """[K, 3] float64 Lab centres."""
    sigma: float
    """Lab distance scale of the soft membership."""
    rng: np.random.Generator
    """The generator that drew the k-means' subsample, continued by the subsample of observed pairs."""


def cluster_colours(initial: np.ndarray, regions: int = 12, seed: int = 0, max_samples: int = 200_000,
                    softness: float = 0.25) -> Clusters:
    """initial: [T, 3] the initial texture's used texels (RGB [0, 1]) -> K <= `regions` Lab clusters (OpenCV's
    k-means on at most `max_samples` of them). Thread-safe: OpenCV's RNG is the calling thread's."""
    import cv2

    rng = np.random.default_rng(seed)
    T = len(initial)
    sample = rng.choice(T, min(T, max_samples), replace=False) if T > max_samples else np.arange(T)
    lab = rgb_to_lab(initial[sample])
    K = int(min(regions, max(1, _distinct_colours(lab))))
    cv2.setRNGSeed(seed)
    _, _, centres = cv2.kmeans(lab.astype(np.float32), K, None,
                               (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 30, 0.1), 3, cv2.KMEANS_PP_CENTERS)
    centres = centres.astype(np.float64)
    if K > 1:
        dc = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1)) + np.eye(K) * 1e9
        sigma = float(max(1.0, softness * np.median(dc.min(1))))
    else:
        sigma = 1e3
    return Clusters(centres, sigma, rng)


def learn_regions(initial: np.ndarray, target: np.ndarray, weight: np.ndarray, regions: int = 12,
                  min_texels: int = 200, edge: np.ndarray | None = None, seed: int = 0,
                  max_samples: int = 200_000, softness: float = 0.25, device: str = "cpu",
                  clusters: Clusters | None = None) -> RegionMap:
    """initial: [T, 3] the initial texture's used texels (RGB [0, 1]); target: [T, 3] the references' colour;
    weight: [T] >= 0 how much each pair counts (0 = unobserved); edge: [T] >= 0 gradient magnitude of the
    initial texture (pairs on edges weigh less). `device`: where the memberships and the regions' least squares
    are computed (the job's; float64 there). `clusters`: `cluster_colours` of the same initial, regions, seed,
    max_samples and softness, when computed beforehand (else computed here)."""
    if clusters is None:
        clusters = cluster_colours(initial, regions, seed, max_samples, softness)
    rng, centres, sigma = clusters.rng, clusters.centres, clusters.sigma
    T, K = len(initial), len(centres)
    rm = RegionMap(centres, sigma, np.zeros((K, 4, 3)), np.zeros(K), np.zeros(K), str(device))
    w = weight.astype(np.float64)
    if edge is not None:
        w = w / (1.0 + (edge / 0.05) ** 2)
    obs = np.flatnonzero(w > 0)
    if len(obs) > max_samples:
        obs = rng.choice(obs, max_samples, replace=False)
        w_scale = (w > 0).sum() / max_samples
    else:
        w_scale = 1.0
    dev = torch.device(device)
    c = torch.as_tensor(centres, device=dev)
    # every region's weighted normal equations at once: G[k] = sum_n wk[n, k] xh[n] xh[n]^T, B[k] = sum_n wk xh y^T
    G, B = torch.zeros(K, 16, dtype=torch.float64, device=dev), torch.zeros(K, 12, dtype=torch.float64, device=dev)
    step = _chunk(dev)
    for s in range(0, len(obs), step):
        o = obs[s:s + step]
        x = torch.as_tensor(initial[o].astype(np.float64), device=dev)
        y = torch.as_tensor(target[o].astype(np.float64), device=dev)
        wk = _soft(_lab_d2(_lab_tensor(initial[o], dev), c), sigma) * torch.as_tensor(w[o], device=dev)[:, None] * w_scale
        xh = torch.cat([x, torch.ones_like(x[:, :1])], 1)  # [n, 4]
        G += wk.T @ (xh[:, :, None] * xh[:, None, :]).reshape(-1, 16)
        B += wk.T @ (xh[:, :, None] * y[:, None, :]).reshape(-1, 12)
        rm.support += wk.sum(0).cpu().numpy()
    ident = torch.cat([torch.eye(3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)]).to(dev)
    lam = float(min_texels)
    eye = torch.eye(4, dtype=torch.float64, device=dev)
    rm.maps = torch.linalg.solve(G.reshape(K, 4, 4) + lam * eye, B.reshape(K, 4, 3) + lam * ident).cpu().numpy()
    counts = torch.zeros(K, dtype=torch.int64, device=dev)
    for s in range(0, T, step):
        hard = _lab_d2(_lab_tensor(initial[s:s + step], dev), c).argmin(1)
        counts += torch.bincount(hard, minlength=K)
    rm.texels = counts.cpu().numpy()
    return rm


def _distinct_colours(lab: np.ndarray) -> int:
    """Distinct colours of [N, 3] Lab rounded to integers (np.unique of the rows, as one int64 key each)."""
    r = np.round(lab).astype(np.int64) + 512  # L in [0, 100], a and b in [-128, 127]
    return len(np.unique((r[:, 0] << 20) | (r[:, 1] << 10) | r[:, 2]))
