"""TIRE through the server (what the add-on calls) and through `likeness3d refine`; its input checks."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from likeness3d.backend.demo import write_inputs
from likeness3d.backend.synthetic.example import example_case
from likeness3d.backend.export.glb import read_glb
from likeness3d.backend.export.ply import read_ply
from likeness3d.protocol.assets import Asset, Mesh
from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import BadMessage, InvalidAsset
from likeness3d.protocol.messages import Progress

SMALL = {"resolution": 32, "azimuths": 4, "elevations_deg": [0.0], "gaussians": 300, "fit_steps": 6,
         "fit_resolution": 24, "turntable_views": 2, "texture_size": 64}


@pytest.fixture(scope="module")
def case():
    return example_case(image_size=48, texture_size=64)


def test_tire_job_through_the_server(server, case):
    asset = Asset(case.initial, case.references, "pebble", "pebble")
    with Client(server.address, timeout=30) as c:
        assert "tire" in c.hello().pipelines
        job = c.submit("tire", asset, SMALL)
        stages = []
        for ev in job.events(timeout=300):
            if isinstance(ev, Progress):
                stages.append(ev.stage)
        result = job.wait(5)
        names = sorted(a.name for a in result.artifacts)
        assert names == ["mesh.glb", "report.json", "sheet.png", "splats.ply", "texture.png"]
        assert stages[0] == "observe" and "render" in stages and "inpaint" in stages and "resplat" in stages
        glb = read_glb(c.fetch(job.id, "mesh.glb"))
        np.testing.assert_allclose(glb.vertices[glb.faces], case.initial.vertices[case.initial.faces], atol=1e-5)
        report = json.loads(c.fetch(job.id, "report.json"))
        assert "classical OpenCV fallback" in report["inpainter"] and "metrics" not in report
        with pytest.raises(BadMessage, match="resolution must be a multiple of 8"):
            c.submit("tire", asset, dict(SMALL, resolution=30))
        no_refs = Asset(case.initial, (), "pebble")
        with pytest.raises(InvalidAsset, match="at least one reference"):
            c.submit("tire", no_refs, SMALL).wait(60)
        no_uvs = Asset(Mesh(case.initial.vertices, case.initial.faces), case.references, "pebble")
        with pytest.raises(InvalidAsset, match="mesh.uvs is missing"):
            c.submit("tire", no_uvs, SMALL).wait(60)


def test_cancel_a_running_tire_job(server, case):
    from likeness3d.protocol.errors import Cancelled

    asset = Asset(case.initial, case.references, "pebble", "pebble")
    with Client(server.address, timeout=30) as c:
        job = c.submit("tire", asset, dict(SMALL, fit_steps=100_000))
        for ev in job.events(timeout=300):
            if isinstance(ev, Progress) and ev.stage == "resplat":
                break
        c.cancel(job.id)
        # "by request": honoured by the fit's per-step check; an enforced cancel says "did not stop in time"
        with pytest.raises(Cancelled, match="cancelled by request"):
            job.wait(60)
        assert c.status()["workers"][0]["restarts"] == 0


def test_models_given_to_serve_reach_the_workers(server_factory, case, tmp_path):
    """`serve --models DIR` is where the workers' pipelines look; a folder without the role is model_missing."""
    from likeness3d.protocol.errors import ModelMissing

    (tmp_path / "models").mkdir()
    srv = server_factory(extra=["--models", str(tmp_path / "models")])
    asset = Asset(case.initial, case.references, "pebble", "pebble")
    with Client(srv.address, timeout=30) as c:
        assert c.hello().models["dir"] == str(tmp_path / "models")
        with pytest.raises(ModelMissing, match="inpaint"):
            c.submit("tire", asset, SMALL).wait(120)


