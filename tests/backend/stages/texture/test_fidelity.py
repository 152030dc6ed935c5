"""The fidelity stage: agreeing texels kept bit for bit, disagreeing ones taken from the photos, the photos'
lighting removed, colour regions mapped separately, texels filled on the surface, gutters that do not bleed."""

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.common.images import to_u8, unit_float
from likeness3d.backend.stages.texture.compose import compose_texture, fill_on_surface
from likeness3d.backend.stages.texture.config import FidelityConfig
from likeness3d.backend.stages.texture.fidelity import finish_fidelity, prepare_fidelity
from likeness3d.backend.stages.texture.observe import Observation, prepare_reference
from likeness3d.backend.stages.texture.regions import learn_regions
from likeness3d.backend.stages.texture.texels import texel_geometry
from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.views.mesh_passes import Raycaster, mesh_rgba
from likeness3d.backend.synthetic.shapes import uv_cube, uv_sphere
from likeness3d.protocol.assets import Camera, Mesh, Reference


def references(mesh, azimuths, size=96, elevation=10.0, light=None):
    """Antialiased renders of `mesh` from the front half; `light(normals) -> [N, 3] factor` lights them."""
    caster = Raycaster(mesh)
    cams = orbit((0, 0, 0), 1.0, azimuths, [elevation], size, size)
    rgba = mesh_rgba(caster, cams, supersample=3)
    if light is not None:
        p = caster.passes(cams, normals="smooth")
        rgb = rgba[..., :3].clone()
        rgb[p.mask] = (rgb[p.mask] * torch.as_tensor(light(p.normal[p.mask].double().numpy()), dtype=torch.float32)).clamp(0, 1)
        rgba = torch.cat([rgb, rgba[..., 3:]], -1)
    return tuple(Reference(f"ref{i}", to_u8(rgba[i].numpy()), Camera(cams.Ks[i].double().numpy(), cams.viewmats[i].double().numpy(), size, size))
                 for i in range(len(cams)))


@pytest.fixture(scope="module")
def patched():
    """A sphere whose initial texture is the truth except a wrong patch (a green no true colour has) the front
    photos see."""
    truth = uv_sphere(1.0, 48, 24, texture_size=96, seed=3)
    tex = truth.texture.copy()
    # azimuth 0 looks from -Y: longitude 270 degrees (u = 0.75) faces the camera, the equator is row 48
    tex[40:56, 66:78, :3] = [0, 255, 0]
    initial = Mesh(truth.vertices, truth.faces, truth.uvs, tex)
    refs = references(truth, [-30.0, 0.0, 30.0])
    fid = prepare_fidelity(initial, refs, Raycaster(initial), FidelityConfig(), (96, 96))
    composed, fill = finish_fidelity(fid, FidelityConfig(), 16)
    return truth, initial, fid, composed, fill


def test_agreeing_texels_are_kept_bit_for_bit_and_wrong_ones_taken_from_the_photos(patched):
    truth, initial, fid, composed, _ = patched
    s = fid.surface
    out, init, true = (s.gather(np.asarray(t)[..., :3]).astype(np.int32) for t in (composed.texture, initial.texture, truth.texture))
    rows, cols = s.rows, s.cols
    patch = (rows >= 42) & (rows < 54) & (cols >= 68) & (cols < 76)
    far = ~((rows >= 34) & (rows < 62) & (cols >= 60) & (cols < 84))
    trusted = fid.observation.confidence.numpy() >= 1
    # where the photos fully see an unchanged texel, far from the patch: the artist's bytes, exactly
    assert (trusted & far).sum() > 1000
    assert np.array_equal(out[trusted & far], init[trusted & far])
    assert composed.kept[trusted & far].all()
    # the wrong patch is replaced by the photos' colour: its error drops by far more than half
    err_before = np.abs(init[patch] - true[patch]).mean()
    err_after = np.abs(out[patch] - true[patch]).mean()
    assert patch.sum() >= 60 and composed.from_references[patch].all()
    assert err_after < 0.25 * err_before, (err_before, err_after)
    r = composed.report()
    assert r["kept"] + r["from_references"] + r["infilled"] == r["used"] == len(s)
    assert r["infilled"] > 0  # the back of the sphere


