"""The fidelity benchmark's cases, built in code: for each a true textured mesh, an initial asset whose hidden
side is wrong (each case damaged differently), reference cameras on one side and evaluation cameras all
around (below included).

The damage never touches a texel that a reference sees (unoccluded, in frame, facing it), except in the
cases marked `observed_wrong`, where the initial asset is wrong where the references look too. Beyond the
references' side it ramps in smoothly with the angle between the surface point's direction from the
subject's centre and the references' mean direction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fidelity_geometry import Caster, Part, PinCam, box, combine, ellipsoid, lathe, orbit_camera, signed_volume, texel_samples
from fidelity_paint import bands, blend, blur, cast, glyphs, hue_shift, paint, spots, to_rgba8, washed_out, waves

FOV_DEG = 40.0


@dataclass
class Case:
    name: str
    covers: str
    damage: str
    part: Part
    truth: np.ndarray  # [H, W, 4] uint8
    initial: np.ndarray  # [H, W, 4] uint8
    refs: list[PinCam]
    evals: list[PinCam]
    lighting: dict | None = None
    observed_wrong: bool = False
    closed: bool = True
    hidden: np.ndarray = field(default=None, repr=False)  # [H, W] damage weight


def eval_views(quick: bool) -> list[tuple[float, float]]:
    """All around at 20 degrees, two from below, one from above; fewer with --quick."""
    if quick:
        return [(45.0 + 90.0 * k, 20.0) for k in range(4)] + [(200.0, -35.0)]
    return [(22.5 + 45.0 * k, 20.0) for k in range(8)] + [(60.0, -35.0), (240.0, -35.0), (150.0, 65.0)]


def hidden_weight(part: Part, height: int, width: int, refs: list[PinCam], center) -> np.ndarray:
    """[H, W] in [0, 1]: 0 on every texel a reference sees; beyond them a smooth ramp in the mean of two
    cosines with the references' mean direction, the surface point's direction from the centre's and its
    normal's (0 above 0.2, 1 below -0.3)."""
    tex_i, face, bary = texel_samples(part, height, width)
    tri = part.vertices[part.faces[face]]  # [M, 3, 3]
    points = np.einsum("mk,mkd->md", bary, tri)
    caster = Caster(part)
    seen = caster.seen_by(points, caster.normals[face], refs, min_cosine=0.0)
    mean_dir = np.mean([c.centre - center for c in refs], axis=0)
    mean_dir /= np.linalg.norm(mean_dir)
    d = points - center
    # the point's direction from the centre and its normal both count (a thin board's back faces away)
    cosang = 0.5 * ((d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)) @ mean_dir + caster.normals[face] @ mean_dir)
    t = np.clip((0.2 - cosang) / 0.5, 0.0, 1.0)
    ramp = t * t * (3 - 2 * t)
    seen_texel = np.zeros(height * width, bool)
    np.logical_or.at(seen_texel, tex_i, seen)
    w = np.zeros(height * width)
    np.maximum.at(w, tex_i, ramp)
    w[seen_texel] = 0.0
    covered = np.zeros(height * width, bool)
    covered[tex_i] = True
    # gutters take their nearest island texel's weight (bilinear lookups at island edges read them)
    from scipy.ndimage import distance_transform_edt

    _, (ri, ci) = distance_transform_edt(~covered.reshape(height, width), return_indices=True)
    return w.reshape(height, width)[ri, ci]


def is_closed(part: Part) -> bool:
    import trimesh

    tm = trimesh.Trimesh(part.vertices, part.faces, process=False)
    tm.merge_vertices(merge_tex=True, merge_norm=True)
    return bool(tm.is_watertight)


def resample(profile, step: float) -> list[tuple[float, float]]:
    """A lathe profile with extra points so that no segment is longer than `step`."""
    out = [profile[0]]
    for a, b in zip(profile[:-1], profile[1:]):
        n = max(1, int(np.ceil(np.hypot(b[0] - a[0], b[1] - a[1]) / step)))
        out += [(a[0] + (b[0] - a[0]) * k / n, a[1] + (b[1] - a[1]) * k / n) for k in range(1, n + 1)]
    return out


