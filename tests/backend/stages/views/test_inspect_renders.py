"""The inspect pipeline's renders of the received mesh from each reference camera (stages.views.alignment).

Here rather than in tests/backend/pipelines because this work stream owns tests/backend/stages only.
"""

import io
import json

import numpy as np
import pytest
from PIL import Image

from likeness3d.backend.context import JobContext
from likeness3d.backend.synthetic.example import example_asset
from likeness3d.backend.pipelines.inspect import InspectConfig, run
from likeness3d.backend.stages.views.alignment import reference_view
from likeness3d.protocol.assets import Asset, Camera, Reference


def rotated(camera: Camera, degrees: float) -> Camera:
    """The same camera turned about its own y axis (the photo no longer matches)."""
    a = np.radians(degrees)
    turn = np.eye(4)
    turn[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    return Camera(camera.K, turn @ camera.w2c, camera.width, camera.height)


def test_inspect_writes_a_render_beside_each_reference(tmp_path):
    good = example_asset(image_size=96, texture_size=64)
    front = good.references[0]
    skewed = Reference("front_skewed", front.image, rotated(front.camera, 6.0))
    asset = Asset(good.mesh, good.references + (skewed,), good.class_word, good.name)
    ctx = JobContext(tmp_path / "out", tmp_path / "work")
    run(ctx, asset, InspectConfig(render_max_side=64))

    report = json.loads((tmp_path / "out" / "inspect.json").read_text())
    names = [f"reference_{i:02d}.png" for i in range(4)]
    assert report["renders"] == names
    assert set(names) <= set(ctx.artifacts)
    for r, name in zip(report["references"], names):
        assert r["render"] == name
    ious = [r["silhouette_iou"] for r in report["references"]]
    assert min(ious[:3]) > 0.9  # the example's cameras are aligned with its photos
    assert ious[3] < ious[0] - 0.1  # six degrees off shows
    # Each PNG: a label column, then photo | render | blend at 64 x 64 (96 px photos brought to 64).
    img = np.asarray(Image.open(io.BytesIO((tmp_path / "out" / names[0]).read_bytes())))
    assert img.shape == (66, 64 + 3 * 66, 3)
    photo, render = img[:64, 64:128].astype(float), img[:64, 130:194].astype(float)
    assert np.abs(photo - render).mean() < 20  # the mesh carries the true texture: the two look alike


def test_reference_view_scales_and_validates():
    asset = example_asset(image_size=80, texture_size=32)
    ref = asset.references[1]
    view = reference_view(asset.mesh, ref.image, ref.camera, max_side=40)
    assert view.reference.shape == view.render.shape == (40, 40, 4) and view.scale == 0.5
    assert view.silhouette_iou > 0.85
    with pytest.raises(ValueError, match="image"):
        reference_view(asset.mesh, ref.image[:10], ref.camera)
    with pytest.raises(ValueError, match="render_max_side"):
        InspectConfig(render_max_side=3)
