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
from likeness3d.backend.config import ConfigError
from likeness3d.backend.pipelines.customize import PRESETS, CustomizeConfig
from likeness3d.backend.stages.customize.config import PointRefineConfig
from likeness3d.backend.stages.diffusion.config import MultiModalConfig
from likeness3d.protocol.errors import BadMessage
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
    assert report["rays"]["backend"] == "embree" and report["rays"]["why"].startswith("auto")  # the CPU's default
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
    splats = report["splats"]  # what the file holds: the decoder's colours at the points, said in the report
    assert "decoder's output" in splats["holds"] and splats["points"] == 1500
    assert 0 < splats["coloured_from_decoded_views"] <= 1500 and splats["opacity"] == 0.9
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
    assert refined["pseudo_views"]["views"] == 3 and all(0.05 <= s <= 0.15 for s in refined["pseudo_views"]["strengths"])
    assert {"class_images", "pseudo_views"} <= set(first["seconds"]) and "class_images" in second["seconds"]


def test_new_options_are_checked_and_named():
    spec = get_pipeline("customize")
    cfg = spec.build_config({"prior": {"enabled": True, "class_images": 20, "weight": 0.5, "steps": 25},
                             "dreambooth": {"method": "full", "train_text_encoder": False}, "refine": {"novel": "pseudo"},
                             "pseudo": {"views": 12, "strength": [0.1, 0.2], "weight": 10}})
    assert cfg.pseudo.strength == (0.1, 0.2) and cfg.pseudo.weight == 10.0 and not cfg.dreambooth.train_text_encoder
    assert cfg.prior.enabled and cfg.prior.class_images == 20 and cfg.refine.novel == "pseudo"
    defaults = CustomizeConfig()
    assert not defaults.prior.enabled and defaults.prior.class_images == 200 and defaults.prior.weight == 1.0
    assert defaults.dreambooth.train_text_encoder and defaults.refine.novel == "sds" and defaults.pseudo.views == 33
    assert defaults.pseudo.strength == (0.05, 0.15)
    # each bad value is a bad_message naming its place in the tree, the rule and the value
    bad = [({"refine": {"novel": "img2img"}}, "config.refine.novel", "must be 'sds' or 'pseudo', got 'img2img'"),
           ({"pseudo": {"views": 0}}, "config.pseudo.views", "must be an integer in .*, got 0"),
           ({"pseudo": {"strength": [0.2, 0.1]}}, "config.pseudo.strength", r"must be \[lo, hi\].*, got \(0.2, 0.1\)"),
           ({"pseudo": {"strength": [0.001, 0.009]}}, "config.pseudo.strength", "whole number of denoising steps"),
           ({"pseudo": {"strength": [0.1]}}, "config.pseudo.strength", "must have 2 items, got 1"),
           ({"pseudo": {"weight": -1}}, "config.pseudo.weight", "must be >= 0, got -1"),
           ({"prior": {"class_images": 0}}, "config.prior.class_images", "must be an integer in .*, got 0"),
           ({"prior": {"weight": 0}}, "config.prior.weight", "must be a number > 0, got 0"),
           ({"prior": {"steps": 0}}, "config.prior.steps", "must be an integer in .*, got 0"),
           ({"prior": {"enabled": True}, "dreambooth": {"steps": [1, 1, 1, 0]}}, "config.prior", r"dreambooth.steps\[3\] must be > 0"),
           ({"dreambooth": {"train_text_encoder": "yes"}}, "config.dreambooth.train_text_encoder", "must be bool, got str 'yes'"),
           ({"prior": {"enabled": 1}}, "config.prior.enabled", "must be bool, got int 1")]
    for settings, field, message in bad:
        with pytest.raises(BadMessage, match=message) as err:
            spec.build_config(settings)
        assert err.value.field == field and field in err.value.message
    with pytest.raises(ConfigError, match="PointRefineConfig.novel must be 'sds' or 'pseudo', got 'SDS'"):
        PointRefineConfig(novel="SDS")
    with pytest.raises(ConfigError, match="MultiModalConfig.train_text_encoder must be true or false, got 1"):
        MultiModalConfig(train_text_encoder=1)


