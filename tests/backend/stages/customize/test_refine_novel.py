"""The refine stage's SDS novel view: decoded in the references' call, the same optimisation as alone; its
report says whether the SDS ran on CUDA graphs (tiny models, 32 px, CPU: eager)."""

from __future__ import annotations

import pytest
import torch

from likeness3d.backend.synthetic.example import example_case
from likeness3d.backend.stages.views.cameras import Cameras, bounding_sphere
from likeness3d.backend.stages.customize.deferred import DeferredPoints
from likeness3d.backend.stages.customize.pointcloud import surface_points
from likeness3d.backend.stages.customize.refine_points import PointRefineConfig, refine_points, sds_novel_loss
from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.config import SDSConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _run(batched: bool, case, cloud, base):
    center, radius = bounding_sphere(case.initial.vertices)
    ref = case.references[0]
    rgba = torch.as_tensor(ref.image[None].astype("float32") / 255)
    cams = Cameras.from_protocol([ref.camera])
    torch.manual_seed(0)
    model = DeferredPoints(cloud.points, cloud.rgb, features=4, radius_px=1.5, seed=0)
    novel = sds_novel_loss(base, "a rgb photo of sks pebble", SDSConfig(guidance_scale=7.5), center, radius,
                           cams.width, steps=6, weight=1.0, seed=3)
    loss = novel if batched else (lambda m, s: novel(m, s))  # a plain callable renders the novel view alone
    result = refine_points(model, rgba[..., :3], rgba[..., 3] > 0.5, cams, PointRefineConfig(steps=6),
                           novel_loss=loss)
    return result, model, novel


def test_novel_view_in_the_references_call_optimises_the_same():
    case = example_case(image_size=32, texture_size=32)
    cloud = surface_points(case.initial, 1200, seed=0)
    base = load_components("base", "tiny")
    alone, m_alone, _ = _run(False, case, cloud, base)
    batched, m_batched, novel = _run(True, case, cloud, base)
    assert len(alone.losses) == len(batched.losses) == 6
    # the same losses step by step (one splat call of 2 cameras vs two of 1: float noise only)
    torch.testing.assert_close(torch.tensor(batched.losses), torch.tensor(alone.losses), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(m_batched.rgb.detach(), m_alone.rgb.detach(), rtol=1e-3, atol=1e-4)
    assert novel.report() == {"cuda_graphs": False, "graph_note": "not on CUDA: eager"}


def test_sds_cuda_graph_setting_is_validated():
    with pytest.raises(ValueError, match="cuda_graph"):
        SDSConfig(cuda_graph="yes")