def arc_fractions(profile) -> np.ndarray:
    p = np.asarray(profile)
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
    return arc / arc[-1]


def cells(cols: int, rows: int, margin: float = 0.02) -> list[tuple[float, float, float, float]]:
    return [(c / cols + margin, r / rows + margin, (c + 1) / cols - margin, (r + 1) / rows - margin)
            for r in range(rows) for c in range(cols)]


def canvas(height: int, width: int, colour=(0.5, 0.5, 0.5)) -> np.ndarray:
    return np.tile(np.asarray(colour, np.float64), (height, width, 1))


# --- the cases ---------------------------------------------------------------------------------------
# each returns (part, truth rgb, damage(truth, hidden weight) -> initial rgb, reference (az, el)s, extras)


def box_512x256():
    cs = cells(3, 2)
    sides = ["-y", "+x", "+y", "-x", "+z", "-z"]
    part = box((1.0, 0.7, 0.6), (0.0, 0.0, 0.3), dict(zip(sides, cs)), subdivisions=6)
    tex = canvas(256, 512)
    bases = [(0.8, 0.3, 0.25), (0.25, 0.6, 0.35), (0.3, 0.35, 0.75), (0.85, 0.7, 0.2), (0.6, 0.3, 0.6), (0.4, 0.4, 0.4)]
    for k, (rect, base) in enumerate(zip(cs, bases)):
        paint(tex, rect, lambda uu, vv, b=base, k=k: spots(waves(uu, vv, b, seed=k), uu, vv, (0.95, 0.95, 0.9), 3, 0.12, k))
    return part, tex, lambda t, w: blend(t, cast(t), w), [(-40, 15), (0, 25), (40, 10)], dict(
        covers="non-square texture (512x256), six box islands in a 3x2 atlas", damage="colour cast (blue, darker red)")


def sphere_300x200():
    part = ellipsoid((0.5, 0.5, 0.5), (0.0, 0.0, 0.5), (0.0, 0.0, 1.0, 1.0))
    tex = canvas(200, 300)
    paint(tex, (0, 0, 1, 1), lambda uu, vv: spots(
        np.where((np.sin(2 * np.pi * 9 * uu) > 0.7)[:, None], (0.2, 0.15, 0.1), waves(uu, vv, (0.55, 0.5, 0.35), 0.12, 3)),
        uu, vv, (0.15, 0.45, 0.8), 6, 0.07, 4, aspect=2.0))
    return part, tex, lambda t, w: blend(t, blur(t, 5.0), w), [(-45, 10), (0, 20), (45, 0)], dict(
        covers="non-power-of-two texture (300x200), one lat-long island", damage="blur (sigma 5 texels)")


def mirrored_box():
    A, B, C, D = (0.02, 0.52, 0.48, 0.98), (0.52, 0.52, 0.98, 0.98), (0.02, 0.02, 0.48, 0.48), (0.52, 0.02, 0.98, 0.48)
    mirror = lambda r: (r[2], r[1], r[0], r[3])  # noqa: E731
    part = box((0.8, 0.8, 0.8), (0.0, 0.0, 0.4), {"-y": A, "+y": B, "-x": C, "+x": mirror(C), "+z": D, "-z": mirror(D)}, 6)
    tex = canvas(256, 256)
    paint(tex, A, lambda uu, vv: spots(waves(uu, vv, (0.9, 0.75, 0.6), seed=1), uu, vv, (0.1, 0.1, 0.1), 2, 0.1, 1))
    paint(tex, B, lambda uu, vv: glyphs(uu, vv, 2, lines=4, per_line=12, ink=(0.1, 0.2, 0.6)))
    paint(tex, C, lambda uu, vv: np.where((uu + 0.5 * vv < 0.6)[:, None], (0.8, 0.2, 0.2), waves(uu, vv, (0.3, 0.6, 0.3), seed=3)))
    paint(tex, D, lambda uu, vv: spots(waves(uu, vv, (0.5, 0.4, 0.7), seed=4), uu, vv, (0.95, 0.9, 0.3), 4, 0.1, 5))

    def damage(t, w):
        wrong = t.copy()
        paint(wrong, B, lambda uu, vv: glyphs(uu, vv, 7, lines=4, per_line=12, ink=(0.1, 0.2, 0.6)))
        return blend(t, wrong, w)
    return part, tex, damage, [(-70, 20), (-30, 35), (5, 10)], dict(
        covers="box with mirrored shared islands (the hidden +x side and the bottom reuse the seen -x side's and top's texels)",
        damage="wrong detail on the back (other glyphs)")