def test_unobserved_texels_keep_their_own_colours_when_no_region_is_wrong(patched):
    """The only wrong patch is seen and its colour occurs nowhere else; the back is right and must stay as it
    was: the regions whose colours the photos confirm map (nearly) to themselves."""
    truth, initial, fid, composed, _ = patched
    s = fid.surface
    hidden = composed.infilled
    out = s.gather(unit_float(composed.texture[..., :3]))[hidden]
    init = s.gather(unit_float(initial.texture[..., :3]))[hidden]
    assert np.abs(out - init).mean() < 0.02


def test_lit_photos_are_corrected_to_the_albedo():
    """References lit by a warm key light plus ambient: the estimated gain and shading divide out, so the
    corrected photos match the unlit asset and the agreeing texels are kept (not darkened)."""
    truth = uv_sphere(1.0, 48, 24, texture_size=96, seed=5)
    L = np.array([0.4, -0.8, 0.45]) / np.linalg.norm([0.4, -0.8, 0.45])

    def light(n):
        lam = 0.55 + 0.45 * np.clip(n @ L, 0, None)
        return lam[:, None] * np.array([1.0, 0.85, 0.7])

    refs = references(truth, [-30.0, 0.0, 30.0], light=light)
    caster = Raycaster(truth)
    prepared = [prepare_reference(r, caster) for r in refs]
    for p, ref in zip(prepared, refs):
        assert p.lighting.applied
        g = p.lighting.gain / p.lighting.gain[0]
        assert np.allclose(g, [1.0, 0.85, 0.7], atol=0.05), g
        render = mesh_rgba(caster, p.camera, supersample=2)[0, ..., :3]
        inner = p.mask & (render.sum(-1) > 0.1)
        raw = unit_float(ref.image)[..., :3][inner.numpy()]
        fixed = p.image[..., :3][inner].numpy()
        truth_px = render[inner].numpy()
        assert np.abs(fixed - truth_px).mean() < 0.25 * np.abs(raw - truth_px).mean()
    fid = prepare_fidelity(truth, refs, caster, FidelityConfig(), (96, 96))
    composed, _ = finish_fidelity(fid, FidelityConfig(), 16)
    trusted = fid.observation.confidence.numpy() >= 1
    assert composed.kept[trusted].mean() > 0.6  # SH2 shading is close to, not exactly, the clamped Lambert
    assert abs(unit_float(composed.texture[..., :3]).mean() - unit_float(truth.texture[..., :3]).mean()) < 0.01


