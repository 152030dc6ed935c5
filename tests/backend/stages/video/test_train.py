"""3DreamBooth + 3Dapter training on one-frame videos: real peft LoRAs inside diffusers' Wan transformer."""

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.video.components import encode_images, encode_prompts
from likeness3d.backend.stages.video.config import AdapterConfig, DreamBoothVideoConfig
from likeness3d.backend.stages.video.lora import ADAPTER, SUBJECT, add_lora, lora_parameters
from likeness3d.backend.stages.video.train import check_flow_scheduler, pretrain_adapter, train_subject


def _views(comps, n=3):
    g = np.random.default_rng(0)
    img = torch.from_numpy(g.random((n, 3, 32, 32), dtype=np.float32))
    return encode_images(comps, img)


def test_one_frame_training_trains_both_loras_and_leaves_the_base_alone(comps):
    tr = comps.transformer
    views = _views(comps)
    assert views.shape == (3, 16, 1, 4, 4)  # every view a one-frame video: one latent frame
    cond = views[[0, 2]].permute(2, 1, 0, 3, 4)
    text = encode_prompts(comps, ["a video of a sks pebble"])
    config = DreamBoothVideoConfig(steps=40, learning_rate=2e-3, rank=4, alpha=8.0)
    add_lora(tr, SUBJECT, config.rank, config.alpha, config.target_modules, seed=0)
    add_lora(tr, ADAPTER, 4, 8.0, AdapterConfig().target_modules, seed=1)
    base = {n: p.detach().clone() for n, p in tr.named_parameters() if "lora_" not in n}
    subject0 = [p.detach().clone() for p in lora_parameters(tr, SUBJECT)]
    adapter0 = [p.detach().clone() for p in lora_parameters(tr, ADAPTER)]
    noise = torch.randn(1, 16, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    result = train_subject(comps, views[:1], text, config, cond=cond, adapter=True, seed=0, fixed_noise=noise,
                           fixed_sigma=0.6)
    assert result.gen_frames == {0}  # every generated token had temporal index 0
    assert result.cond_frames == [1, 2]
    losses = result.losses
    assert len(losses) == 40 and np.mean(losses[-5:]) < 0.85 * np.mean(losses[:5]), losses
    assert all(not torch.equal(a, b) for a, b in zip(subject0, lora_parameters(tr, SUBJECT)) if a.abs().sum() == 0)
    assert any(not torch.equal(a, b) for a, b in zip(adapter0, lora_parameters(tr, ADAPTER)))
    for n, p in tr.named_parameters():
        if "lora_" not in n:
            assert torch.equal(p, base[n]), n


def test_without_3dapter_only_the_subject_lora_moves(comps):
    tr = comps.transformer
    views = _views(comps, 2)
    text = encode_prompts(comps, ["a video of a sks pebble"])
    add_lora(tr, SUBJECT, 4, 8.0, DreamBoothVideoConfig().target_modules, seed=0)
    add_lora(tr, ADAPTER, 4, 8.0, AdapterConfig().target_modules, seed=1)
    adapter0 = [p.detach().clone() for p in lora_parameters(tr, ADAPTER)]
    result = train_subject(comps, views, text, DreamBoothVideoConfig(steps=3), adapter=False, seed=1)
    assert result.cond_frames is None and len(result.losses) == 3
    assert all(torch.equal(a, b) for a, b in zip(adapter0, lora_parameters(tr, ADAPTER)))


def test_single_view_pretraining_moves_only_3dapter(comps):
    tr = comps.transformer
    views = _views(comps, 2)
    text = encode_prompts(comps, ["a shoe on a floor"])
    add_lora(tr, ADAPTER, 4, 8.0, AdapterConfig().target_modules, seed=1)
    base = {n: p.detach().clone() for n, p in tr.named_parameters() if "lora_" not in n}
    before = [p.detach().clone() for p in lora_parameters(tr, ADAPTER)]
    result = pretrain_adapter(comps, [(views[0:1], views[1:2], text)], AdapterConfig(pretrain_learning_rate=1e-3), steps=4)
    assert result.gen_frames == {0} and result.cond_frames == [1] and len(result.losses) == 4
    assert any(not torch.equal(a, b) for a, b in zip(before, lora_parameters(tr, ADAPTER)))
    assert all(torch.equal(p, base[n]) for n, p in tr.named_parameters() if "lora_" not in n)


def test_a_scheduler_that_is_not_flow_matching_is_refused():
    from diffusers import DDIMScheduler

    with pytest.raises(ValueError, match="flow-matching"):
        check_flow_scheduler(DDIMScheduler())


def test_the_graphed_step_trains_what_the_eager_one_does(comps, monkeypatch):
    """Through `GraphedCall` and `Replay` (stand-in graphs that recompute eagerly, as a CPU cannot capture)
    the same losses and LoRA weights as eagerly, with 3Dapter; the result says the graphs ran."""
    from eager_graphs import eager_record

    from likeness3d.backend.stages.common import cuda_graphs
    from likeness3d.backend.stages.video import train

    tr = comps.transformer
    views = _views(comps)
    cond = views[[0, 2]].permute(2, 1, 0, 3, 4)
    text = encode_prompts(comps, ["a video of a sks pebble"])
    config = DreamBoothVideoConfig(steps=4, learning_rate=2e-3, rank=4, alpha=8.0)

    def run():
        add_lora(tr, SUBJECT, config.rank, config.alpha, config.target_modules, seed=0)
        add_lora(tr, ADAPTER, 4, 8.0, AdapterConfig().target_modules, seed=1)
        result = train_subject(comps, views, text, config, cond=cond, adapter=True, seed=3)
        return result, [p.detach().clone() for p in lora_parameters(tr, SUBJECT) + lora_parameters(tr, ADAPTER)]

    eager, eager_w = run()
    assert eager.cuda_graphs is False and eager.graph_note == "not on CUDA (cpu)"
    monkeypatch.setattr(train, "why_not_graphed", lambda graphs, device: "")
    monkeypatch.setattr(cuda_graphs.CapturedCall, "_record", eager_record)
    graphed, graphed_w = run()
    assert graphed.cuda_graphs is True and graphed.graph_note == ""
    np.testing.assert_allclose(graphed.losses, eager.losses, rtol=1e-4, atol=1e-6)
    for a, b in zip(graphed_w, eager_w):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-6)
