"""Animated inputs from files: PC2 caches, --frames, the frame or time of each photo; bad input is a typed error
naming the file, the frame and the value (never internal, never a traceback on the command line)."""

import json
import subprocess
import sys

import numpy as np
import pytest

from likeness3d.backend.inputs.animation import assign_frames, attach_cache, parse_frames, select_frames
from likeness3d.protocol.assets import Camera, Mesh, Reference
from likeness3d.protocol.errors import BadMessage, InvalidAsset
from likeness3d.protocol.pc2 import write_pc2

V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
F = np.array([[0, 1, 2]], np.int32)
CAM = Camera(np.array([[10.0, 0, 4], [0, 10, 4], [0, 0, 1]]), np.eye(4), 8, 8)


def _refs(n):
    return [Reference(f"r{i}", np.zeros((8, 8, 4), np.uint8), CAM) for i in range(n)]


def _transforms(tmp_path, frames, **top):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({**top, "frames": [{"file_path": f"{i}.png", **f} for i, f in enumerate(frames)]}))
    return path


def test_cache_attaches_whole_frames(tmp_path):
    pos = np.stack([V + t for t in range(5)]).astype(np.float32)
    mesh = attach_cache(Mesh(V, F), write_pc2(tmp_path / "a.pc2", pos, start=10, sampling=2))
    assert mesh.frame_numbers.tolist() == [10, 12, 14, 16, 18]
    np.testing.assert_array_equal(mesh.frames, pos)
    part = select_frames(mesh, parse_frames("12:16:4"), "a.pc2")
    assert part.frame_numbers.tolist() == [12, 16] and np.array_equal(part.frames, pos[[1, 3]])
    with pytest.raises(BadMessage, match=r"asks for frame 11, which a.pc2 does not have \(its frames: 10..18, 5 frames\)"):
        select_frames(mesh, parse_frames("11:13"), "a.pc2")
    for bad in ("1-4", "5:1", "1:4:0", "a:b"):
        with pytest.raises(BadMessage, match="expected START:END or START:END:STEP") as e:
            parse_frames(bad)
        assert e.value.field == "--frames"


def test_cache_vertex_count_must_match_the_mesh(tmp_path):
    path = write_pc2(tmp_path / "walk.pc2", np.zeros((2, 4, 3), np.float32), start=1)
    with pytest.raises(InvalidAsset, match=r"point cache .*walk.pc2 holds 4 vertices per frame but the mesh has 3") as e:
        attach_cache(Mesh(V, F), path)
    assert e.value.field == "cache"
    half = write_pc2(tmp_path / "half.pc2", np.zeros((2, 3, 3), np.float32), start=1.5)
    with pytest.raises(InvalidAsset, match="starts at frame 1.5"):
        attach_cache(Mesh(V, F), half)


def test_photos_get_their_frames(tmp_path):
    frames = np.stack([V] * 5).astype(np.float32)
    mesh = Mesh(V, F, frames=frames, frame_numbers=np.arange(1, 6, dtype=np.int32), fps=2.0)
    # an explicit frame, a time in seconds (2 fps: 1.5 s = 3 frames after the first), none (the rest pose)
    path = _transforms(tmp_path, [{"frame": 4}, {"time": 1.5}, {}])
    refs, unit = assign_frames(_refs(3), path, mesh, "--refs")
    assert [r.frame for r in refs] == [4, 4, None] and unit == "seconds"
    # D-NeRF: times in [0, 1] of the clip (here the clip lasts 2 s, so 0.5 is half way: frame 3)
    dnerf = _transforms(tmp_path, [{"time": 0.0}, {"time": 0.5}, {"time": 1.0}])
    assert [r.frame for r in assign_frames(_refs(3), dnerf, mesh, "--refs")[0]] == [1, 3, 5]
    explicit = _transforms(tmp_path, [{"time": 0.5}], time_unit="seconds")
    assert assign_frames(_refs(1), explicit, mesh, "--refs")[0][0].frame == 2


@pytest.mark.parametrize(
    "frame,match,field",
    [
        ({"frame": 9}, r"frames\[1\].frame is 9, which is not one of the animation's frames \(1..5, 5 frames\)", "frames[1].frame"),
        ({"time": 7.0}, r"frames\[1\].time is 7, outside the animation \(0..2 s, frames 1..5\)", "frames[1].time"),
        ({"frame": "2"}, r"frames\[1\].frame is '2'; it must be a whole scene frame number", "frames[1].frame"),
        ({"time": None}, r"frames\[1\].time is None; it must be a finite number", "frames[1].time"),
    ],
)
def test_a_photo_outside_the_animation_is_named(tmp_path, frame, match, field):
    mesh = Mesh(V, F, frames=np.stack([V] * 5).astype(np.float32), frame_numbers=np.arange(1, 6, dtype=np.int32), fps=2.0)
    path = _transforms(tmp_path, [{"frame": 1}, frame], time_unit="seconds")
    with pytest.raises(InvalidAsset, match=match) as e:
        assign_frames(_refs(2), path, mesh, "--refs")
    assert e.value.field == field


def test_frames_on_a_static_mesh_are_refused(tmp_path):
    with pytest.raises(InvalidAsset, match="gives frames or times but the mesh is static"):
        assign_frames(_refs(1), _transforms(tmp_path, [{"frame": 1}]), Mesh(V, F), "--refs")


def test_cli_names_the_bad_cache_and_the_bad_frame(tmp_path):
    """From the command line: exit 2, one line with the code and the file or frame, no traceback."""
    from likeness3d.backend.demo_4d import write_inputs_4d
    from likeness3d.backend.synthetic.animated import animated_case

    paths = write_inputs_4d(animated_case(image_size=24, texture_size=32), tmp_path / "in")
    base = [sys.executable, "-m", "likeness3d.backend.cli", "refine", "tire", "--mesh", str(paths["mesh"]),
            "--refs", str(paths["refs"]), "--class", "pebble", "--out", str(tmp_path / "out"), "--device", "cpu"]
    write_pc2(tmp_path / "other.pc2", np.zeros((3, 7, 3), np.float32), start=1)
    run = subprocess.run(base + ["--cache", str(tmp_path / "other.pc2")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "error [invalid_asset]" in run.stderr and "other.pc2 holds 7 vertices" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    meta = json.loads(paths["refs"].read_text())
    meta["frames"][2]["frame"] = 40
    paths["refs"].write_text(json.dumps(meta))
    run = subprocess.run(base + ["--cache", str(paths["cache"])], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "error [invalid_asset]" in run.stderr, run.stderr
    assert "frames[2].frame is 40, which is not one of the animation's frames (1..8, 8 frames)" in run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    run = subprocess.run(base + ["--frames", "1:3"], capture_output=True, text=True, timeout=300)
    assert run.returncode == 2 and "--frames needs an animated mesh" in run.stderr
