"""Score distillation on CUDA graphs against the eager step: the same loss and image gradient, every step
replayed (tiny models on the GPU; an SD-2-sized step is timed in bench/gpu_customize.py)."""

from __future__ import annotations

import pytest
import torch

from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.config import SDSConfig
from likeness3d.backend.stages.diffusion.sds import sds_loss
from likeness3d.backend.stages.diffusion.sds_graphs import SDSGraphs
from likeness3d.backend.stages.diffusion.text import encode_prompts

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_graphed_sds_matches_eager_and_replays_every_step():
    base = load_components("base", "tiny", device="cuda")
    cfg = SDSConfig(guidance_scale=7.5)
    cond, uncond = encode_prompts(base, ["a rgb photo of sks cat"]), encode_prompts(base, [""])
    graphs = SDSGraphs(base, cfg)
    assert graphs.enabled
    gen = torch.Generator().manual_seed(0)
    for step, frac in enumerate((0.25, 0.4, 0.55, 0.3)):
        image = torch.rand(1, 3, 64, 64, generator=gen).cuda()
        noise = torch.randn(1, 4, 32, 32, generator=gen)
        outs = []
        for g in (None, graphs):
            x = image.clone().requires_grad_(True)
            res = sds_loss(base, x, cond, uncond, cfg, fraction=frac, noise=noise, graphs=g)
            res.loss.backward()
            outs.append((res.loss.detach().clone(), x.grad.detach().clone()))
        (l_e, g_e), (l_g, g_g) = outs
        torch.testing.assert_close(l_g, l_e, rtol=2e-3, atol=1e-4)
        torch.testing.assert_close(g_g, g_e, rtol=2e-2, atol=2e-4)
        assert g_e.abs().max() > 0
    assert graphs.report() == {"cuda_graphs": True, "graph_note": ""}
    assert graphs.unet.replays == 4 and graphs.encoder.replays == 4
