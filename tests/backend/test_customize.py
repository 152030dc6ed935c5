"""Customize-It-3D end to end on CPU with tiny diffusion models, through the refine contract; its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from likeness3d.backend.demo import write_inputs
from likeness3d.backend.synthetic.example import example_case
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
    from likeness3d.backend.synthetic.example import ExampleCase

    small = ExampleCase(case.initial, case.truth, case.references[:2], case.eval_views[:2])
    return small, write_inputs(small, tmp_path_factory.mktemp("in"))


def test_customize_end_to_end_with_tiny_models(inputs, tmp_path):
    from diffusers import StableDiffusionPipeline

    from likeness3d.backend.stages.diffusion.components import load_components

    case, paths = inputs
    out = tmp_path / "out"
    report = refine("customize", paths["mesh"], paths["refs"], "pebble", out, device="cpu", models="tiny",
                    eval_views=paths["truth"], overrides=SMALL)
    names = sorted(p.name for p in out.iterdir() if p.is_file())
    assert names == ["mesh.glb", "pytorch_lora_weights.safetensors", "report.json", "sheet.png", "splats.ply", "texture.png"]
    assert report == json.loads((out / "report.json").read_text())
    assert report["pipeline"] == "customize" and report["degraded"] and "noise" in report["diffusion_model"]
    assert list(report["dreambooth"]) == ["method", "text_encoder_trained", "mask", "depth", "normal", "rgb"]
    assert report["prior_preservation"] == {"ran": False} and report["refine"]["novel_view_loss"] == "sds"
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


def test_customize_with_pseudo_views_prior_preservation_and_full_fine_tune(inputs, tmp_path, monkeypatch):
    from likeness3d.backend.stages.diffusion.train import prior as prior_mod

    _, paths = inputs
    monkeypatch.setenv("LIKENESS3D_CACHE", str(tmp_path / "cache"))
    generated = []
    real = prior_mod.generate_class_images
    monkeypatch.setattr(prior_mod, "generate_class_images", lambda *a, **k: generated.append(a[2]) or real(*a, **k))
    options = {**SMALL, "coarse_steps": 2, "refine_steps": 6, "bake_azimuths": 2, "refine_novel": "pseudo",
               "pseudo_views": 3, "prior_preservation": True, "class_images": 2, "class_image_steps": 2,
               "dreambooth_method": "full", "dreambooth_steps": [1, 0, 0, 2]}
    reports = []
    for run in ("first", "second"):
        out = tmp_path / run
        reports.append(refine("customize", paths["mesh"], paths["refs"], "pebble", out, device="cpu", models="tiny",
                              overrides=options))
        assert (out / ".work" / "dreambooth" / "text_encoder" / "config.json").is_file()
        assert (out / ".work" / "dreambooth" / "unet" / "config.json").is_file()
    first, second = reports
    assert generated == [2]  # the second job read the class images from the cache
    assert first["prior_preservation"]["ran"] and not first["prior_preservation"]["from_cache"]
    assert second["prior_preservation"]["from_cache"] and second["prior_preservation"]["class_images"] == 2
    prior = first["prior_preservation"]
    assert prior["class_prompt"] == "a rgb photo of pebble" and prior["modalities"] == ["rgb"]
    assert prior["cache"].startswith(str(tmp_path / "cache" / "class_images")) and prior["last_prior_loss"] > 0
    assert first["dreambooth"]["method"] == "full" and first["dreambooth"]["text_encoder_trained"]
    refined = first["refine"]
    assert refined["novel_view_loss"] == "pseudo" and not refined["sds_on_novel_views"] and refined["steps"] == 6
    assert refined["pseudo_views"]["views"] == 3 and all(0.04 <= s <= 0.15 for s in refined["pseudo_views"]["strengths"])
    assert {"class_images", "pseudo_views"} <= set(first["seconds"]) and "class_images" in second["seconds"]


def test_new_options_are_checked_and_named():
    spec = get_pipeline("customize")
    cfg = spec.build_config({"prior_preservation": True, "class_images": 20, "prior_weight": 0.5, "class_image_steps": 25,
                             "dreambooth_method": "full", "train_text_encoder": False, "refine_novel": "pseudo",
                             "pseudo_views": 12, "pseudo_strength": [0.1, 0.2], "pseudo_weight": 10})
    assert cfg.pseudo_strength == (0.1, 0.2) and cfg.pseudo_weight == 10.0 and not cfg.train_text_encoder
    defaults = CustomizeConfig()
    assert not defaults.prior_preservation and defaults.class_images == 200 and defaults.prior_weight == 1.0
    assert defaults.train_text_encoder and defaults.refine_novel == "sds" and defaults.pseudo_views == 33
    assert defaults.pseudo_strength == (0.05, 0.15)
    bad = [({"refine_novel": "img2img"}, "refine_novel must be 'sds' or 'pseudo', got 'img2img'"),
           ({"pseudo_views": 0}, "pseudo_views must be an integer in .*, got 0"),
           ({"pseudo_strength": [0.2, 0.1]}, r"pseudo_strength must be .*, got \(0.2, 0.1\)"),
           ({"pseudo_strength": [0.01, 0.1]}, r"pseudo_strength must be .*, got \(0.01, 0.1\)"),
           ({"pseudo_strength": [0.1]}, r"pseudo_strength must be .*, got \(0.1,\)"),
           ({"pseudo_weight": -1}, "pseudo_weight must be a number >= 0, got -1"),
           ({"class_images": 0}, "class_images must be an integer in .*, got 0"),
           ({"prior_weight": 0}, "prior_weight must be a number > 0, got 0"),
           ({"class_image_steps": 0}, "class_image_steps must be an integer in .*, got 0"),
           ({"prior_preservation": True, "dreambooth_steps": [1, 1, 1, 0]}, r"dreambooth_steps\[3\] must be > 0"),
           ({"train_text_encoder": "yes"}, "train_text_encoder must be bool, got str 'yes'"),
           ({"prior_preservation": 1}, "prior_preservation must be bool, got int 1")]
    for settings, message in bad:
        with pytest.raises(Exception, match=message):
            spec.build_config(settings)
    with pytest.raises(ValueError, match="refine_novel must be 'sds' or 'pseudo', got 'SDS'"):
        CustomizeConfig(refine_novel="SDS")
    with pytest.raises(ValueError, match="train_text_encoder must be true or false, got 1"):
        CustomizeConfig(train_text_encoder=1)


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
