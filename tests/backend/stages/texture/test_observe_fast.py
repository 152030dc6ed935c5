"""The observe stage and the compositing as TIRE runs them, against the stage as it was (`bench/observe_stage.py`'s
`before`: the colour regions in numpy with their k-means in line, the observations and the renders' filtering on
the host): the same observed texels, the same kept / from_references / infilled counts, the same texture; and a
CUDA job against a CPU one."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[4] / "bench"
sys.path.insert(0, str(BENCH))

import observe_stage  # noqa: E402

from likeness3d.backend.stages.texture import fidelity  # noqa: E402
from likeness3d.backend.stages.texture.config import FidelityConfig  # noqa: E402
from likeness3d.backend.stages.views.mesh_passes import Raycaster  # noqa: E402
from likeness3d.backend.synthetic.example import example_case  # noqa: E402


@pytest.fixture(scope="module")
def case():
    return example_case(image_size=96, texture_size=128)


@pytest.mark.parametrize("config", [FidelityConfig(), FidelityConfig(regions=8, agree_area_px=1, feather_px=0.0)],
                         ids=["default", "opening"])
def test_the_stage_gives_what_it_gave(case, config):
    caster = Raycaster(case.initial)
    with observe_stage.before():
        old = observe_stage.one_run(case, caster, config, (128, 128), "cpu")
    new = observe_stage.one_run(case, caster, config, (128, 128), "cpu")
    check = observe_stage.compare(old, new)
    assert old["fid"].regions.__class__.__name__ == "ReferenceRegionMap"  # the before run was the reference
    assert new["fid"].regions.__class__.__name__ == "RegionMap"
    assert check["observed"][0] == check["observed"][1] > 1000
    assert check["counts_equal"], check
    assert check["counts_after"]["kept"] > 0 and check["counts_after"]["from_references"] > 0
    assert check["observation_colour_max_diff"] < 1e-6 and check["disagreement_max_diff"] < 1e-6
    assert check["region_maps_max_diff"] < 1e-9 and check["region_texels_equal"]
    assert check["mapped_max_diff"] < 1e-6
    # float32 mapped colours within 1e-6 round to the same 8-bit level except at an exact half level
    assert check["texture_max_diff_levels"] <= 1 and check["texture_texels_differing"] <= 3
    np.testing.assert_array_equal(old["composed"].kept, new["composed"].kept)
    assert fidelity.learn_regions.__module__.endswith("regions")  # the context put everything back


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_cuda_job_gives_what_the_cpu_gives(case):
    """The regions, observations and comparisons on CUDA (float64 blurs: no TF32) against the same stage on the
    CPU; atomics change the summation order, so a handful of texels on a threshold may differ."""
    from likeness3d.backend.stages.views.rays import RaySpec

    config = FidelityConfig()
    cpu = observe_stage.one_run(case, Raycaster(case.initial, RaySpec("embree", "cpu")), config, (128, 128), "cpu")
    gpu = observe_stage.one_run(case, Raycaster(case.initial, RaySpec("embree", "cuda")), config, (128, 128), "cuda")
    assert gpu["fid"].regions.device == "cuda"
    check = observe_stage.compare(cpu, gpu)
    used = check["counts_after"]["used"]
    for key in ("kept", "from_references", "infilled"):
        assert abs(check["counts_before"][key] - check["counts_after"][key]) <= 0.001 * used, check
    assert abs(check["observed"][0] - check["observed"][1]) <= 0.001 * used
    both = cpu["fid"].observation.observed & gpu["fid"].observation.observed
    colour = (cpu["fid"].observation.colour - gpu["fid"].observation.colour)[both].abs()
    assert float(colour.quantile(0.999)) < 1e-4  # texels on a depth test's edge may see another photo mix
    assert np.quantile(np.abs(cpu["fid"].mapped - gpu["fid"].mapped), 0.999) < 1e-3
    assert check["texture_texels_differing"] <= 0.002 * used
