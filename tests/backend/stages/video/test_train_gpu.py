"""3DreamBooth + 3Dapter training on CUDA (GPU only): the graphed step (`train.Velocity` over `GraphedCall`)
was really captured and replayed at every step, and trains what the eager step trains."""

import warnings

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.video.components import encode_images, encode_prompts, load_video_components
from likeness3d.backend.stages.video.config import AdapterConfig, DreamBoothVideoConfig
from likeness3d.backend.stages.video.lora import ADAPTER, SUBJECT, add_lora, lora_parameters
from likeness3d.backend.stages.video.train import train_subject

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


@pytest.mark.parametrize("adapter", [True, False])
def test_the_graphed_video_step_is_captured_and_trains_as_eagerly(adapter):
    comps = load_video_components("tiny", device="cuda", dtype=torch.float32)
    tr = comps.transformer
    g = np.random.default_rng(0)
    views = encode_images(comps, torch.from_numpy(g.random((3, 3, 32, 32), dtype=np.float32)).cuda())
    cond = views[[0, 2]].permute(2, 1, 0, 3, 4).contiguous()
    text = encode_prompts(comps, ["a video of a sks pebble"])
    runs = {}
    for graphs in (False, True):
        config = DreamBoothVideoConfig(steps=8, learning_rate=2e-3, rank=4, alpha=8.0, cuda_graph=graphs)
        add_lora(tr, SUBJECT, config.rank, config.alpha, config.target_modules, seed=0)
        add_lora(tr, ADAPTER, 4, 8.0, AdapterConfig().target_modules, seed=1)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train_subject(comps, views, text, config, cond=cond, adapter=adapter, seed=3)
        assert not [w for w in caught if "could not be captured" in str(w.message)], [str(w.message) for w in caught]
        runs[graphs] = result, [p.detach().clone() for p in lora_parameters(tr, SUBJECT) + lora_parameters(tr, ADAPTER)]
    (a, wa), (b, wb) = runs[False], runs[True]
    assert a.cuda_graphs is False and a.graph_note == "off (cuda_graph = false)"
    assert b.cuda_graphs is True and b.graph_note == "", b.graph_note
    assert np.allclose(a.losses, b.losses, rtol=1e-2, atol=1e-4), (a.losses, b.losses)
    for x, y in zip(wa, wb):
        assert torch.allclose(x, y, rtol=1e-2, atol=1e-4)