def mushroom():
    key = [(0.0, 0.0), (0.16, 0.0), (0.14, 0.25), (0.15, 0.45), (0.5, 0.5), (0.52, 0.56), (0.42, 0.72), (0.22, 0.82), (0.0, 0.85)]
    profile = resample(key, 0.04)
    part = lathe(profile, 48, (0.0, 0.0, 1.0, 1.0))
    s = arc_fractions(key)  # v where the stem, the underside and the cap begin
    tex = canvas(512, 512)

    def fn(uu, vv):
        stem = waves(uu, vv, (0.9, 0.85, 0.7), 0.05, 6) * (1 - 0.25 * (np.sin(2 * np.pi * 24 * uu) > 0.8))[:, None]
        gills = np.where((np.sin(2 * np.pi * 40 * uu) > 0.3)[:, None], (0.35, 0.22, 0.15), (0.6, 0.45, 0.35))
        cap = spots(waves(uu, vv, (0.8, 0.15, 0.12), 0.06, 7), uu, (vv - s[5]) / (1 - s[5]), (0.97, 0.95, 0.9), 14, 0.09, 8, aspect=3)
        return np.where((vv < s[3])[:, None], stem, np.where((vv < s[4] + 0.5 * (s[5] - s[4]))[:, None], gills, cap))
    paint(tex, (0, 0, 1, 1), fn)
    return part, tex, lambda t, w: blend(t, washed_out(t), w), [(-35, 30), (0, 40), (35, 25)], dict(
        covers="concave parts and an underside (a mushroom's cap over its stem), references from above",
        damage="washed out (desaturated, lighter)")


def label_cylinder():
    part = lathe(resample([(0.0, 0.0), (0.35, 0.0), (0.35, 0.9), (0.0, 0.9)], 0.05), 64, (0.0, 0.0, 1.0, 1.0))
    s = arc_fractions([(0.0, 0.0), (0.35, 0.0), (0.35, 0.9), (0.0, 0.9)])
    tex = canvas(256, 512)

    def fn(seed):
        def f(uu, vv):
            side = (vv - s[1]) / (s[2] - s[1])
            label = glyphs(uu, side, seed, lines=6, per_line=48)
            return np.where(((vv >= s[1]) & (vv < s[2]))[:, None], label, (0.7, 0.1, 0.1))
        return f
    paint(tex, (0, 0, 1, 1), fn(11))

    def damage(t, w):
        wrong = t.copy()
        paint(wrong, (0, 0, 1, 1), fn(12))
        return blend(t, blur(wrong, 0.8), w)
    return part, tex, damage, [(-35, 10), (0, 15), (35, 5)], dict(
        covers="fine high-contrast detail: text-like glyph rows (3-4 texel strokes) around a cylinder",
        damage="wrong detail (other glyphs), slightly blurred")


