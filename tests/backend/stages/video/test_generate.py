"""Generation with the conditioning views: guidance batched as one call, and the conditioning counts."""

import torch

from likeness3d.backend.stages.video.config import ADAPTER_TARGETS, GenerateConfig, SUBJECT_TARGETS
from likeness3d.backend.stages.video.generate import generate_latents
from likeness3d.backend.stages.video.lora import ADAPTER, SUBJECT, add_lora


def test_generated_latents_depend_on_the_conditioning_views(comps, randomise_lora):
    tr = comps.transformer
    add_lora(tr, SUBJECT, 4, 8.0, SUBJECT_TARGETS, seed=0)
    add_lora(tr, ADAPTER, 4, 8.0, ADAPTER_TARGETS, seed=1)
    randomise_lora(tr, ADAPTER, 4)
    config = GenerateConfig(frames=5, height=32, width=32, steps=2, guidance_scale=4.0)
    g = torch.Generator().manual_seed(0)
    text, negative = torch.randn(1, 8, 32, generator=g), torch.randn(1, 8, 32, generator=g)
    cond = torch.randn(1, 16, 2, 4, 4, generator=g)
    kw = dict(gen_branch=SUBJECT, cond_branch=ADAPTER, seed=3)
    with_views = generate_latents(comps, text, negative, config, cond=cond, **kw)
    again = generate_latents(comps, text, negative, config, cond=cond, **kw)
    without = generate_latents(comps, text, negative, config, cond=None, **kw)
    assert with_views.shape == (1, 16, 2, 4, 4)
    torch.testing.assert_close(with_views, again)  # the same seed, the same video
    assert (with_views - without).abs().max() > 1e-3


def test_wan_21s_own_scheduler_unipc_with_flow_sigmas_denoises_too(comps):
    import dataclasses

    from diffusers import UniPCMultistepScheduler

    from likeness3d.backend.stages.video.train import check_flow_scheduler

    unipc = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                    num_train_timesteps=1000)
    check_flow_scheduler(unipc)  # a flow-matching scheduler: the training objective applies
    wan = dataclasses.replace(comps, scheduler=unipc)
    g = torch.Generator().manual_seed(1)
    out = generate_latents(wan, torch.randn(1, 8, 32, generator=g), None, GenerateConfig(frames=5, height=32, width=32,
                           steps=4, flow_shift=5.0))
    assert out.shape == (1, 16, 2, 4, 4) and torch.isfinite(out).all()
