"""The subject-video pipeline in Blender: its panel settings make the config, its result (a real `refine video`
run of the backend with tiny models) imports as a movie clip and a plane beside the asset, and a headless job
through a real backend does both."""

import json
import os
import subprocess
from pathlib import Path

import bpy
import pytest

from backend_process import Backend
from likeness3d.addon import api, preferences, video_panel
from likeness3d.addon.importers import import_result
from likeness3d.addon.request import build_job_config
from scenes import cube, subject_scene

SMOKE = {"models": "tiny", "views": {"size": 32}, "dreambooth": {"steps": 4},
         "generate": {"frames": 9, "width": 32, "height": 32, "steps": 2, "fps": 8}}


def torch_backend() -> str:
    python = os.environ.get("LIKENESS3D_TEST_SERVER_PYTHON")
    if not python:
        pytest.skip("the backend runs on Blender's Python, which lacks torch; "
                    "scripts/test.sh points LIKENESS3D_TEST_SERVER_PYTHON at .venv")
    return python


@pytest.fixture(scope="module")
def video_result(tmp_path_factory):
    """A real result folder: `likeness3d refine video --models tiny` on two references, run by the backend's Python."""
    python = torch_backend()
    root = tmp_path_factory.mktemp("video")
    refs = root / "refs"
    refs.mkdir()
    script = ("import sys; from likeness3d.backend.inputs.transforms import write_transforms; "
              "sys.path.insert(0, sys.argv[2]); from test_video import ring_references; "
              "write_transforms(sys.argv[1], ring_references(2))")
    backend_tests = str(Path(__file__).resolve().parents[1] / "backend")
    subprocess.run([python, "-c", script, str(refs / "transforms.json"), backend_tests], check=True, timeout=300)
    out = root / "out"
    run = subprocess.run([python, "-m", "likeness3d.backend.cli", "refine", "video", "--refs", str(refs / "transforms.json"),
                          "--class", "box", "--out", str(out), "--models", "tiny", "--device", "cpu"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    return out


def test_the_result_imports_as_a_movie_clip_and_a_plane_beside_the_asset(video_result):
    source = cube("Sneaker", location=(1.0, 2.0, 0.5), rotation=(0, 0, 0), scale=(1.0, 1.0, 0.5))
    paths = sorted(video_result.iterdir())
    objects = import_result(paths, source)
    assert [o.name for o in objects] == ["Sneaker_video_plane"]
    plane = objects[0]
    clip = bpy.data.movieclips["Sneaker_video"]
    assert clip.frame_duration == 9 and tuple(clip.size) == (32, 32) and clip.source == "MOVIE"
    tex = next(n for n in plane.active_material.node_tree.nodes if n.type == "TEX_IMAGE")
    assert tex.image.source == "MOVIE" and tex.image.filepath.endswith("video.mp4")
    assert tex.image_user.frame_duration == 9 and tex.image_user.use_cyclic and tex.image_user.use_auto_refresh
    # beside the asset: to its +X side, bottoms level, as tall as it, square like the video
    xs = [(plane.matrix_world @ v.co).x for v in plane.data.vertices]
    zs = [(plane.matrix_world @ v.co).z for v in plane.data.vertices]
    assert min(xs) > 2.0 + 0.2 and abs(min(zs) - 0.0) < 1e-5 and abs(max(zs) - 1.0) < 1e-5
    assert abs((max(xs) - min(xs)) - 1.0) < 1e-5
    assert source.name in bpy.data.objects  # the asset stays


def test_the_panel_settings_make_the_video_config():
    scene = bpy.context.scene
    props = scene.likeness
    props.pipeline, props.quality = "video", "DRAFT"
    video = scene.likeness_video
    video.frames, video.width, video.height = 33, 448, 256
    video.prompts = "a video of a sks box on a beach | a video of a sks box in snow"
    video.use_3dapter, video.mesh_views = False, 6
    config = build_job_config(scene)
    assert config["views"] == {"mesh_views": 6, "size": 256}  # the panel's, and the DRAFT preset's
    assert config["generate"] == {"frames": 33, "width": 448, "height": 256, "turntable": True, "steps": 25}
    assert config["prompts"] == ["a video of a sks box on a beach", "a video of a sks box in snow"]
    assert config["adapter"] == {"enabled": False} and config["dreambooth"] == {"steps": 200}
    video.frames, video.prompts, video.use_3dapter = 32, "a box", True
    said = video_panel.problems(video, 1)
    assert any("4k + 1" in s for s in said) and any('"sks"' in s for s in said) and any("2 or more" in s for s in said)
    props.pipeline = "tire"
    assert "generate" not in build_job_config(scene)


def test_a_headless_video_job_through_a_backend_imports_the_plane(tmp_path):
    torch_backend()
    server = Backend(tmp_path / "store").start()
    try:
        prefs = preferences.get()
        prefs.address, prefs.timeout, prefs.results_dir = server.address, 10.0, str(tmp_path / "results")
        target = subject_scene(n_refs=2)
        outcome = api.refine(target=target, pipeline="video", quality="STANDARD", config=SMOKE, address=server.address,
                             timeout=600)
    finally:
        server.stop()
    names = {p.name for p in outcome.files}
    assert {"video.mp4", "frame_0000.png", "lora_3dreambooth.safetensors", "report.json"} <= names
    report = json.loads(next(p for p in outcome.files if p.name == "report.json").read_text())
    assert report["pipeline"] == "video" and report["3dapter"]["pretrained"] is False
    assert [o.name for o in outcome.objects] == [f"{target.name}_video_plane"]
    assert bpy.data.movieclips[f"{target.name}_video"].frame_duration == 9
