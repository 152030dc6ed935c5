"""The `video` pipeline end to end through the command line with tiny Wan models, and its typed errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from likeness3d.backend import cli
from likeness3d.backend.config import config_from_dict
from likeness3d.backend.inputs.transforms import write_transforms
from likeness3d.backend.pipelines import get_pipeline
from likeness3d.backend.pipelines.video import VideoConfig
from likeness3d.protocol.assets import Asset, Camera, Mesh, Reference
from likeness3d.protocol.errors import BadMessage, InvalidAsset

CLI = [sys.executable, "-m", "likeness3d.backend.cli"]


def ring_references(n: int = 4, size: int = 24) -> list[Reference]:
    """n photos of a painted disc on transparent background from cameras on a circle around the origin."""
    refs = []
    for i in range(n):
        a = 2 * np.pi * i / n
        eye = 3.0 * np.array([np.cos(a), np.sin(a), 0.3])
        z = -eye / np.linalg.norm(eye)
        x = np.cross(z, [0, 0, 1.0])
        x /= np.linalg.norm(x)
        c2w = np.eye(4)
        c2w[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
        c2w[:3, 3] = eye
        K = np.array([[30.0, 0, (size - 1) / 2], [0, 30.0, (size - 1) / 2], [0, 0, 1]])
        img = np.zeros((size, size, 4), np.uint8)
        yy, xx = np.mgrid[:size, :size]
        disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
        img[disc] = (60 * i % 255, 120, 200, 255)
        refs.append(Reference(f"view_{i}", img, Camera(K, np.linalg.inv(c2w), size, size)))
    return refs


@pytest.fixture(scope="module")
def refs_file(tmp_path_factory) -> Path:
    return write_transforms(tmp_path_factory.mktemp("refs") / "transforms.json", ring_references())


def test_refine_video_with_tiny_models_writes_video_frames_loras_and_report(refs_file, tmp_path):
    from likeness3d.backend.stages.video.mp4 import read_mp4

    out = tmp_path / "out"
    env = dict(os.environ, OMP_NUM_THREADS="2")
    start = time.perf_counter()
    proc = subprocess.run(CLI + ["refine", "video", "--refs", str(refs_file), "--class", "sneaker", "--out", str(out),
                                 "--models", "tiny", "--device", "cpu", "--prompt", "a video of a sks sneaker on a beach"],
                          capture_output=True, text=True, timeout=600, env=env)
    seconds = time.perf_counter() - start
    print(f"refine video --models tiny: {seconds:.1f} s wall")  # the budget: 3 min on 2 CPU cores
    assert proc.returncode == 0, proc.stderr
    frames, codec = read_mp4(out / "video.mp4")
    assert codec == "h264" and frames.shape == (9, 32, 32, 3)
    assert read_mp4(out / "video_1.mp4")[0].shape[0] == 9
    assert sorted(p.name for p in out.glob("frame_*.png")) == [f"frame_{i:04d}.png" for i in range(9)]
    assert len(list(out.glob("video_1_frame_*.png"))) == 9
    assert (out / "lora_3dreambooth.safetensors").is_file() and (out / "lora_3dapter.safetensors").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["pipeline"] == "video" and report["models"]["video"]["degraded"]
    assert any("noise" in d for d in report["degraded"]) and any("3Dapter not pre-trained" in d for d in report["degraded"])
    assert report["dreambooth"]["steps"] == 12 and report["dreambooth"]["generated_temporal_indices"] == [0]
    assert report["3dapter"] == report["3dapter"] | {"enabled": True, "pretrained": False, "steps": 12}
    assert len(report["views"]["conditioning"]) == 4 and report["views"]["uncovered_arc_degrees"] == 0
    assert report["3dapter"]["conditioning_temporal_indices"] == [1, 2, 3, 4]
    assert {"load", "views", "dreambooth", "generate_0", "generate_1", "total"} <= set(report["seconds"])
    assert report["peak_memory"]["cpu_max_rss_mb"] > 0
    assert [v["file"] for v in report["videos"]] == ["video.mp4", "video_1.mp4"]
    assert "turntable" in report["videos"][0]["prompt"] and report["videos"][1]["frames"] == 9


def _pair(folder: Path, name: str, seed: int) -> None:
    from PIL import Image

    g = np.random.default_rng(seed)
    (folder / name).mkdir(parents=True)
    Image.fromarray((g.random((32, 32, 3)) * 255).astype(np.uint8)).save(folder / name / "reference.png")
    Image.fromarray((g.random((40, 32, 3)) * 255).astype(np.uint8)).save(folder / name / "target.png")
    (folder / name / "prompt.txt").write_text("a shoe on a wooden floor\n")


def test_train_3dapter_then_the_subject_stage_loads_it_from_the_models_folder(refs_file, tmp_path, capsys):
    import torch

    from likeness3d.backend.stages.video.components import load_video_components

    models = tmp_path / "models"
    load_video_components("tiny", device="cpu", dtype=torch.float32).pipeline().save_pretrained(models / "video")
    pairs = tmp_path / "pairs"
    _pair(pairs, "a", 0)
    _pair(pairs, "b", 1)
    assert cli.main(["train-3dapter", "--pairs", str(pairs), "--out", str(models / "adapter"), "--models", str(models),
                     "--device", "cpu", "--steps", "3", "--size", "32", "--set", "rank=4"]) == 0
    meta = json.loads((models / "adapter" / "adapter_config.json").read_text())
    assert meta["steps"] == 3 and meta["pairs"] == 2 and meta["rank"] == 4
    out = tmp_path / "out"
    assert cli.main(["refine", "video", "--refs", str(refs_file), "--class", "sneaker", "--out", str(out), "--models",
                     str(models), "--device", "cpu", "--preset", "smoke", "--no-turntable", "--frames", "5",
                     "--prompt", "a video of a sks sneaker in the rain"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["3dapter"]["pretrained"] and report["3dapter"]["source"] == str(models / "adapter")
    assert report["3dapter"]["pretraining"]["steps"] == 3 and not report["models"]["video"]["degraded"]
    assert not any("3Dapter" in d for d in report["degraded"])
    assert [v["frames"] for v in report["videos"]] == [5]


def test_train_3dapter_names_a_pair_that_lacks_a_file(tmp_path, capsys):
    (tmp_path / "pairs" / "p1").mkdir(parents=True)
    (tmp_path / "pairs" / "p1" / "reference.png").write_bytes(b"")
    assert cli.main(["train-3dapter", "--pairs", str(tmp_path / "pairs"), "--out", str(tmp_path / "a"), "--models", "tiny"]) == 2
    err = capsys.readouterr().err
    assert "invalid_asset" in err and "'p1'" in err and "target.png" in err and "prompt.txt" in err


def _asset(refs):
    mesh = Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), np.array([[0, 1, 2]], np.int32))
    return Asset(mesh, tuple(refs), "sneaker")


def test_no_references_and_one_reference_are_typed_errors_naming_the_field(tmp_path):
    from likeness3d.backend.refine import printing_context

    spec = get_pipeline("video")
    config = config_from_dict(VideoConfig, {"models": "tiny"})
    ctx = printing_context(tmp_path, "cpu")
    with pytest.raises(InvalidAsset, match="got none") as none:
        spec.run(ctx, _asset([]), config)
    assert none.value.field == "references"
    with pytest.raises(InvalidAsset, match="3Dapter .* needs at least 2 references, got 1") as one:
        spec.run(ctx, _asset(ring_references(1)), config)
    assert one.value.field == "references" and "adapter.enabled=false" in one.value.message


def test_a_prompt_without_the_identifier_and_frames_not_4k_plus_1_are_typed_errors():
    with pytest.raises(BadMessage, match="identifier 'sks'") as prompt:
        config_from_dict(VideoConfig, {"prompts": ["a video of a sneaker on a beach"]})
    assert prompt.value.field == "config.prompts"
    with pytest.raises(BadMessage, match="4k \\+ 1") as frames:
        config_from_dict(VideoConfig, {"generate": {"frames": 10}})
    assert frames.value.field == "config.generate.frames"
    with pytest.raises(BadMessage) as size:
        config_from_dict(VideoConfig, {"generate": {"width": 100}})
    assert size.value.field == "config.generate.width"


def test_the_command_line_reports_bad_flags_with_the_field(refs_file, tmp_path, capsys):
    base = ["refine", "video", "--refs", str(refs_file), "--class", "sneaker", "--out", str(tmp_path), "--models", "tiny"]
    assert cli.main(base + ["--frames", "10"]) == 2
    assert "config.generate.frames" in capsys.readouterr().err
    assert cli.main(base + ["--prompt", "a sneaker on a beach"]) == 2
    assert "config.prompts" in capsys.readouterr().err
    one = write_transforms(tmp_path / "one" / "transforms.json", ring_references(1))
    assert cli.main(["refine", "video", "--refs", str(one), "--class", "sneaker", "--out", str(tmp_path), "--models", "tiny"]) == 2
    assert "needs at least 2 references" in capsys.readouterr().err


def test_a_missing_video_model_is_model_missing_naming_the_role_and_folder(refs_file, tmp_path, capsys):
    (tmp_path / "models").mkdir()
    assert cli.main(["refine", "video", "--refs", str(refs_file), "--class", "sneaker", "--out", str(tmp_path / "o"),
                     "--models", str(tmp_path / "models")]) == 2
    err = capsys.readouterr().err
    assert "model_missing" in err and "'video'" in err and str(tmp_path / "models" / "video") in err


def test_with_mesh_the_asset_renders_join_the_views_and_close_the_circle(tmp_path):
    from likeness3d.backend.demo import write_inputs
    from likeness3d.backend.synthetic.example import example_case

    paths = write_inputs(example_case(image_size=32, texture_size=32), tmp_path / "in")  # 3 references on one side
    out = tmp_path / "out"
    assert cli.main(["refine", "video", "--refs", str(paths["refs"]), "--mesh", str(paths["mesh"]), "--class", "pebble",
                     "--out", str(out), "--models", "tiny", "--device", "cpu", "--no-turntable", "--frames", "5",
                     "--prompt", "a video of a sks pebble on a beach", "--set", "dreambooth.steps=2"]) == 0
    views = json.loads((out / "report.json").read_text())["views"]
    assert views["references"] == 3 and views["asset_renders"] == 8 and views["uncovered_arc_degrees"] == 0
    assert any(name.startswith("asset_render_") for name in views["conditioning"])


def test_asset_renders_without_a_mesh_are_refused(refs_file, tmp_path, capsys):
    assert cli.main(["refine", "video", "--refs", str(refs_file), "--class", "sneaker", "--out", str(tmp_path),
                     "--models", "tiny", "--set", "views.mesh_views=4"]) == 2
    assert "--mesh" in capsys.readouterr().err


def test_one_reference_runs_3dreambooth_alone_with_no_3dapter(tmp_path, capsys):
    one = write_transforms(tmp_path / "one" / "transforms.json", ring_references(1))
    out = tmp_path / "out"
    assert cli.main(["refine", "video", "--refs", str(one), "--class", "sneaker", "--out", str(out), "--models", "tiny",
                     "--device", "cpu", "--no-3dapter", "--no-turntable", "--frames", "5",
                     "--prompt", "a video of a sks sneaker", "--set", "dreambooth.steps=2"]) == 0
    assert "3Dapter: off" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["3dapter"]["enabled"] is False and report["3dapter"]["conditioning_temporal_indices"] is None
    assert report["views"]["conditioning"] == [] and report["loras"] == {"3dreambooth": "lora_3dreambooth.safetensors"}
    assert not (out / "lora_3dapter.safetensors").exists() and (out / "video.mp4").is_file()


def test_refine_first_renders_the_tire_refined_asset_and_publishes_tires_results(tmp_path):
    """views.refine_first: TIRE refines the asset first (its results as tire_*), and the asset renders in the
    views show the refined texture, not the initial one."""
    from PIL import Image

    from likeness3d.backend.demo import write_inputs
    from likeness3d.backend.synthetic.example import example_case

    paths = write_inputs(example_case(image_size=32, texture_size=32), tmp_path / "in")
    out = tmp_path / "out"
    tire = ["tire.resolution=32", "tire.azimuths=4", "tire.elevations_deg=[0.0]", "tire.resplat.gaussians=300",
            "tire.fit.steps=6", "tire.resplat.fit_resolution=24", "tire.turntable_views=2"]
    sets = [a for s in ["views.refine_first=true", "views.mesh_views=4", "dreambooth.steps=2", *tire] for a in ("--set", s)]
    assert cli.main(["refine", "video", "--refs", str(paths["refs"]), "--mesh", str(paths["mesh"]), "--class", "pebble",
                     "--out", str(out), "--models", "tiny", "--device", "cpu", "--no-turntable", "--frames", "5",
                     "--prompt", "a video of a sks pebble on a beach", *sets]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["views"]["asset_renders_refined_by_tire"] is True and report["views"]["asset_renders"] == 4
    for name in ("tire_mesh.glb", "tire_texture.png", "tire_report.json", "video.mp4"):
        assert (out / name).is_file(), name
    tire_report = json.loads((out / "tire_report.json").read_text())
    assert tire_report["settings"]["azimuths"] == 4
    refined = np.asarray(Image.open(out / "tire_texture.png"))
    assert refined.shape == (32, 32, 4)  # the artist's texture size, TIRE's texels
