"""Warp's BVH (on Warp's CPU device) against Embree on the same meshes and rays: the same triangles hit except
at a tiny fraction of rays that graze triangle edges, the same depths and barycentrics; the backend choice."""

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.views.mesh_passes import Raycaster
from likeness3d.backend.stages.views.rays import RaySpec, ray_query, resolve
from likeness3d.backend.synthetic.example import example_case
from likeness3d.backend.synthetic.shapes import uv_cube, uv_sphere

pytest.importorskip("warp", reason="warp-lang is in the backend extra")
WARP, EMBREE = RaySpec("warp", "cpu"), RaySpec("embree", "cpu")


@pytest.fixture(scope="module")
def pebble():
    return example_case(image_size=48, texture_size=64).initial


def random_rays(n: int, seed: int):
    g = np.random.default_rng(seed)
    origins = g.normal(size=(n, 3))
    origins = 3.0 * origins / np.linalg.norm(origins, axis=1, keepdims=True)
    targets = g.uniform(-0.8, 0.8, size=(n, 3))
    return torch.from_numpy(origins), torch.from_numpy(targets - origins)


@pytest.mark.parametrize("shape", ["sphere", "cube", "pebble"])
def test_warp_and_embree_hit_the_same_triangles_at_the_same_points(shape, pebble):
    mesh = {"sphere": uv_sphere(1.0, 48, 24, texture_size=16), "cube": uv_cube(1.0), "pebble": pebble}[shape]
    v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    o, d = random_rays(20_000, seed=len(f))
    a = ray_query(v, f, EMBREE).cast(o, d)
    b = ray_query(v, f, WARP).cast(o, d)
    assert a.tri.shape == b.tri.shape == (20_000,) and b.tri.dtype == torch.int64
    hit_a, hit_b = a.tri >= 0, b.tri >= 0
    assert 0.2 < hit_a.float().mean() < 0.98  # the rays test both hits and misses
    assert (hit_a == hit_b).float().mean() >= 0.995
    same = (a.tri == b.tri)
    assert same.float().mean() >= 0.995
    both = same & hit_a
    np.testing.assert_allclose(b.t[both], a.t[both], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b.bary[both], a.bary[both], atol=2e-3)
    # where they differ on a hit, it is an edge: the same point, on a neighbouring triangle
    diff = hit_a & hit_b & ~same
    np.testing.assert_allclose(b.t[diff], a.t[diff], rtol=1e-3, atol=1e-4)


def test_passes_match_between_backends(pebble):
    cams = orbit((0, 0, 0), 1.0, [0.0, 130.0, 250.0], [20.0, -35.0], 40, 32)
    for normals in ("face", "smooth"):
        a = Raycaster(pebble, EMBREE).passes(cams, normals=normals)
        b = Raycaster(pebble, WARP).passes(cams, normals=normals)
        assert b.mask.shape == (6, 32, 40) and b.depth.dtype == torch.float32 and b.tri.dtype == torch.int64
        assert (a.mask == b.mask).float().mean() >= 0.995 and a.mask.float().mean() > 0.1
        same = (a.tri == b.tri) & a.mask
        assert same.sum() >= 0.995 * a.mask.sum()
        for key, tol in (("depth", 1e-4), ("points", 1e-4), ("normal", 2e-3), ("uv", 1e-3), ("rgb", 2e-2)):
            np.testing.assert_allclose(getattr(b, key)[same], getattr(a, key)[same], atol=tol, err_msg=key)


def test_first_hits_and_the_uv_lookup_match(pebble):
    from likeness3d.backend.stages.texture.texels import texel_geometry

    ea, wa = Raycaster(pebble, EMBREE), Raycaster(pebble, WARP)
    o, d = random_rays(3000, seed=7)
    (ta, la), (tb, lb) = ea.first_hits(o.numpy(), d.numpy()), wa.first_hits(o.numpy(), d.numpy())
    assert (ta == tb).mean() >= 0.995
    np.testing.assert_allclose(lb[ta == tb], la[ta == tb], atol=1e-4)
    sa, sb = texel_geometry(pebble, 64, 64, EMBREE), texel_geometry(pebble, 64, 64, WARP)
    assert sa.covered.sum() > 1000
    assert (sa.covered != sb.covered).mean() <= 0.005
    both = sa.covered & sb.covered & (sa.tri == sb.tri)
    assert both.sum() >= 0.995 * sa.covered.sum()


def test_the_observed_texels_match(pebble):
    """The observe stage (which texels each reference photo sees) on Warp against Embree."""
    from likeness3d.backend.stages.texture.config import FidelityConfig
    from likeness3d.backend.stages.texture.observe import observe_texels, prepare_reference
    from likeness3d.backend.stages.texture.texels import texel_geometry

    case = example_case(image_size=48, texture_size=64)
    observed = {}
    for spec in (EMBREE, WARP):
        caster = Raycaster(case.initial, spec)
        surface = texel_geometry(case.initial, 64, 64, spec)
        refs = [prepare_reference(r, caster, FidelityConfig()) for r in case.references]
        observed[spec.backend] = surface.scatter(observe_texels(surface, refs, FidelityConfig()).observed)
    a, b = observed["embree"], observed["warp"]
    assert a.sum() > 200
    assert (a != b).sum() <= 0.01 * a.sum()


def test_the_choice_is_explicit():
    assert resolve("auto", "cpu")[0] == "embree"
    assert resolve("embree", "cuda")[0] == "embree"
    assert resolve("warp", "cpu") == ("warp", "asked for")
    assert resolve("auto", "cuda")[0] == "warp"
    with pytest.raises(ValueError, match="ray_backend must be one of"):
        resolve("optix", "cpu")
    caster = Raycaster(uv_cube(1.0), WARP)
    assert caster.backend == {"backend": "warp", "device": "cpu", "why": "asked for"}
    assert Raycaster(uv_cube(1.0)).backend["backend"] == "embree"
