"""Hidden colours that continue an observed material under a colour cast (issue: "body grey-white where the
truth is pink").

A generator often gets the hidden part of a material right in its pattern but wrong in its colour: a cast,
washed out, tinted, growing with the distance from what it was shown. The initial texture is cut into
material regions: texels linked to their surface neighbours (in the UV image, and across UV seams in 3D)
where their colours differ by less than `edge_de` (Lab), so a region follows smooth shading and smooth casts
but stops at a material's or a glyph's edge. In a region that the references observe in part, the hidden
texels are banded by their 3D distance from the observed ones; each band's Lab distribution is compared with
what the references show of the region, and where a per-channel gain and offset in Lab (a mean and spread
match) explains the difference - the standardised distributions (their quantiles) agree within `shape_tol` -
the band is moved to the observed statistics. A band whose distribution has another shape (a sign's other
face, other colours) is left alone, as is a region nobody observes. The per-band transforms are interpolated
over the distance from the identity at the observed boundary, so the change fades in without a seam.
"""

from __future__ import annotations

import numpy as np

from .regions import rgb_to_lab

QUANTILES = np.linspace(0.1, 0.9, 9)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(lab, np.float32).reshape(-1, 1, 3), cv2.COLOR_LAB2RGB).reshape(-1, 3)


