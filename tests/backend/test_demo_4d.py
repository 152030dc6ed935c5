"""`likeness3d demo --4d` meets its promise on the CPU without weights: infilled >= initial + 4 dB and observed
not below the initial at every evaluated frame, flicker (temporal error against the truth) no worse."""

import json
import subprocess
import sys

import numpy as np

from likeness3d.backend.export.ply import read_ply
from likeness3d.backend.synthetic.animated import FRAMES
from likeness3d.protocol.pc2 import read_pc2


def test_demo_4d(tmp_path):
    out = tmp_path / "demo4d"
    run = subprocess.run([sys.executable, "-m", "likeness3d.backend.cli", "demo", "--4d", "--out", str(out), "--device", "cpu"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "classical OpenCV fallback" in run.stdout and "acceptance" in run.stdout and ": met" in run.stdout
    report = json.loads((out / "report.json").read_text())
    rows = report["metrics"]["per_frame"]
    assert [r["frame"] for r in rows] == [1, 3, 5, 7]
    for r in rows:
        assert r["psnr_infilled"] >= r["psnr_infilled_initial"] + 4.0, r
        assert r["psnr_observed"] >= r["psnr_observed_initial"], r
        assert r["pixels_observed"] > 0 and r["pixels_infilled"] > 0
    fl = report["metrics"]["flicker"]
    assert fl["temporal_error"]["refined"] <= fl["temporal_error"]["initial"], fl
    assert f"flicker (mean |frame t+1 - frame t|, fixed cameras): refined {fl['refined']:.4f}" in run.stdout
    # the results and the inputs, as the demo says
    assert (out / "inputs" / "anim.pc2").is_file() and (out / "inputs" / "references" / "transforms.json").is_file()
    np.testing.assert_array_equal(read_pc2(out / "animation.pc2").positions, read_pc2(out / "inputs" / "anim.pc2").positions)
    frames = sorted((out / "splats").iterdir())
    assert [p.name for p in frames] == [f"frame_{n:04d}.ply" for n in FRAMES]
    rest = read_ply(out / "splats.ply")
    assert "bind_face" in rest.extra and len(read_ply(frames[3]).means) == len(rest.means) == report["gaussians"]
    assert not np.allclose(read_ply(frames[0]).means, read_ply(frames[2]).means)  # the splats move with the subject