def test_each_colour_region_learns_its_own_mapping():
    """A pink body and grey hooves, both wrong in their own way, and a blue part nobody observes: each
    region's hidden texels get their own correction, the blue keeps its colours exactly."""
    rng = np.random.default_rng(0)
    n = 4000
    pink_true, grey_true, blue = np.array([0.9, 0.55, 0.6]), np.array([0.45, 0.45, 0.47]), np.array([0.1, 0.2, 0.8])
    pink_init, grey_init = np.array([0.85, 0.8, 0.8]), np.array([0.25, 0.25, 0.3])  # pink washed out, grey too dark
    noise = lambda: rng.normal(0, 0.01, (n, 3))  # noqa: E731
    initial = np.concatenate([pink_init + noise(), grey_init + noise(), blue + noise()]).clip(0, 1)
    target = np.concatenate([pink_true + noise(), grey_true + noise(), np.zeros((n, 3))]).clip(0, 1)
    observed = np.zeros(3 * n)
    observed[: n // 2] = 1  # half of each of pink and grey seen, blue never
    observed[n: n + n // 2] = 1
    rm = learn_regions(initial.astype(np.float32), target.astype(np.float32), observed, regions=3, min_texels=20)
    mapped = rm.apply(initial.astype(np.float32))
    assert np.abs(mapped[n // 2: n] - pink_true).mean() < 0.03
    assert np.abs(mapped[n + n // 2: 2 * n] - grey_true).mean() < 0.03
    assert np.abs(mapped[2 * n:] - initial[2 * n:]).max() < 0.01
    # one global transfer would have moved both by the same map: the two corrections differ in sign
    assert (mapped[n // 2: n, 1] - initial[n // 2: n, 1]).mean() < -0.1 < 0.1 < (mapped[n + n // 2: 2 * n, 1] - initial[n + n // 2: 2 * n, 1]).mean()


def test_fill_on_surface_reaches_across_the_uv_seam():
    """Texels along one side of a sphere's UV seam are missing; their 3D neighbours are across the seam at the
    other end of the image. The fill takes those (a function of the 3D position is reproduced)."""
    sphere = uv_sphere(1.0, 48, 24, texture_size=64)
    s = texel_geometry(sphere, 64, 64)
    p = s.points.numpy()
    values = np.stack([0.5 + 0.5 * p[:, 0], 0.5 + 0.5 * p[:, 1], 0.5 + 0.5 * p[:, 2]], 1).astype(np.float32)
    have = s.cols >= 3  # the first 3 columns (u near 0) are missing; their neighbours sit at u near 1
    filled, count = fill_on_surface(s, np.where(have[:, None], values, 0), have)
    assert count == int((~have).sum()) > 50
    assert np.abs(filled[~have] - values[~have]).max() < 0.08


def test_gutters_take_their_own_island_only_and_unchanged_islands_keep_their_padding():
    cube = uv_cube(1.0, 2, 96, seed=2, margin=0.04)
    s = texel_geometry(cube, 96, 96)
    T = len(s)
    # one side (the first island: the +x face) changes to red, all other texels are kept
    first = np.isin(s.tri[s.rows, s.cols], np.arange(8))
    obs = Observation(torch.as_tensor(np.where(first[:, None], [1.0, 0.0, 0.0], 0.0), dtype=torch.float32),
                      torch.ones(T), torch.as_tensor(first, dtype=torch.float32), [T])
    init = cube.texture.copy()
    init[~s.covered, :3] = 7  # the artist's padding
    comp = compose_texture(init, s, obs, np.zeros((T, 3), np.float32), feather_px=0.0, dilate_px=6)
    out = comp.texture
    from scipy import ndimage

    dist, (ri, ci) = ndimage.distance_transform_edt(~s.covered, return_indices=True)
    owner = s.scatter(first, False)[ri, ci]
    gutter = ~s.covered & (dist <= 6)
    assert (out[gutter & owner, :3] == [255, 0, 0]).all()  # the red island's padding is red, nothing else
    assert (out[gutter & ~owner, :3] == 7).all()  # the others keep the artist's padding, bit for bit
    assert (out[~s.covered & (dist > 6), :3] == 7).all()
    assert np.array_equal(out[s.rows[~first], s.cols[~first]], init[s.rows[~first], s.cols[~first]])


def test_a_hidden_colour_nobody_observes_takes_its_islands_observed_palette_and_unseen_islands_keep_theirs():
    """A pink body whose back a generator painted grey-white (one island, half observed), and a green island
    no photo sees: the body's back moves to the pink the photos show; the green island stays green."""
    from likeness3d.backend.stages.texture.islands import island_palette

    rng = np.random.default_rng(1)
    n = 2000
    pink, white, green = np.array([0.9, 0.55, 0.6]), np.array([0.88, 0.86, 0.86]), np.array([0.2, 0.7, 0.3])
    noise = lambda: rng.normal(0, 0.01, (n, 3))  # noqa: E731
    initial = np.concatenate([pink + noise(), white + noise(), green + noise()]).clip(0, 1).astype(np.float32)
    observed_colour = np.concatenate([pink + noise(), np.zeros((2 * n, 3))]).astype(np.float32)
    confidence = np.concatenate([np.ones(n), np.zeros(2 * n)])
    islands = np.concatenate([np.ones(2 * n), np.full(n, 2)]).astype(int)
    out, report = island_palette(initial, initial.copy(), observed_colour, confidence, islands)
    assert np.abs(out[n:2 * n].mean(0) - pink).max() < 0.03
    assert np.array_equal(out[2 * n:], initial[2 * n:]) and np.array_equal(out[:n], initial[:n])
    assert report == {"islands_recoloured": 1, "texels_recoloured": n}
