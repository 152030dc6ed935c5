"""The fidelity benchmark's own machinery (bench/fidelity*.py): its cases are valid product inputs in the
product's conventions, its damage spares what the references see, and its Blender renders score the true
asset against itself as identical and a wrong one low (the last needs LIKENESS3D_BLENDER_PYTHON)."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import fidelity  # noqa: E402
from fidelity_cases import CASES, build  # noqa: E402
from fidelity_geometry import Caster, texel_samples  # noqa: E402

from likeness3d.backend.inputs.mesh import read_mesh  # noqa: E402
from likeness3d.backend.inputs.transforms import read_transforms  # noqa: E402


@pytest.fixture(scope="module")
def box_case():
    return build("box_512x256", quick=True, ref_px=64, eval_px=64)


def test_there_are_at_least_eight_cases_covering_the_issue():
    assert len(CASES) >= 8
    assert "lit_pebble" in CASES and "vase_observed_wrong" in CASES


def test_case_is_a_valid_product_input(tmp_path, box_case):
    case = box_case
    fidelity.write_case(case, tmp_path)
    mesh = read_mesh(tmp_path / "initial.glb")
    assert mesh.texture.shape == (256, 512, 4)  # non-square, as painted
    assert np.array_equal(mesh.texture, case.initial)
    assert len(mesh.faces) == len(case.part.faces) and mesh.uvs is not None
    # the same surface: every vertex the product reads is one of ours
    ours = {tuple(v) for v in np.round(case.part.vertices, 5)}
    assert {tuple(v) for v in np.round(mesh.vertices.astype(np.float64), 5)} <= ours
    assert case.closed


def test_reference_frames_read_back_as_the_same_cameras(tmp_path, box_case):
    from PIL import Image

    (tmp_path / "images").mkdir()
    frames = []
    for cam in box_case.refs:
        Image.new("RGBA", (cam.width, cam.height), (255, 0, 0, 255)).save(tmp_path / "images" / f"{cam.name}.png")
        frames.append(fidelity.nerfstudio_frame(cam, f"images/{cam.name}.png"))
    (tmp_path / "transforms.json").write_text(json.dumps({"camera_model": "PINHOLE", "frames": frames}))
    refs = read_transforms(tmp_path / "transforms.json")
    for ref, cam in zip(refs, box_case.refs):
        np.testing.assert_allclose(ref.camera.K, cam.K, atol=1e-9)
        np.testing.assert_allclose(ref.camera.w2c, cam.w2c, atol=1e-9)


def test_damage_spares_every_texel_a_reference_sees(box_case):
    case = box_case
    h, w = case.truth.shape[:2]
    tex_i, face, bary = texel_samples(case.part, h, w)
    points = np.einsum("mk,mkd->md", bary, case.part.vertices[case.part.faces[face]])
    caster = Caster(case.part)
    seen = caster.seen_by(points, caster.normals[face], case.refs, min_cosine=0.0)
    flat_t, flat_i = case.truth.reshape(-1, 4), case.initial.reshape(-1, 4)
    assert seen.any() and (~seen).any()
    assert np.array_equal(flat_t[tex_i[seen]], flat_i[tex_i[seen]])
    assert np.abs(flat_t[tex_i[~seen]].astype(int) - flat_i[tex_i[~seen]]).max() > 30  # the hidden side is wrong


def test_glb_texture_size_reads_width_and_height(tmp_path, box_case):
    fidelity.write_case(box_case, tmp_path)
    assert fidelity.glb_texture_size(tmp_path / "truth.glb") == (512, 256)


def test_acceptance_lines_pass_and_fail_as_stated():
    def result(name, obs_i, obs_r, inf_i, inf_r, agrees=True, size=(64, 32), unseen=0):
        return {"case": name, "initial_agrees_observed": agrees, "closed": True, "texels_unseen": unseen,
                "texture_in": [64, 32], "texture_out": list(size),
                "observed": {"psnr_initial": obs_i, "psnr_refined": obs_r}, "infilled": {"psnr_initial": inf_i, "psnr_refined": inf_r}}
    good = [result("a", 100.0, 80.0, 15.0, 25.0), result("b", 20.0, 24.0, 15.0, 20.0, agrees=False)]
    assert all(ok for _, ok, _ in fidelity.acceptance(good))
    bad = [result("a", 100.0, 40.0, 15.0, 14.0, size=(32, 32), unseen=5), result("b", 20.0, 19.0, 15.0, 16.0, agrees=False)]
    assert not any(ok for _, ok, _ in fidelity.acceptance(bad))
    only_agreeing = fidelity.acceptance(good[:1])
    assert only_agreeing[1][1] is None  # no case where the initial disagrees: not applicable, not a failure


@pytest.mark.skipif(not os.environ.get("LIKENESS3D_BLENDER_PYTHON"),
                    reason="set LIKENESS3D_BLENDER_PYTHON to a Python with the bpy wheel")
def test_blender_scores_the_truth_as_identical_and_the_initial_lower(tmp_path, box_case):
    from fidelity_score import load_rgba, regions, score

    case = box_case
    case.evals = case.evals[1:3]  # two views that see the damaged back and the observed front
    fidelity.write_case(case, tmp_path)
    jobs = [{"glb": str(tmp_path / f"{w}.glb"), "out": str(tmp_path / w), "lighting": None,
             "frames": [fidelity.nerfstudio_frame(c, f"{c.name}.png") for c in case.evals]} for w in ("truth", "initial")]
    fidelity.blender(os.environ["LIKENESS3D_BLENDER_PYTHON"], jobs, 4, tmp_path, "test")
    truth = [load_rgba(tmp_path / "truth" / f"{c.name}.png") for c in case.evals]
    masks, disagree = regions(case, truth)
    assert disagree < 0.02  # Blender and the ray caster see the same cameras
    assert all(m["observed"].any() and m["infilled"].any() for m in masks)
    itself = score(truth, [load_rgba(tmp_path / "truth" / f"{c.name}.png") for c in case.evals], masks)
    assert all(itself[r]["psnr"] == float("inf") and itself[r]["ssim"] > 0.9999 for r in ("observed", "infilled", "all"))
    initial = score(truth, [load_rgba(tmp_path / "initial" / f"{c.name}.png") for c in case.evals], masks)
    assert initial["infilled"]["psnr"] < 25.0 and initial["observed"]["psnr"] > 35.0
