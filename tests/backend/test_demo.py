"""`likeness3d demo` end to end (the README's main command), as a user runs it; its quality numbers."""

import io
import json
import subprocess
import sys

import numpy as np
from PIL import Image

from likeness3d.backend.export.glb import read_glb
from likeness3d.backend.export.ply import read_ply
from likeness3d.backend.export.sheet import turntable_sheet
from likeness3d.backend.inputs.mesh import read_mesh


def test_demo_refines_the_hidden_side(tmp_path):
    out = tmp_path / "d"
    run = subprocess.run([sys.executable, "-m", "likeness3d.backend.cli", "demo", "--out", str(out), "--device", "cpu"],
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "classical OpenCV fallback" in run.stdout  # the degraded mode says so
    report = json.loads((out / "report.json").read_text())
    m = report["metrics"]
    print(json.dumps(m, indent=1), report["seconds"])
    assert m["psnr_observed"] >= 30.0
    assert m["psnr_infilled"] >= m["psnr_infilled_initial"] + 3.0
    assert report["personalised"] is False and "no diffusion weights" in report["inpainter"]
    # the fallback cannot re-inpaint: its consistency rounds average view and fit, and the report says so
    cov = report["coverage"]
    assert "averaged" in cov["consistency"] and cov["reinpainted_pixels_per_round"] == []
    assert len(cov["disagreeing_pixels_per_round"]) == report["settings"]["resplat"]["rounds"]
    assert report["models"] == {} and "mesh.glb" in m["scores"]
    # the refined mesh keeps the artist's geometry and UVs; only the texture changed
    initial = read_mesh(out / "inputs" / "mesh.glb")
    refined = read_glb(out / "mesh.glb")
    np.testing.assert_allclose(refined.vertices[refined.faces], initial.vertices[initial.faces], atol=1e-5)
    np.testing.assert_allclose(refined.uvs, initial.uvs, atol=1e-5)
    assert not np.array_equal(refined.texture, initial.texture)
    splats = read_ply(out / "splats.ply")
    assert len(splats.means) == report["gaussians"] > 0
    # the sheet is the fast preset's turntable: initial and refined rows of its views
    views = report["settings"]["turntable_views"]
    blank = np.zeros((views, 192, 192, 3), np.uint8)
    assert Image.open(out / "sheet.png").size == Image.open(io.BytesIO(turntable_sheet(blank, blank))).size
    seconds = report["seconds"]
    assert {"render", "track", "personalise", "inpaint", "resplat", "export", "evaluate"} <= set(seconds)
    assert abs(sum(v for k, v in seconds.items() if k != "total") - seconds["total"]) < 0.01 * len(seconds)
    assert report["peak_memory"]["cpu_max_rss_mb"] > 0
