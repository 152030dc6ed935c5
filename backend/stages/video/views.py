"""Step 1 of the video pipeline: the subject's views (backgrounds masked to white, square-padded, resized) and
the conditioning subset, the fewest views whose azimuth arcs cover the circle around the subject."""

from __future__ import annotations

import math

import numpy as np


EPS = 1e-3
"""Degrees of slack when arcs meet (camera matrices in float32 put exactly 90-degree spacings a hair apart)."""


def prepare_view(image: np.ndarray, size: int) -> tuple[np.ndarray, bool]:
    """An RGBA reference [H, W, 4] (uint8 or float in [0, 1], straight alpha) -> ([size, size, 3] float32 in
    [0, 1], masked): composited over white, padded with white to a centred square, resized (Lanczos). `masked`
    is False when the alpha is fully opaque (no mask given: the background is kept, and the report says so)."""
    from PIL import Image

    img = np.asarray(image)
    rgba = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
    alpha = rgba[..., 3:4]
    masked = bool((alpha < 1.0 - 1e-6).any())
    rgb = rgba[..., :3] * alpha + (1.0 - alpha)
    h, w = rgb.shape[:2]
    side = max(h, w)
    square = np.ones((side, side, 3), np.float32)
    top, left = (side - h) // 2, (side - w) // 2
    square[top:top + h, left:left + w] = rgb
    u8 = (np.clip(square, 0, 1) * 255 + 0.5).astype(np.uint8)
    out = np.asarray(Image.fromarray(u8).resize((size, size), Image.LANCZOS), np.float32) / 255.0
    return out, masked


def subject_centre(c2ws: np.ndarray) -> np.ndarray:
    """[C, 4, 4] OpenCV camera-to-world -> [3] the point closest (least squares) to every camera's optical axis:
    where the cameras look. Falls back to the cameras' mean for parallel axes."""
    origins, dirs = c2ws[:, :3, 3], c2ws[:, :3, 2]
    dirs = dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
    a = np.zeros((3, 3))
    b = np.zeros(3)
    for o, d in zip(origins, dirs):
        p = np.eye(3) - np.outer(d, d)
        a += p
        b += p @ o
    if np.linalg.cond(a) > 1e8:
        return origins.mean(0)
    return np.linalg.solve(a, b)


def azimuths(c2ws: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """[C] azimuth in degrees [0, 360) of each camera around the subject, about the world's Z (up) axis."""
    centre = subject_centre(c2ws) if centre is None else np.asarray(centre, np.float64)
    rel = c2ws[:, :3, 3] - centre
    return np.degrees(np.arctan2(rel[:, 1], rel[:, 0])) % 360.0


def covering_subset(az: np.ndarray, cover_degrees: float, min_views: int, max_views: int) -> tuple[list[int], float]:
    """The fewest views whose arcs (azimuth +- cover/2) cover 360 degrees; when no subset does, the set that
    leaves the smallest largest gap. Then topped up to `min_views` (views farthest from those chosen) and cut
    to `max_views` (keeping the most even spread). Returns (indices sorted by azimuth, largest uncovered arc in
    degrees: 0 when the circle is covered)."""
    n = len(az)
    order = sorted(range(n), key=lambda i: az[i])
    half = cover_degrees / 2.0
    best: list[int] | None = None
    for start in order:  # greedy from each start: optimal for circular-arc cover
        chosen, reach = [start], az[start] + half
        end = az[start] - half + 360.0
        while reach < end - EPS:
            cands = [(a + (360.0 if a < az[start] else 0.0), i) for i, a in ((i, az[i]) for i in order)]
            ok = [(c + half, i) for c, i in cands if c - half <= reach + EPS and c + half > reach + EPS]
            if not ok:
                break
            reach, nxt = max(ok)
            chosen.append(nxt)
        if reach >= end - EPS and (best is None or len(chosen) < len(best)):
            best = chosen
    chosen = sorted(set(best)) if best is not None else list(range(n))
    while len(chosen) < min(min_views, n):
        rest = [i for i in range(n) if i not in chosen]
        chosen.append(max(rest, key=lambda i: min(_dist(az[i], az[j]) for j in chosen)))
    while len(chosen) > max_views:
        chosen.remove(min(chosen, key=lambda i: min(_dist(az[i], az[j]) for j in chosen if j != i)))
    chosen = sorted(set(chosen), key=lambda i: az[i])
    return chosen, _largest_gap([az[i] for i in chosen], half)


def _dist(a: float, b: float) -> float:
    d = abs(a - b) % 360.0
    return min(d, 360.0 - d)


def _largest_gap(chosen_az: list[float], half: float) -> float:
    """The largest arc of the circle no chosen view's arc covers (degrees)."""
    a = sorted(x % 360.0 for x in chosen_az)
    if not a:
        return 360.0
    gaps = [(a[(i + 1) % len(a)] - a[i]) % 360.0 or (360.0 if len(a) == 1 else 0.0) for i in range(len(a))]
    gap = max(gaps) - 2 * half
    return float(gap) if gap > EPS else 0.0


def coverage_text(az: np.ndarray, chosen: list[int], gap: float) -> str:
    angles = ", ".join(f"{az[i]:.0f}" for i in chosen)
    return (f"{len(chosen)} conditioning views at azimuth {angles} degrees; " +
            ("they cover 360 degrees" if gap <= 0 else f"an arc of {math.ceil(gap)} degrees is covered by none"))


def mesh_views(mesh, count: int, elevation_deg: float, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Renders of the asset (unlit, its own texture) from `count` azimuths around it: ([count, S, S, 4] float32
    straight-alpha RGBA, [count, 4, 4] OpenCV camera-to-world)."""
    import torch

    from ..views.cameras import bounding_sphere, orbit
    from ..views.mesh_passes import mesh_rgba

    center, radius = bounding_sphere(mesh.vertices)
    cams = orbit(center, radius, [360.0 * i / count for i in range(count)], [elevation_deg], size, size)
    rgba = mesh_rgba(mesh, cams).clamp(0, 1).numpy().astype(np.float32)
    c2w = torch.linalg.inv(cams.viewmats.double()).numpy()
    return rgba, c2w


def choose_conditioning(az_refs: np.ndarray, az_all: np.ndarray, cover: float, lo: int, hi: int
                        ) -> tuple[list[int], float]:
    """The subset from the references; from every view (references first, then renders) only when the
    references leave an arc uncovered and the renders close more of it. Indices into the full view list."""
    chosen, gap = covering_subset(az_refs, cover, lo, hi)
    if gap > 0 and len(az_all) > len(az_refs):
        chosen_all, gap_all = covering_subset(az_all, cover, lo, hi)
        if gap_all < gap:
            return chosen_all, gap_all
    return chosen, gap
