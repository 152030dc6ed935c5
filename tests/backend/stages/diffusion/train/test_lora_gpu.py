"""Subject LoRA on CUDA (GPU only): the graphed UNet step (`graphed_unet`) trains what the eager step trains."""

import dataclasses

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, train_subject_lora
from likeness3d.backend.stages.diffusion.components import components_from_modules
from likeness3d.backend.stages.diffusion.tiny import build_modules

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_graphed_lora_steps_equal_eager_ones(views):
    images, masks = views(2)
    runs = {}
    for graph in (False, True):
        with torch.device("cuda"):
            parts = build_modules("inpaint", scale="tiny", seed=0)
        c = components_from_modules(parts, role="inpaint", device="cuda", dtype=torch.float16)
        cfg = dataclasses.replace(SubjectLoraConfig(steps=8), cuda_graph=graph)
        result = train_subject_lora(c, images, masks, class_word="cat", config=cfg, seed=4)
        lora = {n: p.detach().float().clone() for n, p in c.unet.named_parameters() if "lora_" in n}
        runs[graph] = (result, lora)
    (a, la), (b, lb) = runs[False], runs[True]
    assert len(b.losses) == 8 and np.isfinite(b.losses).all()
    assert np.allclose(a.losses, b.losses, rtol=1e-2, atol=1e-4), (a.losses, b.losses)
    assert la.keys() == lb.keys() and la
    for k in la:
        assert torch.allclose(la[k], lb[k], rtol=1e-2, atol=1e-4), k
