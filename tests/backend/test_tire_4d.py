"""TIRE on an animated mesh, through the server and through `likeness3d refine --cache`: the 4D artifacts
(animation.pc2, splats.ply with its binding, splats/frame_NNNN.ply), per-frame metrics and flicker."""

import json
import subprocess
import sys

import numpy as np
import pytest

from likeness3d.backend.demo_4d import write_inputs_4d
from likeness3d.backend.export.ply import read_ply
from likeness3d.backend.stages.animation.binding import Binding
from likeness3d.backend.synthetic.animated import FRAMES, animated_case
from likeness3d.protocol.assets import Asset
from likeness3d.protocol.client import Client
from likeness3d.protocol.pc2 import PointCache, read_pc2

SMALL = {"resolution": 32, "azimuths": 4, "elevations_deg": [0.0], "gaussians": 300, "fit_steps": 6,
         "fit_resolution": 24, "turntable_views": 2, "texture_size": 64}
FRAME_FILES = [f"splats/frame_{n:04d}.ply" for n in FRAMES]


@pytest.fixture(scope="module")
def case():
    return animated_case(image_size=40, texture_size=64)


def _binding(ply) -> Binding:
    e = ply.extra
    return Binding(e["bind_face"], e["bind_u"], e["bind_v"], e["bind_offset"],
                   np.stack([e[f"bind_rot_{i}"] for i in range(4)], 1), np.stack([e[f"bind_scale_{i}"] for i in range(3)], 1))


def check_splats(rest_ply: bytes, frame_plys: list[bytes], positions: np.ndarray, faces: np.ndarray, rest: np.ndarray):
    """splats.ply's binding puts each splat at its rest centre; each frame's file at its triangle's barycentric
    point (plus the normal offset) on that frame's positions, within 1e-4 of the bounding box."""
    ply = read_ply(rest_ply)
    assert ply.extra["bind_face"].dtype == np.int32 and ply.extra["bind_u"].dtype == np.float32
    b = _binding(ply)
    extent = float(np.linalg.norm(rest.max(0) - rest.min(0)))
    centre, _, _ = b.pose(rest, faces)
    assert np.abs(centre - ply.means).max() <= 1e-4 * extent
    for data, p in zip(frame_plys, positions):
        posed = read_ply(data)
        assert posed.extra == {} and len(posed.means) == len(ply.means)  # standard fields only
        f = faces[b.face]
        n = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        want = (1 - b.u - b.v)[:, None] * p[f[:, 0]] + b.u[:, None] * p[f[:, 1]] + b.v[:, None] * p[f[:, 2]] + b.offset[:, None] * n
        assert np.abs(posed.means - want).max() <= 1e-4 * float(np.linalg.norm(p.max(0) - p.min(0)))
        np.testing.assert_array_equal(posed.log_scales, ply.log_scales)


def test_4d_job_through_the_server(server, case):
    asset = Asset(case.initial, case.references, "pebble", "pebble")
    with Client(server.address, timeout=30) as c:
        result = c.submit("tire", asset, SMALL).wait(300)
        names = sorted(a.name for a in result.artifacts)
        assert names == sorted(["animation.pc2", "mesh.glb", "report.json", "sheet.png", "splats.ply", "texture.png",
                                *FRAME_FILES])
        pc2 = c.fetch(result.job, "animation.pc2")
        assert pc2[:32] == __import__("struct").pack("<12siiffi", b"POINTCACHE2\0", 1, len(case.initial.vertices),
                                                    float(FRAMES[0]), 1.0, len(FRAMES))
        np.testing.assert_array_equal(np.frombuffer(pc2[32:], "<f4").reshape(case.initial.frames.shape), case.initial.frames)
        m = case.initial
        check_splats(c.fetch(result.job, "splats.ply"), [c.fetch(result.job, n) for n in FRAME_FILES],
                     m.frames.astype(np.float64), m.faces.astype(np.int64), m.vertices.astype(np.float64))
        report = json.loads(c.fetch(result.job, "report.json"))
        assert report["frames"] == list(FRAMES) and report["animation"]["bound_splats"] == report["gaussians"]
        assert report["animation"]["fps"] == 24.0 and "metrics" not in report


def test_refine_cli_with_a_point_cache(tmp_path, case):
    paths = write_inputs_4d(case, tmp_path / "in")
    out = tmp_path / "out"
    sets = [f"--set={k}={json.dumps(v)}" for k, v in SMALL.items()]
    cmd = [sys.executable, "-m", "likeness3d.backend.cli", "refine", "tire", "--mesh", str(paths["mesh"]),
           "--cache", str(paths["cache"]), "--refs", str(paths["refs"]), "--class", "pebble", "--out", str(out),
           "--eval-views", str(paths["truth"]), "--device", "cpu", *sets]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "temporal error" in run.stdout and "infilled: refined" in run.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == list(FRAMES)
    per_frame = report["metrics"]["per_frame"]
    assert [r["frame"] for r in per_frame] == [1, 3, 5, 7]
    for r in per_frame:
        for key in ("psnr_observed", "psnr_infilled", "psnr_observed_initial", "psnr_infilled_initial",
                    "ssim_observed", "ssim_infilled"):
            assert isinstance(r[key], float), (key, r)
    fl = report["metrics"]["flicker"]
    assert fl["pairs"] == 4 * 3 and {"refined", "initial", "truth"} <= set(fl) and fl["truth"] > 0
    # the cache written is the cache read, frames exactly as given
    got, given = read_pc2(out / "animation.pc2"), read_pc2(paths["cache"])
    np.testing.assert_array_equal(got.positions, given.positions)
    assert (got.start, got.sampling) == (given.start, given.sampling) == (1.0, 1.0)
    assert sorted(p.name for p in (out / "splats").iterdir()) == [f.split("/")[1] for f in FRAME_FILES]
    # --frames picks a part of the animation: every other frame
    sub = subprocess.run(cmd[:-len(sets) - 4] + ["--frames", "1:7:2", "--out", str(tmp_path / "sub"), "--device", "cpu",
                                                *sets], capture_output=True, text=True, timeout=600)
    assert sub.returncode == 0, sub.stdout + sub.stderr
    part = read_pc2(tmp_path / "sub" / "animation.pc2")
    assert (part.start, part.sampling, len(part.positions)) == (1.0, 2.0, 4)
    np.testing.assert_array_equal(part.positions, given.positions[[0, 2, 4, 6]])
