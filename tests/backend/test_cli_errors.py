"""`likeness3d` with bad files and flags, run as the real console script in a subprocess: every case ends
with its exit code, one message on stderr that names the file or the flag, the field and what to do, and
never a Python traceback. Arguments are checked before torch is imported, so each case takes about a
second (the one `--device cuda` case imports torch to learn there is no CUDA device)."""

from __future__ import annotations

import json
import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from likeness3d.backend.export.glb import write_glb
from likeness3d.backend.inputs.transforms import write_transforms
from likeness3d.protocol.assets import Camera, Mesh, Reference

CLI = [sys.executable, "-m", "likeness3d.backend.cli"]
SIZE = 16


def _quad(vertices=None) -> Mesh:
    v = np.array([[-0.5, 0, -0.5], [0.5, 0, -0.5], [0.5, 0, 0.5], [-0.5, 0, 0.5]], np.float32) if vertices is None else vertices
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int32)
    uv = np.array([[[0, 0], [1, 0], [1, 1]], [[0, 0], [1, 1], [0, 1]]], np.float32)
    return Mesh(v, f, uv, np.full((4, 4, 4), 200, np.uint8))


def _camera(looking_away: bool = False) -> Camera:
    """A camera 3 m in front of the quad (on -Y) looking at it along +Y; or the other way."""
    K = np.array([[SIZE, 0, (SIZE - 1) / 2], [0, SIZE, (SIZE - 1) / 2], [0, 0, 1.0]])
    if looking_away:
        w2c = np.array([[-1, 0, 0, 0], [0, 0, -1, 0], [0, -1, 0, -3.0], [0, 0, 0, 1]], np.float64)
    else:
        w2c = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 3.0], [0, 0, 0, 1]], np.float64)
    return Camera(K, w2c, SIZE, SIZE)


