"""TIRE with its rays cast by Warp (on Warp's CPU device here) end to end, against the same job on Embree; the
ray backend named in report.json; Warp asked for but missing is a typed config error saying what to install."""

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from likeness3d.backend.config import config_from_dict
from likeness3d.backend.synthetic.example import example_case
from likeness3d.protocol.assets import Asset
from likeness3d.protocol.errors import BadMessage

SMALL = {"resolution": 32, "azimuths": 4, "elevations_deg": [0.0], "gaussians": 300, "fit_steps": 6,
         "fit_resolution": 24, "turntable_views": 2, "texture_size": 64}


def test_tire_on_warp_matches_tire_on_embree(tmp_path, one_thread):
    pytest.importorskip("warp", reason="warp-lang is in the backend extra")
    from likeness3d.backend.context import JobContext
    from likeness3d.backend.pipelines.tire import TireConfig, run

    case = example_case(image_size=48, texture_size=64)
    asset = Asset(case.initial, case.references, "pebble", "pebble")
    out = {}
    for backend in ("warp", "embree"):
        ctx = JobContext(tmp_path / backend, tmp_path / f"work_{backend}")
        report = run(ctx, asset, config_from_dict(TireConfig, {**SMALL, "ray_backend": backend}), list(case.eval_views[:2]))
        assert report["rays"] == {"backend": backend, "device": "cpu", "why": "asked for"}
        assert json.loads((tmp_path / backend / "report.json").read_text())["rays"]["backend"] == backend
        out[backend] = (report, np.asarray(Image.open(tmp_path / backend / "texture.png"), np.float32) / 255)
    (rw, tw), (re_, te) = out["warp"], out["embree"]
    assert rw["views"]["targets"] == re_["views"]["targets"]
    assert abs(rw["coverage"]["observed_by_references"] - re_["coverage"]["observed_by_references"]) <= 0.01
    assert np.abs(tw - te).mean() <= 0.01  # the same texture but for texels at triangle edges
    for key in ("psnr_observed", "psnr_infilled"):
        assert abs(rw["metrics"][key] - re_["metrics"][key]) <= 0.5, key


def test_auto_on_the_cpu_is_embree_and_says_why(tmp_path, one_thread):
    from likeness3d.backend.pipelines.tire import TireConfig

    cfg = config_from_dict(TireConfig, SMALL)
    assert cfg.ray_backend == "auto"
    with pytest.raises(BadMessage, match=r"ray_backend must be one of \['auto', 'embree', 'warp'\], got 'optix'"):
        config_from_dict(TireConfig, {**SMALL, "ray_backend": "optix"})


def test_warp_asked_for_but_missing_names_what_to_install(monkeypatch):
    from likeness3d.backend.pipelines.customize import CustomizeConfig
    from likeness3d.backend.pipelines.tire import TireConfig

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "warp" else real(name, *a))
    for config in (TireConfig, CustomizeConfig):
        with pytest.raises(BadMessage, match="ray_backend 'warp' needs NVIDIA Warp.*pip install warp-lang") as err:
            config_from_dict(config, {"ray_backend": "warp"})
        assert err.value.field.endswith("ray_backend")
    assert config_from_dict(TireConfig, {"ray_backend": "embree"}).ray_backend == "embree"
