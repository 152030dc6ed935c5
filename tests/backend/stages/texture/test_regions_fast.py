"""The colour regions' torch path (`regions`) against the plain numpy reference (`regions_reference`): the same
regions, maps, supports, counts and mapped colours on fresh random inputs, whatever the chunking; on CUDA too."""

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.texture import regions, regions_reference


def pairs(seed: int, n: int = 6000):
    """Three materials with their own casts, half observed, noisy, with edges; colours in [0, 1]."""
    rng = np.random.default_rng(seed)
    base = rng.random((3, 3))
    which = rng.integers(0, 3, n)
    initial = np.clip(base[which] + rng.normal(0, 0.04, (n, 3)), 0, 1).astype(np.float32)
    gain, offset = rng.uniform(0.7, 1.2, (3, 3)), rng.uniform(-0.1, 0.1, (3, 3))
    target = np.clip(initial * gain[which] + offset[which] + rng.normal(0, 0.01, (n, 3)), 0, 1).astype(np.float32)
    weight = np.where(rng.random(n) < 0.5, rng.random(n), 0.0)
    edge = (rng.random(n) * 0.1).astype(np.float32)
    return initial, target, weight, edge


def assert_same(fast: regions.RegionMap, ref: regions.RegionMap) -> None:
    np.testing.assert_allclose(fast.centres, ref.centres, rtol=0, atol=0)  # the same k-means call
    assert fast.sigma == ref.sigma
    np.testing.assert_allclose(fast.maps, ref.maps, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast.support, ref.support, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(fast.texels, ref.texels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_learn_and_apply_match_the_reference(seed, one_thread):
    initial, target, weight, edge = pairs(seed)
    ref = regions_reference.reference_learn_regions(initial, target, weight, 6, 20, edge=edge, seed=seed)
    fast = regions.learn_regions(initial, target, weight, 6, 20, edge=edge, seed=seed)
    assert_same(fast, ref)
    assert np.abs(fast.maps - np.concatenate([np.eye(3), np.zeros((1, 3))])).max() > 0.05  # the maps do move colours
    np.testing.assert_allclose(fast.membership(initial), regions_reference.reference_membership(ref, initial),
                               rtol=0, atol=1e-12)
    want = regions_reference.reference_apply(ref, initial)
    got = fast.apply(initial)
    assert got.dtype == np.float32 and got.shape == initial.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    np.testing.assert_allclose(fast.apply(initial, chunk=997), got, rtol=0, atol=1e-7)  # chunks change nothing


def test_subsampled_observations_and_texels_beyond_a_chunk(one_thread):
    """More observed pairs than max_samples (the subsample and its weight scale) and more texels than one
    membership chunk (32k on the CPU)."""
    initial, target, weight, edge = pairs(5, n=40_000)
    kw = dict(regions=8, min_texels=20, edge=edge, seed=3, max_samples=5000)
    ref = regions_reference.reference_learn_regions(initial, target, weight, **kw)
    fast = regions.learn_regions(initial, target, weight, **kw)
    assert_same(fast, ref)
    assert fast.texels.sum() == len(initial)
    np.testing.assert_allclose(fast.apply(initial), regions_reference.reference_apply(ref, initial), rtol=0, atol=1e-6)


def test_nothing_observed_keeps_every_colour(one_thread):
    initial, target, _, _ = pairs(7, n=500)
    fast = regions.learn_regions(initial, target, np.zeros(len(initial)), 4, 20)
    ref = regions_reference.reference_learn_regions(initial, target, np.zeros(len(initial)), 4, 20)
    assert_same(fast, ref)
    np.testing.assert_allclose(fast.apply(initial), initial, rtol=0, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_the_cpu():
    initial, target, weight, edge = pairs(11, n=50_000)
    cpu = regions.learn_regions(initial, target, weight, 8, 20, edge=edge)
    gpu = regions.learn_regions(initial, target, weight, 8, 20, edge=edge, device="cuda")
    assert gpu.device == "cuda"
    assert_same(gpu, cpu)
    np.testing.assert_allclose(gpu.apply(initial), cpu.apply(initial), rtol=0, atol=1e-6)


def test_clusters_from_another_thread_are_the_same(one_thread):
    """The job computes the k-means on a host thread (OpenCV's RNG is per thread): the same regions result."""
    from concurrent.futures import ThreadPoolExecutor

    initial, target, weight, edge = pairs(13, n=20_000)
    with ThreadPoolExecutor(1) as pool:
        clusters = pool.submit(regions.cluster_colours, initial, 8, 4, 5000).result()
    threaded = regions.learn_regions(initial, target, weight, 8, 20, edge=edge, seed=4, max_samples=5000,
                                     clusters=clusters)
    ref = regions_reference.reference_learn_regions(initial, target, weight, 8, 20, edge=edge, seed=4, max_samples=5000)
    assert_same(threaded, ref)