def test_flat_names_from_before_the_tree_keep_working():
    """The flat keys users passed before the config tree land on their new place; giving both is an error
    that names both."""
    spec = get_pipeline("customize")
    cfg = spec.build_config({"prior_preservation": True, "class_images": 20, "dreambooth_method": "full",
                             "refine_novel": "pseudo", "pseudo_strength": [0.1, 0.2], "lora_rank": 8, "grad_clip": 0,
                             "texture_size": 256, "coarse_steps": 7, "refine_lr": 0.01})
    assert cfg.prior.enabled and cfg.prior.class_images == 20 and cfg.dreambooth.method == "full"
    assert cfg.refine.novel == "pseudo" and cfg.pseudo.strength == (0.1, 0.2) and cfg.coarse.steps == 7
    assert (cfg.dreambooth.lora.rank, cfg.dreambooth.lora.alpha) == (8, 8.0)  # the flat rank set both, as before
    assert cfg.dreambooth.lora.adapter_name == "customize"  # the rest of the tree's default stays
    assert cfg.sds.grad_clip is None and cfg.bake.texture_size == (256, 256) and cfg.refine.learning_rate == 0.01
    with pytest.raises(BadMessage, match="'refine_steps' is the old name of 'refine.steps', which is given too"):
        spec.build_config({"refine_steps": 5, "refine": {"steps": 6}})
    with pytest.raises(BadMessage, match="config.refine.steps must be a positive integer, got 0"):
        spec.build_config({"refine_steps": 0})


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
    assert CustomizeConfig().dreambooth.steps == (25, 50, 50, 75) and CustomizeConfig().sds.t_range == (0.2, 0.6)
    assert CustomizeConfig().refine.points == 700_000 and CustomizeConfig().refine.features == 16
    assert CustomizeConfig().sds.guidance_scale == 100.0 and CustomizeConfig().sds.resolution == 512
    fast = spec.build_config(PRESETS["fast"])
    assert fast.refine.steps == 16 and fast.coarse.gaussians == 1000 and fast.refine.sds_weight == 1.0
    assert fast.dreambooth.resolution == fast.sds.resolution == fast.resolution == 64  # a wiring check
    assert spec.build_config({"dreambooth": {"method": "full"}}).dreambooth.method == "full"
    with pytest.raises(BadMessage, match="config.dreambooth.method must be 'lora' or 'full', got 'dora'"):
        spec.build_config({"dreambooth": {"method": "dora"}})
    with pytest.raises(BadMessage, match="config.sds.schedule must be one of"):
        spec.build_config({"t_schedule": "cosine"})
    with pytest.raises(BadMessage, match="config.resolution must be a multiple of 8"):
        spec.build_config({"resolution": 30})


def test_module_imports_no_torch():
    code = "import sys; import likeness3d.backend.pipelines.customize; print('torch' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "False", run.stderr


def test_addon_presets_are_valid_configs():
    import importlib.util
    from pathlib import Path

    import likeness3d

    # addon/presets.py needs no bpy, but the addon package does: load the file alone, inside the package's
    # name so its relative import of protocol/ resolves
    path = Path(likeness3d.__file__).parent / "addon" / "presets.py"
    spec_ = importlib.util.spec_from_file_location("likeness3d.addon.presets", path)
    module = importlib.util.module_from_spec(spec_)
    module.__package__ = "likeness3d.addon"
    spec_.loader.exec_module(module)
    ADDON = module.PRESETS

    from likeness3d.backend.pipelines import tire

    for name, backend_presets in (("customize", PRESETS), ("tire", tire.PRESETS)):
        spec = get_pipeline(name)
        for quality, settings in ADDON[name].items():
            spec.build_config(settings)
        # the add-on's draft is the backend's fast preset, and the artist's extra settings merge into the tree
        assert spec.build_config(ADDON[name]["DRAFT"]) == spec.build_config(backend_presets["fast"])
    merged = module.build_config("tire", "DRAFT", '{"fit.steps": 40, "resplat": {"rounds": 0}}')
    cfg = get_pipeline("tire").build_config(merged)
    assert cfg.fit.steps == 40 and cfg.fit.refine_start == 37 and cfg.resplat.rounds == 0 and cfg.resplat.gaussians == 2500