def test_refine_cli_on_files(tmp_path, case):
    paths = write_inputs(case, tmp_path / "in")
    sets = [f"--set={k}={json.dumps(v)}" for k, v in SMALL.items()]
    cmd = [sys.executable, "-m", "likeness3d.backend.cli", "refine", "tire", "--mesh", str(paths["mesh"]),
           "--refs", str(paths["refs"]), "--class", "pebble", "--out", str(tmp_path / "out"),
           "--eval-views", str(paths["truth"]), "--device", "cpu", *sets]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "held-out views" in run.stdout and "inpainter: classical OpenCV fallback" in run.stdout
    assert re.search(r"^  done in \d+ s on cpu$", run.stdout, re.M), run.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    m = report["metrics"]
    assert "mesh.glb" in m["scores"] and m["pixels_observed"] > 0 and m["pixels_infilled"] > 0
    for key in ("psnr_observed", "psnr_infilled", "psnr_infilled_initial", "ssim_observed", "ssim_infilled",
                "ssim_infilled_initial"):
        assert isinstance(m[key], float) and (m[key] > 0 if key.startswith("psnr") else -1 <= m[key] <= 1), key
    for region in ("observed", "infilled"):  # the CLI prints the demo's table of what the report holds
        row = (f"    {region:<42} {m[f'psnr_{region}']:6.2f} / {m[f'ssim_{region}']:.3f}   "
               f"{m[f'psnr_{region}_initial']:6.2f} / {m[f'ssim_{region}_initial']:.3f}")
        assert row in run.stdout.splitlines(), (row, run.stdout)
    assert report["settings"]["fit"]["steps"] == SMALL["fit_steps"]  # the flat --set name reached the tree
    bad = subprocess.run(cmd[:6] + [str(tmp_path / "missing.json")] + cmd[7:], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "invalid_asset" in bad.stderr and "missing.json" in bad.stderr
    bad = subprocess.run(cmd + ["--set", "nope=1"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown key 'nope'" in bad.stderr


def test_tire_with_tiny_diffusion_models(tmp_path, case, one_thread):
    """Every stage with the real diffusers/peft classes (tiny random weights): LoRA trained, saved in
    diffusers' format and loadable by `load_lora_weights`; the report says the output is noise."""
    from likeness3d.backend.config import config_from_dict
    from likeness3d.backend.context import JobContext
    from likeness3d.backend.pipelines.tire import TireConfig, run
    from likeness3d.backend.stages.diffusion.sample.inpaint import build_inpainter
    from likeness3d.backend.stages.diffusion.components import load_components

    asset = Asset(case.initial, case.references, "pebble", "pebble")
    stages = []
    ctx = JobContext(tmp_path / "out", tmp_path / "work", on_progress=lambda st, *a: stages.append(st))
    cfg = config_from_dict(TireConfig, {**SMALL, "elevations_deg": (0.0,), "models": "tiny", "lora": {"steps": 2}})
    report = run(ctx, asset, cfg, list(case.eval_views[:2]))
    assert report["personalised"] is True and "output is noise" in report["inpainter"]
    assert {"render", "personalise", "inpaint", "resplat"} <= set(stages)
    lora = tmp_path / "out" / "pytorch_lora_weights.safetensors"
    assert lora.is_file() and lora.stat().st_size > 0
    comps = load_components("inpaint", "tiny")
    pipe = build_inpainter(comps, lora=lora.parent)
    assert "subject" in comps.unet.peft_config
    out = tmp_path / "out"
    glb = read_glb((out / "mesh.glb").read_bytes())
    assert glb.texture.shape[:2] == (SMALL["texture_size"], SMALL["texture_size"])
    assert len(read_ply(out / "splats.ply").means) == report["gaussians"]
    assert Image.open(out / "texture.png").size == (SMALL["texture_size"], SMALL["texture_size"])
    assert report == json.loads((out / "report.json").read_text())
    assert report["lora"]["steps"] == 2 and report["models"]["inpaint"]["source"] == "tiny"
    assert report["coverage"]["consistency"] == "re-inpainted at low strength"
    assert all(isinstance(report["metrics"][k], float) for k in ("psnr_observed", "psnr_infilled", "psnr_infilled_initial"))
    del pipe
