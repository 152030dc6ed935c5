"""Customize-It-3D end to end on CPU with tiny diffusion models, through the refine contract; its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from likeness3d.backend.demo import write_inputs
from likeness3d.backend.example import example_case
from likeness3d.backend.export.glb import read_glb
from likeness3d.backend.pipelines import get_pipeline
from likeness3d.backend.pipelines.customize import PRESETS, CustomizeConfig
from likeness3d.backend.refine import refine

pytestmark = pytest.mark.usefixtures("one_thread")

# 32 px, a few steps of everything; refine lr 1e-2 and 1 px splats so 80 steps reproduce the reference.
SMALL = {"resolution": 32, "dreambooth_resolution": 32, "dreambooth_steps": [1, 1, 1, 1], "coarse_steps": 4,
         "coarse_resolution": 32, "gaussians": 500, "sds_resolution": 32, "points": 1500, "refine_steps": 80,
         "refine_lr": 1e-2, "splat_radius_px": 1.0, "bake_azimuths": 4, "texture_size": 64, "turntable_views": 2}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    case = example_case(image_size=32, texture_size=64)
    from likeness3d.backend.example import ExampleCase

    small = ExampleCase(case.initial, case.truth, case.references[:2], case.eval_views[:2])
    return small, write_inputs(small, tmp_path_factory.mktemp("in"))


def test_customize_end_to_end_with_tiny_models(inputs, tmp_path):
    from diffusers import StableDiffusionPipeline

    from likeness3d.backend.stages.diffusion.models import load_components

    case, paths = inputs
    out = tmp_path / "out"
    report = refine("customize", paths["mesh"], paths["refs"], "pebble", out, device="cpu", models="tiny",
                    eval_views=paths["truth"], overrides=SMALL)
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == ["mesh.glb", "pytorch_lora_weights.safetensors", "report.json", "sheet.png", "splats.ply", "texture.png"]
    assert report == json.loads((out / "report.json").read_text())
    assert report["pipeline"] == "customize" and report["degraded"] and "noise" in report["diffusion_model"]
    assert list(report["dreambooth"]) == ["method", "mask", "depth", "normal", "rgb"]
    assert report["coarse"]["steps"] == 4 and report["coarse"]["modes"]["normal"] >= 1
    assert report["refine"]["sds_on_novel_views"] and report["refine"]["reference_psnr"] >= 25.0
    assert set(report["metrics"]) >= {"psnr_observed", "psnr_infilled", "psnr_infilled_initial", "ssim_observed"}
    glb = read_glb((out / "mesh.glb").read_bytes())
    np.testing.assert_allclose(glb.vertices[glb.faces], case.initial.vertices[case.initial.faces], atol=1e-5)
    ply = (out / "splats.ply").read_bytes()
    assert b"element vertex 1500" in ply[:400] and b"f_dc_0" in ply[:600] and b"f_rest" not in ply[:600]
    # the LoRA loads into a diffusers pipeline
    parts = {k: getattr(load_components("base", "tiny"), k) for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.load_lora_weights(str(out))
    assert any("lora" in k for k in pipe.unet.state_dict())


def test_without_models_the_cli_says_why(inputs, tmp_path, monkeypatch):
    _, paths = inputs
    env = {k: v for k, v in __import__("os").environ.items() if k != "LIKENESS3D_MODELS"}
    cmd = [sys.executable, "-m", "likeness3d.backend.cli", "refine", "customize", "--mesh", str(paths["mesh"]),
           "--refs", str(paths["refs"]), "--class", "pebble", "--out", str(tmp_path / "out"), "--device", "cpu"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "model_missing" in run.stderr and "no classical fallback" in run.stderr and "--models" in run.stderr


def test_registered_with_presets_and_checked_config():
    spec = get_pipeline("customize")
    assert spec.config_cls is CustomizeConfig and set(PRESETS) == {"fast", "quality"}
    assert CustomizeConfig().dreambooth_steps == (25, 50, 50, 75) and CustomizeConfig().t_range == (0.2, 0.6)
    assert CustomizeConfig().points == 700_000 and CustomizeConfig().features == 16
    spec.build_config(PRESETS["fast"])
    assert spec.build_config({"dreambooth_method": "full"}).dreambooth_method == "full"
    with pytest.raises(Exception, match="dreambooth_method"):
        spec.build_config({"dreambooth_method": "dora"})
    with pytest.raises(Exception, match="t_schedule"):
        spec.build_config({"t_schedule": "cosine"})
    with pytest.raises(Exception, match="resolution must be a multiple of 8"):
        spec.build_config({"resolution": 30})


def test_module_imports_no_torch():
    code = "import sys; import likeness3d.backend.pipelines.customize; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr


def test_addon_presets_are_valid_configs():
    import importlib.util
    from pathlib import Path

    import likeness3d

    # addon/presets.py needs no bpy, but the addon package does: load the file alone
    path = Path(likeness3d.__file__).parent / "addon" / "presets.py"
    spec_ = importlib.util.spec_from_file_location("addon_presets", path)
    module = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(module)
    ADDON = module.PRESETS

    spec = get_pipeline("customize")
    for quality, settings in ADDON["customize"].items():
        spec.build_config(settings)
    fast = spec.build_config(PRESETS["fast"])
    assert spec.build_config(ADDON["customize"]["DRAFT"]) == fast
