"""TIRE on the artist's texture: its size (non-square, non-power-of-two) and layout kept, agreeing texels kept
bit for bit, the report's counts; bad textures and UVs are typed errors naming the field."""

import json

import numpy as np
import pytest

from likeness3d.backend.config import config_from_dict
from likeness3d.backend.context import JobContext
from likeness3d.backend.export.glb import read_glb
from likeness3d.backend.pipelines.texture_checks import check_texturable
from likeness3d.backend.pipelines.tire import TireConfig, run
from likeness3d.backend.synthetic.example import example_case
from likeness3d.protocol.assets import Asset, Mesh
from likeness3d.protocol.errors import InvalidAsset

SMALL = {"resolution": 32, "azimuths": 4, "elevations_deg": [0.0], "gaussians": 300, "fit_steps": 6,
         "fit_resolution": 24, "turntable_views": 2, "coverage": {"budget": 4, "candidates": 24, "planning_px": 32}}


def test_a_non_square_texture_keeps_its_size_and_its_agreeing_texels(tmp_path, one_thread):
    import cv2

    case = example_case(image_size=64, texture_size=64)
    wide = lambda t: cv2.resize(t, (96, 40), interpolation=cv2.INTER_NEAREST)  # noqa: E731  (40 high x 96 wide)
    initial = Mesh(case.initial.vertices, case.initial.faces, case.initial.uvs, wide(case.initial.texture))
    asset = Asset(initial, case.references, "pebble", "pebble")
    out = tmp_path / "out"
    report = run(JobContext(out, tmp_path / "work"), asset, config_from_dict(TireConfig, SMALL))
    glb = read_glb((out / "mesh.glb").read_bytes())
    assert glb.texture.shape[:2] == (40, 96)
    np.testing.assert_allclose(glb.uvs, initial.uvs, atol=1e-6)
    t = report["texels"]
    assert t["texture_size"] == [40, 96] and t["kept"] > 0 and t["infilled"] > 0
    assert t["kept"] + t["from_references"] + t["infilled"] == t["used"]
    changed = (glb.texture[..., :3] != initial.texture[..., :3]).any(-1)
    assert 0 < changed.sum() <= t["from_references"] + t["infilled"] + (40 * 96 - t["used"])
    assert not changed[:, 40:56].all()  # the front meridian (u near 0.5) the photos agree with stays
    cov = report["coverage"]
    assert cov["texels_unseen"] == 0 and isinstance(cov["views_added"], list)
    assert "texels_unseen_by_views" in cov and "texels_filled_on_surface" in cov
    assert len(report["references"]) == 3 and all("lighting" in r for r in report["references"])
    assert "colour_regions" in report and report == json.loads((out / "report.json").read_text())


def test_bad_textures_and_uvs_are_invalid_asset_naming_the_field():
    case = example_case(image_size=32, texture_size=32)
    m = case.initial
    with pytest.raises(InvalidAsset, match="mesh.texture is missing") as e:
        check_texturable(Asset(Mesh(m.vertices, m.faces, m.uvs), case.references, "pebble"), "TIRE")
    assert e.value.field == "mesh.texture"
    tiled = m.uvs.copy()
    tiled[:10] += 1.0
    with pytest.raises(InvalidAsset, match="outside the 0-1 tile.*Pack Islands") as e:
        check_texturable(Asset(Mesh(m.vertices, m.faces, tiled, m.texture), case.references, "pebble"), "TIRE")
    assert e.value.field == "mesh.uvs"
    flat = np.zeros_like(m.vertices)
    with pytest.raises(InvalidAsset, match="degenerate") as e:
        check_texturable(Asset(Mesh(flat, m.faces, m.uvs, m.texture), case.references, "pebble"), "TIRE")
    assert e.value.field == "mesh.faces"
    # a few degenerate faces (the pebble's poles have some) are fine and counted
    assert check_texturable(Asset(m, case.references, "pebble"), "TIRE")["degenerate_faces"] > 0


def test_bad_texture_through_the_pipeline_is_invalid_asset_not_internal(tmp_path):
    case = example_case(image_size=32, texture_size=32)
    m = case.initial
    asset = Asset(Mesh(m.vertices, m.faces, m.uvs), case.references, "pebble")
    with pytest.raises(InvalidAsset, match="mesh.texture"):
        run(JobContext(tmp_path / "o", tmp_path / "w"), asset, config_from_dict(TireConfig, SMALL))