def _glb(doc: dict) -> bytes:
    """A GLB holding only a JSON chunk (no meshes)."""
    j = json.dumps(doc).encode()
    j += b" " * ((4 - len(j) % 4) % 4)
    return struct.pack("<III", 0x46546C67, 2, 20 + len(j)) + struct.pack("<II", len(j), 0x4E4F534A) + j


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """A good asset (mesh.glb, refs/transforms.json) and, beside it, one broken file per case."""
    d = tmp_path_factory.mktemp("cli_errors")
    write_glb(_quad(), path=d / "mesh.glb")
    img = np.zeros((SIZE, SIZE, 4), np.uint8)
    img[4:12, 4:12] = 255
    write_transforms(d / "refs" / "transforms.json", [Reference("a", img, _camera())])
    write_transforms(d / "away" / "transforms.json", [Reference("a", img, _camera(looking_away=True))])
    good = json.loads((d / "refs" / "transforms.json").read_text())

    def refs(name: str, edit=None, top=None, raw: str | bytes | None = None) -> None:
        folder = d / name
        (folder / "images").mkdir(parents=True)
        (folder / "images" / "a.png").write_bytes((d / "refs" / "images" / "a.png").read_bytes())
        meta = json.loads(json.dumps(good))
        if edit:
            edit(meta["frames"][0])
        if top:
            meta.update(top)
        out = folder / "transforms.json"
        if raw is None:
            out.write_text(json.dumps(meta))
        elif isinstance(raw, bytes):
            out.write_bytes(raw)
        else:
            out.write_text(raw)

    refs("w_fraction", lambda f: f.update(w=32.7))
    refs("h_zero", lambda f: f.update(h=0))
    refs("k1_text", lambda f: f.update(k1="x"))
    refs("k1_set", lambda f: f.update(k1=0.1))
    refs("fisheye", top={"camera_model": "OPENCV_FISHEYE"})
    refs("flx_negative", lambda f: f.update(fl_x=-3))
    refs("flx_missing", lambda f: f.pop("fl_x"))
    refs("flx_text", lambda f: f.update(fl_x="wide"))
    refs("matrix_3x3", lambda f: f.update(transform_matrix=np.eye(3).tolist()))
    refs("matrix_zero", lambda f: f.update(transform_matrix=np.zeros((4, 4)).tolist()))
    refs("no_file_path", lambda f: f.pop("file_path"))
    refs("image_missing", lambda f: f.update(file_path="images/gone.png"))
    refs("image_folder", lambda f: f.update(file_path="images"))
    refs("image_size", lambda f: f.update(w=SIZE + 1))
    refs("mask_size", lambda f: f.update(mask_path="images/small.png"))
    from PIL import Image

    Image.fromarray(np.zeros((4, 4), np.uint8)).save(d / "mask_size" / "images" / "small.png")
    refs("image_corrupt", lambda f: f.update(file_path="images/broken.png"))
    (d / "image_corrupt" / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    refs("frames_empty", top={"frames": []})
    refs("frames_missing", raw=json.dumps({"camera_model": "PINHOLE"}))
    refs("not_json", raw="{ this is not json")
    refs("json_list", raw="[1, 2, 3]")
    refs("binary", raw=bytes(range(256)))
    refs("frame_not_map", top={"frames": [42]})
    (d / "refs_empty_folder").mkdir()

    (d / "empty.glb").write_bytes(_glb({"asset": {"version": "2.0"}}))
    (d / "zero.glb").write_bytes(b"")
    (d / "garbage.glb").write_bytes(b"glTF\x02\x00\x00\x00\x0c\x00\x00\x00garbage")
    (d / "mesh.txt").write_text("v 0 0 0\n")
    (d / "points.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    (d / "no_uvs.obj").write_text("v -0.5 0 -0.5\nv 0.5 0 -0.5\nv 0.5 0 0.5\nf 1 2 3\n")
    (d / "nan.obj").write_text("v nan 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n")
    write_glb(_quad(np.zeros((4, 3), np.float32)), path=d / "one_point.glb")
    write_glb(_quad(np.array([[0, 0, 0], [1e37, 0, 0], [1e37, 0, 1e37], [0, 0, 1e37]], np.float32)), path=d / "huge.glb")
    (d / "mesh_folder.glb").mkdir()
    (d / "a_file").write_text("not a folder")
    from likeness3d.backend.security import make_keys

    make_keys(d / "keys", "studio")
    return d


def _refine(d: Path, *extra: str, mesh: str = "mesh.glb", refs: str = "refs/transforms.json", out: str | None = None) -> list[str]:
    return ["refine", "tire", "--mesh", str(d / mesh), "--refs", str(d / refs), "--class", "thing",
            "--out", out or str(d / "out"), "--device", "cpu", *extra]


# (case id, args builder, exit code, substrings stderr must hold: the file or flag, the field, the advice)
CASES = [
    # flags
    ("device_gpu", lambda d: _refine(d, "--device", "gpu"), 2, ["--device", "'gpu'", "use cpu, cuda"]),
    ("device_bad_index", lambda d: _refine(d, "--device", "cuda:x"), 2, ["--device", "cuda:x", "cuda:N"]),
    ("device_no_cuda", lambda d: _refine(d, "--device", "cuda"), 2, ["--device cuda", "no CUDA device", "--device cpu"]),
    ("preset_unknown", lambda d: _refine(d, "--preset", "turbo"), 2, ["--preset", "turbo", "choose from"]),
    ("pipeline_unknown", lambda d: ["refine", "nope", *_refine(d)[2:]], 2, ["unknown_pipeline", "'nope'", "available"]),
    ("set_unknown_key", lambda d: _refine(d, "--set", "nope=1"), 2, ["config", "'nope'", "known keys"]),
    ("set_bad_value", lambda d: _refine(d, "--set", "fit.steps=0"), 2, ["config.fit.steps", "got 0"]),
    ("set_text_value", lambda d: _refine(d, "--set", "fit.steps=many"), 2, ["config.fit.steps", "'many'"]),
    ("set_no_equals", lambda d: _refine(d, "--set", "fit.steps"), 2, ["--set", "'fit.steps'", "KEY=VALUE"]),
    ("set_empty_part", lambda d: _refine(d, "--set", "fit..steps=3"), 2, ["--set", "fit..steps", "dotted path"]),
    ("out_is_file", lambda d: _refine(d, out=str(d / "a_file")), 2, ["--out", "a_file", "is a file", "name a folder"]),
    ("out_under_file", lambda d: _refine(d, out=str(d / "a_file" / "sub")), 2, ["--out", "a_file", "name another folder"]),
    ("out_unwritable", lambda d: _refine(d, out="/proc/likeness3d-out"), 2, ["--out", "/proc/likeness3d-out", "name a folder you can write"]),
    ("models_missing_folder", lambda d: _refine(d, "--models", str(d / "no_models")), 2, ["model_missing", "no_models", "--models"]),
    ("customize_without_models", lambda d: ["refine", "customize", *_refine(d)[2:]], 2, ["model_missing", "--models", "tiny"]),
    ("class_empty", lambda d: [a if a != "thing" else " " for a in _refine(d)], 2, ["--class", "class word"]),
    ("mesh_flag_missing", lambda d: ["refine", "tire", "--refs", "x", "--class", "c", "--out", "o"], 2, ["--mesh", "required"]),
    # meshes
    ("mesh_missing", lambda d: _refine(d, mesh="gone.glb"), 2, ["invalid_asset", "gone.glb", "does not exist", "check the path"]),
    ("mesh_is_folder", lambda d: _refine(d, mesh="mesh_folder.glb"), 2, ["mesh_folder.glb", "is a folder", "name the .glb"]),
    ("mesh_suffix", lambda d: _refine(d, mesh="mesh.txt"), 2, ["mesh.txt", "suffix '.txt'", "expected .glb"]),
    ("mesh_zero_bytes", lambda d: _refine(d, mesh="zero.glb"), 2, ["zero.glb", "empty", "export the mesh again"]),
    ("mesh_empty_glb", lambda d: _refine(d, mesh="empty.glb"), 2, ["empty.glb", "no triangle mesh", "export the object"]),
    ("mesh_garbage_glb", lambda d: _refine(d, mesh="garbage.glb"), 2, ["garbage.glb", "cannot read mesh", "export it again"]),
    ("mesh_points_only", lambda d: _refine(d, mesh="points.obj"), 2, ["points.obj", "no triangle mesh", "with faces"]),
    ("mesh_no_uvs", lambda d: _refine(d, mesh="no_uvs.obj"), 2, ["no_uvs.obj", "mesh.uvs", "unwrap the mesh"]),
    ("mesh_nan", lambda d: _refine(d, mesh="nan.obj"), 2, ["nan.obj", "mesh.vertices", "must be finite"]),
    ("mesh_one_point", lambda d: _refine(d, mesh="one_point.glb"), 2, ["one_point.glb", "mesh.vertices", "no surface"]),
    ("mesh_huge", lambda d: _refine(d, mesh="huge.glb"), 2, ["huge.glb", "mesh.vertices", "1e+37", "apply a scale"]),
    # camera sets
    ("refs_missing", lambda d: _refine(d, refs="gone/transforms.json"), 2, ["gone/transforms.json", "does not exist", "transforms.json"]),
    ("refs_folder_without_file", lambda d: _refine(d, refs="refs_empty_folder"), 2, ["refs_empty_folder", "folder", "name the camera file"]),
    ("refs_not_json", lambda d: _refine(d, refs="not_json/transforms.json"), 2, ["not_json/transforms.json", "as JSON", "nerfstudio"]),
    ("refs_binary", lambda d: _refine(d, refs="binary/transforms.json"), 2, ["binary/transforms.json", "as JSON"]),
    ("refs_json_list", lambda d: _refine(d, refs="json_list/transforms.json"), 2, ["json_list/transforms.json", "list", "'frames'"]),
    ("frames_empty", lambda d: _refine(d, refs="frames_empty/transforms.json"), 2, ["frames_empty/transforms.json", "'frames'", "non-empty list"]),
    ("frames_missing", lambda d: _refine(d, refs="frames_missing/transforms.json"), 2, ["frames_missing/transforms.json", "'frames'"]),
    ("frame_not_map", lambda d: _refine(d, refs="frame_not_map/transforms.json"), 2, ["frame_not_map/transforms.json", "frames[0]", "file_path"]),
    ("frame_no_file_path", lambda d: _refine(d, refs="no_file_path/transforms.json"), 2, ["no_file_path/transforms.json", "frames[0]", "'file_path'"]),
    ("w_fraction", lambda d: _refine(d, refs="w_fraction/transforms.json"), 2, ["w_fraction/transforms.json", "frames[0].w", "32.7", "whole number"]),
    ("h_zero", lambda d: _refine(d, refs="h_zero/transforms.json"), 2, ["h_zero/transforms.json", "frames[0].h", "whole number"]),
    ("k1_text", lambda d: _refine(d, refs="k1_text/transforms.json"), 2, ["k1_text/transforms.json", "frames[0].k1", "'x'", "finite number"]),
    ("k1_distortion", lambda d: _refine(d, refs="k1_set/transforms.json"), 2, ["k1_set/transforms.json", "frames[0]", "undistort"]),
    ("fisheye", lambda d: _refine(d, refs="fisheye/transforms.json"), 2, ["fisheye/transforms.json", "OPENCV_FISHEYE", "undistort"]),
    ("fl_x_negative", lambda d: _refine(d, refs="flx_negative/transforms.json"), 2, ["flx_negative/transforms.json", "frames[0]", "fl_x", "positive"]),
    ("fl_x_missing", lambda d: _refine(d, refs="flx_missing/transforms.json"), 2, ["flx_missing/transforms.json", "frames[0]", "'fl_x'"]),
    ("fl_x_text", lambda d: _refine(d, refs="flx_text/transforms.json"), 2, ["flx_text/transforms.json", "frames[0].fl_x", "finite number"]),
    ("matrix_3x3", lambda d: _refine(d, refs="matrix_3x3/transforms.json"), 2, ["matrix_3x3/transforms.json", "frames[0].transform_matrix", "4 rows of 4"]),
    ("matrix_zero", lambda d: _refine(d, refs="matrix_zero/transforms.json"), 2, ["matrix_zero/transforms.json", "frames[0]", "zero scale"]),
    ("image_missing", lambda d: _refine(d, refs="image_missing/transforms.json"), 2, ["image_missing", "frames[0].file_path", "gone.png", "fix the path"]),
    ("image_is_folder", lambda d: _refine(d, refs="image_folder/transforms.json"), 2, ["image_folder", "frames[0].file_path", "is a folder"]),
    ("image_corrupt", lambda d: _refine(d, refs="image_corrupt/transforms.json"), 2, ["broken.png", "frames[0].file_path", "save it as PNG"]),
    ("image_size_mismatch", lambda d: _refine(d, refs="image_size/transforms.json"), 2, ["image_size/transforms.json", "frames[0]", "set w and h"]),
    ("mask_size_mismatch", lambda d: _refine(d, refs="mask_size/transforms.json"), 2, ["mask_size/transforms.json", "frames[0]", "mask is 4x4"]),
    ("camera_looks_away", lambda d: _refine(d, refs="away/transforms.json"), 2, ["away/transforms.json", "references[0]", "sees none of the mesh", "aim the camera"]),
    ("eval_views_missing", lambda d: _refine(d, "--eval-views", str(d / "truth.json")), 2, ["truth.json", "does not exist"]),
    # other commands
    ("keys_exist", lambda d: ["keys", "--out", str(d / "keys"), "--name", "studio"], 2, ["studio.key", "exists", "--force"]),
    ("serve_store_is_file", lambda d: ["serve", "--store", str(d / "a_file")], 2, ["--store", "a_file", "name a folder"]),
    ("serve_bad_listen", lambda d: ["serve", "--listen", "localhost:5555"], 2, ["--listen", "localhost:5555", "tcp://HOST:PORT"]),
    ("serve_bad_gpus", lambda d: ["serve", "--store", str(d / "store"), "--gpus", "first"], 2, ["--gpus", "'first'", "'auto', 'cpu'"]),
    # `_run` hides every GPU (CUDA_VISIBLE_DEVICES=""), so this holds on a GPU machine too
    ("serve_gpu_not_there", lambda d: ["serve", "--store", str(d / "store"), "--gpus", "0"], 2,
     ["--gpus 0", "no NVIDIA GPU", "--gpus cpu"]),
]


def _run(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ)
    env.pop("LIKENESS3D_MODELS", None)
    env.pop("LIKENESS3D_DEBUG", None)
    env["CUDA_VISIBLE_DEVICES"] = ""  # these cases need no GPU, and `serve --gpus 0` must find none, on any machine
    return subprocess.run(CLI + args, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(files, case):
    name, build, code, needles = case
    out = _run(build(files))
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr + out.stdout
    for needle in needles:
        assert needle in out.stderr, (needle, out.stderr)
    assert not (files / "out").exists()  # nothing was made for a refused run


def test_table_size():
    assert len(CASES) >= 40


def test_reference_over_the_pixel_budget_is_too_large(files):
    env = dict(os.environ, LIKENESS3D_MAX_REFERENCE_PIXELS="100")
    out = _run(_refine(files), env=env)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "[too_large]" in out.stderr and "frames[0].file_path" in out.stderr and "a.png" in out.stderr
    assert "LIKENESS3D_MAX_REFERENCE_PIXELS" in out.stderr


def test_serve_on_a_busy_port(files):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = _run(["serve", "--listen", f"tcp://127.0.0.1:{port}", "--store", str(files / "store"), "--gpus", "cpu"])
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"--listen tcp://127.0.0.1:{port}" in out.stderr and "in use" in out.stderr and "another port" in out.stderr
