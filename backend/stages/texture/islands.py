"""Hidden colours with no observed counterpart, on a partly observed UV island: the island's palette.

The colour regions (`regions`) correct a hidden texel by what the photos say about texels of its colour. A
hidden colour no observed texel has (a generator painted the back of a pink body grey-white) has no such
evidence. If its UV island is partly observed, the island is one part of the asset (one material, mostly),
and what the photos show of it is the best evidence of what the rest looks like: the island's hidden part's
Lab mean and spread are mapped to those the references show on the island (Reinhard et al. 2001), and that
mapping moves those texels in proportion to how far their colour lies from every observed colour. Islands no photo sees keep their colours.
"""

from __future__ import annotations

import numpy as np

from .regions import rgb_to_lab


def island_labels(covered: np.ndarray) -> np.ndarray:
    """[Ht, Wt] int32 connected UV islands (8-connected used texels), 0 outside."""
    import cv2

    _, labels = cv2.connectedComponents(covered.astype(np.uint8), connectivity=8)
    return labels


def island_palette(initial: np.ndarray, mapped: np.ndarray, observed_colour: np.ndarray, confidence: np.ndarray,
                   islands: np.ndarray, radius: float = 6.0, min_texels: int = 50) -> tuple[np.ndarray, dict]:
    """initial, mapped, observed_colour: [T, 3] RGB; confidence [T]; islands [T] labels. Returns (mapped with
    the unmatched hidden texels of partly observed islands moved to the island's observed palette, report)."""
    import cv2
    from scipy.spatial import cKDTree

    seen = confidence >= 1
    hidden = confidence <= 0
    out = mapped.copy()
    if seen.sum() < min_texels or not hidden.any():
        return out, {"islands_recoloured": 0, "texels_recoloured": 0}
    lab_init = rgb_to_lab(initial)
    idx = np.flatnonzero(seen)
    if len(idx) > 100_000:
        idx = np.random.default_rng(0).choice(idx, 100_000, replace=False)
    dist, _ = cKDTree(lab_init[idx]).query(lab_init[hidden], k=1)
    far = np.zeros(len(initial))
    far[hidden] = np.clip((dist - radius) / radius, 0, 1)
    lab_obs = rgb_to_lab(observed_colour)
    lab_map = rgb_to_lab(mapped)
    done, moved = 0, 0
    for isl in np.unique(islands[hidden & (far > 0)]):
        o = seen & (islands == isl)
        h = hidden & (islands == isl) & (far > 0)
        if o.sum() < min_texels or h.sum() < 1:
            continue
        mu_o, sd_o = lab_obs[o].mean(0), lab_obs[o].std(0) + 1e-3
        src = lab_map[h]
        whole = lab_map[hidden & (islands == isl)]  # the island's hidden part, matched colours included
        mu_h, sd_h = whole.mean(0), whole.std(0) + 1e-3
        moved_lab = (src - mu_h) / sd_h * np.minimum(sd_o, 2 * sd_h) + mu_o
        rgb = cv2.cvtColor(moved_lab.astype(np.float32).reshape(-1, 1, 3), cv2.COLOR_LAB2RGB).reshape(-1, 3)
        t = far[h][:, None]
        out[h] = np.clip((1 - t) * mapped[h] + t * rgb, 0, 1)
        done += 1
        moved += int(h.sum())
    return out, {"islands_recoloured": done, "texels_recoloured": moved}
