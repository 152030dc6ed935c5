"""Textures of the fidelity benchmark, painted in code: patterns on UV islands (smooth waves, spots, bands,
text-like glyph rows), and the damages an initial asset's hidden side gets (colour cast, blur, hue shift,
washed-out, wrong detail), blended in by a per-texel weight.

Textures are float RGB [H, W, 3] in [0, 1], rows top-down (row 0 = v 1), until `to_rgba8`.
"""

from __future__ import annotations

import numpy as np

from fidelity_geometry import Rect


def island_grid(height: int, width: int, rect: Rect, pad_px: int = 3):
    """(mask [H, W], uu [N], vv [N]): texels whose centres fall in `rect` widened by `pad_px` texels, with
    their island coordinates (0..1 from (u0, v0) to (u1, v1); a mirrored rect runs u backwards)."""
    u0, v0, u1, v1 = rect
    u = (np.arange(width) + 0.5) / width
    v = 1.0 - (np.arange(height) + 0.5) / height
    pu, pv = pad_px / width, pad_px / height
    in_u = (u >= min(u0, u1) - pu) & (u <= max(u0, u1) + pu)
    in_v = (v >= min(v0, v1) - pv) & (v <= max(v0, v1) + pv)
    mask = in_v[:, None] & in_u[None, :]
    uu = np.broadcast_to(((u - u0) / (u1 - u0))[None, :], mask.shape)[mask]
    vv = np.broadcast_to(((v - v0) / (v1 - v0))[:, None], mask.shape)[mask]
    return mask, uu, vv


def paint(tex: np.ndarray, rect: Rect, fn) -> None:
    """tex[island] = fn(uu, vv) -> [N, 3]."""
    mask, uu, vv = island_grid(tex.shape[0], tex.shape[1], rect)
    tex[mask] = np.clip(fn(uu, vv), 0.0, 1.0)


def waves(uu, vv, base, amp: float = 0.08, seed: int = 0, freq: float = 3.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.tile(np.asarray(base, np.float64), (len(uu), 1))
    for c in range(3):
        for _ in range(2):
            fu, fv = rng.uniform(-freq, freq, 2)
            out[:, c] += amp * np.sin(2 * np.pi * (fu * uu + fv * vv) + rng.uniform(0, 2 * np.pi))
    return out


def spots(rgb, uu, vv, colour, n: int, radius: float, seed: int, aspect: float = 1.0) -> np.ndarray:
    """Soft-edged discs of `colour` (radius in island units; `aspect` = island width / height)."""
    rng = np.random.default_rng(seed)
    out = rgb.copy()
    for _ in range(n):
        cu, cv = rng.uniform(0.1, 0.9, 2)
        r = radius * rng.uniform(0.6, 1.3)
        d = np.sqrt(((uu - cu) * aspect) ** 2 + (vv - cv) ** 2)
        w = np.clip((r - d) / (0.15 * r), 0.0, 1.0)[:, None]
        out = out * (1 - w) + np.asarray(colour) * w
    return out


def glyphs(uu, vv, seed: int, lines: int = 6, per_line: int = 40, ink=(0.05, 0.05, 0.08), paper=(0.95, 0.93, 0.88),
           margin: float = 0.08) -> np.ndarray:
    """Text-like rows of random 3 x 5 glyphs: high-contrast detail a few texels wide."""
    rng = np.random.default_rng(seed)
    bitmaps = rng.random((lines, per_line, 5, 3)) < 0.45
    bitmaps[:, rng.random(per_line) < 0.15] = False  # word gaps
    x = (uu - margin) / (1 - 2 * margin) * per_line
    y = (1 - vv - margin) / (1 - 2 * margin) * lines
    gi, li = np.floor(x).astype(int), np.floor(y).astype(int)
    bx = np.floor((x - gi) * 4).astype(int)  # 3 columns + 1 space
    by = np.floor((y - li) * 7).astype(int) - 1  # 1 space + 5 rows + 1 space
    ok = (gi >= 0) & (gi < per_line) & (li >= 0) & (li < lines) & (bx < 3) & (by >= 0) & (by < 5)
    on = np.zeros(len(uu), bool)
    on[ok] = bitmaps[li[ok], gi[ok], by[ok], bx[ok]]
    return np.where(on[:, None], np.asarray(ink), np.asarray(paper))


def bands(vv, edges: list[float], colours: list) -> np.ndarray:
    """Horizontal bands: colours[k] where edges[k] <= vv < edges[k + 1]."""
    k = np.clip(np.searchsorted(np.asarray(edges), vv, side="right") - 1, 0, len(colours) - 1)
    return np.asarray(colours, np.float64)[k]


# --- damages ----------------------------------------------------------------------------------------


def cast(rgb, gain=(0.75, 0.85, 1.25), offset=(0.0, 0.03, 0.05)) -> np.ndarray:
    return np.clip(rgb * np.asarray(gain) + np.asarray(offset), 0, 1)


def blur(rgb, sigma: float) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(rgb.astype(np.float32), (0, 0), sigma, borderType=cv2.BORDER_REFLECT).astype(np.float64)


def hue_shift(rgb, degrees: float) -> np.ndarray:
    import cv2

    hsv = cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2HSV)  # H in degrees for float input
    hsv[..., 0] = (hsv[..., 0] + degrees) % 360.0
    return np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float64), 0, 1)


def washed_out(rgb, amount: float = 0.7, lift: float = 0.15) -> np.ndarray:
    """Desaturated and lightened: a pink body turned grey-white."""
    grey = rgb.mean(-1, keepdims=True)
    return np.clip(rgb * (1 - amount) + grey * amount + lift, 0, 1)


def blend(truth, wrong, weight) -> np.ndarray:
    w = weight[..., None]
    return truth * (1 - w) + wrong * w


def to_rgba8(rgb) -> np.ndarray:
    rgb8 = np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    return np.concatenate([rgb8, np.full(rgb8.shape[:2] + (1,), 255, np.uint8)], -1)