def material_regions(surface, lab: np.ndarray, edge_de: float) -> np.ndarray:
    """[T] region label of every used texel: connected by neighbours closer than `edge_de` in Lab."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    T = len(surface)
    index = surface.scatter(np.arange(T), -1)
    pairs = []
    for a, b in ((index[:, :-1], index[:, 1:]), (index[:-1], index[1:])):
        m = (a >= 0) & (b >= 0)
        pairs.append(np.stack([a[m], b[m]], 1))
    pts = surface.points.numpy().astype(np.float64)
    grid = np.concatenate(pairs) if pairs else np.zeros((0, 2), int)
    if len(grid):
        spacing = float(np.median(np.linalg.norm(pts[grid[:, 0]] - pts[grid[:, 1]], axis=1)))
        # texels on an island's border: linked in 3D to the texels across the UV seam
        cov = surface.covered
        inner = np.zeros_like(cov)
        inner[1:-1, 1:-1] = cov[1:-1, 1:-1] & cov[:-2, 1:-1] & cov[2:, 1:-1] & cov[1:-1, :-2] & cov[1:-1, 2:]
        border = np.flatnonzero(~surface.gather(inner))
        if len(border) > 1 and spacing > 0:
            seam = cKDTree(pts[border]).query_pairs(1.5 * spacing, output_type="ndarray")
            grid = np.concatenate([grid, border[seam]])
        close = np.linalg.norm(lab[grid[:, 0]] - lab[grid[:, 1]], axis=1) < edge_de
        grid = grid[close]
    g = coo_matrix((np.ones(len(grid)), (grid[:, 0], grid[:, 1])), shape=(T, T))
    return connected_components(g, directed=False)[1]


def _z_quantiles(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return np.quantile((x - mu) / sd, QUANTILES, axis=0)


def _hue_gap(a: np.ndarray, b: np.ndarray, grey_chroma: float) -> float:
    """Degrees between the hues of two Lab colours; 0 when either is (nearly) grey (no hue to keep)."""
    ca, cb = np.hypot(a[1], a[2]), np.hypot(b[1], b[2])
    if min(ca, cb) < grey_chroma:
        return 0.0
    d = abs(np.degrees(np.arctan2(a[2], a[1]) - np.arctan2(b[2], b[1]))) % 360
    return float(min(d, 360 - d))


def continue_colours(surface, initial: np.ndarray, infill: np.ndarray, target: np.ndarray, observed: np.ndarray,
                     edge_de: float = 6.0, bands: int = 6, min_texels: int = 100, shape_tol: float = 0.35,
                     min_shift_de: float = 2.0, max_hue_deg: float = 45.0, grey_chroma: float = 10.0) -> tuple[np.ndarray, dict]:
    """initial, infill, target: [T, 3] RGB (the initial texture, the current infill, the references' colour);
    observed [T] bool. A band whose mean hue is more than `max_hue_deg` from the observed mean's (both chromas
    above `grey_chroma`) is another colour, not a cast of it (a cast, a wash-out, a tint keeps the hue or turns
    it grey), and is left alone. Returns (the infill with the hidden bands that continue an observed region moved,
    report)."""
    from scipy.spatial import cKDTree

    lab = rgb_to_lab(initial)
    labels = material_regions(surface, lab, edge_de)
    tlab = rgb_to_lab(target)
    flab = rgb_to_lab(infill)  # the bands continue from the current infill (the region maps' correction kept)
    out = infill.copy()
    pts = surface.points.numpy().astype(np.float64)
    per_region, moved = [], 0
    order = np.argsort(labels, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0])
    for s, e in zip(starts, np.r_[starts[1:], len(order)]):
        members = order[s:e]
        obs, hid = members[observed[members]], members[~observed[members]]
        if len(obs) < min_texels or len(hid) < min_texels:
            continue
        mu_o, sd_o = tlab[obs].mean(0), np.maximum(tlab[obs].std(0), 1.0)
        q_o = _z_quantiles(tlab[obs], mu_o, sd_o)
        dist = cKDTree(pts[obs]).query(pts[hid])[0]
        nb = int(max(1, min(bands, len(hid) // min_texels)))
        edges = np.quantile(dist, np.linspace(0, 1, nb + 1))
        which = np.clip(np.searchsorted(edges, dist, side="right") - 1, 0, nb - 1)
        centres, gains, offsets, rows = [], [], [], []
        for b in range(nb):
            sel = hid[which == b]
            if len(sel) < min_texels // 2:
                continue
            x = flab[sel]
            mu_b, sd_b = x.mean(0), np.maximum(x.std(0), 1.0)
            shape = float(np.abs(_z_quantiles(x, mu_b, sd_b) - q_o).mean())
            shift = float(np.linalg.norm(mu_b - mu_o))
            hue = _hue_gap(mu_b, mu_o, grey_chroma)
            ok = shape <= shape_tol and shift >= min_shift_de and hue <= max_hue_deg
            gain = np.clip(sd_o / sd_b, 1 / 3, 3) if ok else np.ones(3)
            offset = (mu_o - gain * mu_b) if ok else np.zeros(3)
            centres.append(float(np.median(dist[which == b])))
            gains.append(gain)
            offsets.append(offset)
            rows.append({"band": b, "texels": int(len(sel)), "distance_m": round(centres[-1], 4),
                         "shift_de": round(shift, 2), "shape": round(shape, 3), "hue_gap_deg": round(hue, 1),
                         "moved": bool(ok)})
        if not any(r["moved"] for r in rows):
            per_region.append({"texels": int(len(members)), "observed": int(len(obs)), "hidden": int(len(hid)),
                               "moved": 0, "bands": rows})
            continue
        # the identity at the observed boundary: the change fades in with the distance, no seam
        centres = [0.0] + centres
        gains, offsets = np.asarray([np.ones(3)] + gains), np.asarray([np.zeros(3)] + offsets)
        g = np.stack([np.interp(dist, centres, gains[:, c]) for c in range(3)], 1)
        o = np.stack([np.interp(dist, centres, offsets[:, c]) for c in range(3)], 1)
        new = lab_to_rgb(flab[hid] * g + o)
        out[hid] = np.clip(new, 0, 1)
        n = int(sum(r["texels"] for r in rows if r["moved"]))
        moved += n
        per_region.append({"texels": int(len(members)), "observed": int(len(obs)), "hidden": int(len(hid)),
                           "moved": n, "bands": rows})
    return out, {"method": "hidden bands of partly observed material regions moved to the observed Lab mean and "
                 "spread where the distributions' shapes agree", "regions": int(labels.max() + 1) if len(labels) else 0,
                 "regions_considered": len(per_region), "texels_moved": moved,
                 "per_region": sorted(per_region, key=lambda r: -r["texels"])[:16]}