def creature():
    body_r, head_r = (0.45, 0.26, 0.25), (0.17, 0.15, 0.15)
    body = ellipsoid(body_r, (0.0, 0.0, 0.6), (0.01, 0.32, 0.69, 0.99))
    head = ellipsoid(head_r, (0.52, 0.0, 0.78), (0.71, 0.32, 0.99, 0.99), 16, 32)
    legs = [lathe(resample([(0.0, 0.0), (0.07, 0.0), (0.065, 0.45), (0.0, 0.45)], 0.06), 16,
                  (0.01 + 0.25 * k, 0.01, 0.24 + 0.25 * k, 0.30), center=(x, y, 0.0))
            for k, (x, y) in enumerate([(0.27, -0.12), (0.27, 0.12), (-0.27, -0.12), (-0.27, 0.12)])]
    part = combine([body, head] + legs)
    tex = canvas(512, 512)
    pink, grey = (0.93, 0.58, 0.66), (0.5, 0.5, 0.53)
    paint(tex, (0.01, 0.32, 0.69, 0.99), lambda uu, vv: spots(waves(uu, vv, pink, 0.04, 9), uu, vv, (0.75, 0.35, 0.45), 8, 0.08, 9, aspect=2))
    paint(tex, (0.71, 0.32, 0.99, 0.99), lambda uu, vv: spots(waves(uu, vv, (0.97, 0.7, 0.75), 0.04, 10), uu, vv,
                                                              (0.05, 0.05, 0.05), 2, 0.08, 3, aspect=0.5))
    for k in range(4):
        paint(tex, (0.01 + 0.25 * k, 0.01, 0.24 + 0.25 * k, 0.30),
              lambda uu, vv: bands(vv, [0.0, 0.08, 0.25, 0.94], [(0.8, 0.8, 0.8), (0.2, 0.2, 0.22), grey, (0.8, 0.8, 0.8)]))

    def damage(t, w):  # each material goes wrong its own way: pink body grey-white, grey legs brown
        wrong = washed_out(t, 0.8, 0.2)
        legs_rows = slice(int(512 * 0.69), 512)
        wrong[legs_rows] = cast(t[legs_rows], (1.1, 0.8, 0.55), (0.05, 0.0, 0.0))
        return blend(t, wrong, w)
    return part, tex, damage, [(-40, 15), (0, 25), (40, 10)], dict(
        covers="several materials in one image (pink body, head with eyes, grey legs with hooves), 6 parts and islands",
        damage="per material: body washed out to grey-white, legs brown")


def lit_pebble():
    part = ellipsoid((0.45, 0.35, 0.55), (0.0, 0.0, 0.55), (0.0, 0.0, 1.0, 1.0))
    tex = canvas(192, 384)

    def fn(uu, vv):
        lon, lat = (uu - 0.5) * 2 * np.pi, (vv - 0.5) * np.pi
        base = np.stack([0.55 + 0.1 * np.sin(3 * lon), 0.45 + 0.1 * np.cos(2 * lat), 0.35 + 0.05 * np.sin(5 * lon)], -1)
        rgb = np.where((np.sin(8 * lat + 2 * np.sin(2 * lon)) > 0.6)[:, None], (0.15, 0.1, 0.08), base)
        return spots(rgb, uu, vv, (0.1, 0.35, 0.8), 5, 0.08, 12, aspect=2)
    paint(tex, (0, 0, 1, 1), fn)
    light = {"direction": (-0.5, -0.7, 0.6), "ambient": 0.3, "diffuse": 0.7, "tint": (1.0, 0.88, 0.72)}
    return part, tex, lambda t, w: blend(t, blur(hue_shift(t, 120.0), 4.0), w), [(-45, 15), (0, 10), (50, 20)], dict(
        covers="lit references: Lambert + ambient under a warm tinted light (evaluated unlit: the albedo)",
        damage="hue shift 120 degrees + blur", lighting=light)


def thin_sign():
    front, back = (0.01, 0.56, 0.99, 0.99), (0.01, 0.12, 0.99, 0.55)
    edge, pole_rect = (0.01, 0.01, 0.5, 0.1), (0.52, 0.01, 0.99, 0.1)
    board = box((0.9, 0.03, 0.5), (0.0, 0.0, 0.95), {"-y": front, "+y": back, "-x": edge, "+x": edge, "+z": edge, "-z": edge}, 6)
    pole = lathe(resample([(0.0, 0.0), (0.025, 0.0), (0.025, 0.75), (0.0, 0.75)], 0.05), 16, pole_rect)
    part = combine([board, pole])
    tex = canvas(512, 512)
    paint(tex, front, lambda uu, vv: glyphs(uu, vv, 21, lines=3, per_line=20, ink=(0.05, 0.05, 0.05), paper=(0.95, 0.8, 0.1)))
    def arrow(uu, vv):
        shaft = (np.abs(vv - 0.5) < 0.12) & (uu > 0.1) & (uu < 0.7)
        head = (uu >= 0.7) & (np.abs(vv - 0.5) < (0.95 - uu) * 1.6)
        return np.where((shaft | head)[:, None], (0.95, 0.95, 0.95), (0.1, 0.25, 0.6))
    paint(tex, back, arrow)
    paint(tex, edge, lambda uu, vv: waves(uu, vv, (0.5, 0.45, 0.4), 0.05, 13))
    paint(tex, pole_rect, lambda uu, vv: np.where((np.sin(2 * np.pi * 8 * vv) > 0)[:, None], (0.85, 0.85, 0.85), (0.8, 0.1, 0.1)))

    def damage(t, w):  # a generator's favourite mistake: the back copies the front
        wrong = cast(t, (0.8, 0.8, 1.1))
        paint(wrong, back, lambda uu, vv: glyphs(uu, vv, 21, lines=3, per_line=20, ink=(0.05, 0.05, 0.05), paper=(0.95, 0.8, 0.1)))
        return blend(t, wrong, w)
    return part, tex, damage, [(-30, 10), (0, 5), (30, 15)], dict(
        covers="thin parts: a 3 cm board whose back differs from its front, on a 5 cm pole",
        damage="the back copies the front's sign; cast on the pole")


def vase_observed_wrong():
    key = [(0.0, 0.0), (0.2, 0.0), (0.32, 0.2), (0.3, 0.45), (0.14, 0.7), (0.12, 0.8), (0.18, 0.9), (0.0, 0.9)]
    part = lathe(resample(key, 0.04), 48, (0.0, 0.0, 1.0, 1.0))
    tex = canvas(512, 256)
    paint(tex, (0, 0, 1, 1), lambda uu, vv: np.where(
        (np.abs(vv - 0.45 - 0.05 * np.sin(2 * np.pi * 12 * uu)) < 0.03)[:, None], (0.9, 0.8, 0.3),
        bands(vv, [0.0, 0.2, 0.6, 0.8], [(0.2, 0.3, 0.5), (0.75, 0.7, 0.6), (0.3, 0.5, 0.4), (0.6, 0.2, 0.2)])))

    def damage(t, w):  # wrong everywhere: cast and blur on the seen side too, hue shifted beyond
        everywhere = blur(cast(t, (0.85, 0.9, 1.05), (0.04, 0.02, 0.0)), 2.0)
        return blend(everywhere, hue_shift(everywhere, 90.0), w)
    return part, tex, damage, [(-40, 15), (0, 25), (40, 5)], dict(
        covers="concave neck; the initial asset is wrong on the observed side too (512 high x 256 wide)",
        damage="cast + blur everywhere, hue shift 90 degrees beyond", observed_wrong=True)


CASES = {f.__name__: f for f in (box_512x256, sphere_300x200, mirrored_box, mushroom, label_cylinder, creature,
                                 lit_pebble, thin_sign, vase_observed_wrong)}
QUICK = ("box_512x256", "mushroom", "lit_pebble", "vase_observed_wrong")


def build(name: str, quick: bool = False, ref_px: int = 256, eval_px: int = 160) -> Case:
    part, truth_rgb, damage, ref_views, extra = CASES[name]()
    assert signed_volume(part) > 0, f"{name}: faces wound inward"
    lo, hi = part.vertices.min(0), part.vertices.max(0)
    center = (lo + hi) / 2
    radius = float(np.linalg.norm(part.vertices - center, axis=1).max())
    distance = 1.1 * radius / np.sin(np.radians(FOV_DEG) / 2)
    refs = [orbit_camera(f"ref_{k}", center, distance, az, el, ref_px, FOV_DEG) for k, (az, el) in enumerate(ref_views)]
    evals = [orbit_camera(f"eval_{k:02d}", center, distance, az, el, eval_px, FOV_DEG) for k, (az, el) in enumerate(eval_views(quick))]
    h, w = truth_rgb.shape[:2]
    hidden = hidden_weight(part, h, w, refs, center)
    initial_rgb = damage(truth_rgb, hidden)
    return Case(name, extra["covers"], extra["damage"], part, to_rgba8(truth_rgb), to_rgba8(initial_rgb), refs, evals,
                extra.get("lighting"), extra.get("observed_wrong", False), is_closed(part), hidden)
