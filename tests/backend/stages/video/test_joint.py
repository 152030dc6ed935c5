"""The dual-branch forward: exactly Wan's without conditioning; 3Dapter acts on the conditioning tokens only."""

import torch

from likeness3d.backend.stages.video.config import ADAPTER_TARGETS, SUBJECT_TARGETS
from likeness3d.backend.stages.video.joint import BASE, joint_forward, lin
from likeness3d.backend.stages.video.lora import ADAPTER, SUBJECT, add_lora


def _inputs():
    g = torch.Generator().manual_seed(0)
    return (torch.randn(1, 16, 3, 4, 4, generator=g), torch.tensor([700.0]), torch.randn(1, 8, 32, generator=g),
            torch.randn(1, 16, 2, 4, 4, generator=g))


def _two_loras(comps, randomise_lora):
    tr = comps.transformer
    add_lora(tr, SUBJECT, 4, 8.0, SUBJECT_TARGETS, seed=0)
    add_lora(tr, ADAPTER, 4, 8.0, ADAPTER_TARGETS, seed=1)
    randomise_lora(tr, SUBJECT, 2)
    randomise_lora(tr, ADAPTER, 3)
    return tr


def test_without_conditioning_the_joint_forward_is_the_transformers_forward(comps, randomise_lora):
    tr = _two_loras(comps, randomise_lora)
    x, t, text, _ = _inputs()
    tr.set_adapter(SUBJECT)
    with torch.no_grad():
        want = tr(x, t, text, return_dict=False)[0]
        got = joint_forward(tr, x, t, text, gen_branch=SUBJECT)
        base = joint_forward(tr, x, t, text, gen_branch=BASE)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert (got - base).abs().max() > 1e-3  # the subject LoRA acts


def test_zeroing_3dapter_leaves_the_generated_tokens_projections_unchanged(comps, randomise_lora):
    tr = _two_loras(comps, randomise_lora)
    x, t, text, cond = _inputs()
    with torch.no_grad():
        on = []
        joint_forward(tr, x, t, text, cond, gen_branch=SUBJECT, cond_branch=ADAPTER, record=on)
        for n, p in tr.named_parameters():
            if "lora_B" in n and f".{ADAPTER}." in n:
                p.zero_()
        off = []
        joint_forward(tr, x, t, text, cond, gen_branch=SUBJECT, cond_branch=ADAPTER, record=off)
    # block 0 sees the same inputs both times: the generated tokens' q/k/v are identical, the conditioning ones not
    for a, b in zip(on[0]["gen"], off[0]["gen"]):
        assert torch.equal(a, b)
    assert all((a - b).abs().max() > 1e-4 for a, b in zip(on[0]["cond"], off[0]["cond"]))
    # and on every LoRA-wrapped projection: the generated stream's output does not depend on 3Dapter at all
    probe = torch.randn(1, 5, tr.config.num_attention_heads * tr.config.attention_head_dim)
    for name, module in tr.named_modules():
        if hasattr(module, "lora_A") and ADAPTER in module.lora_A and module.in_features == probe.shape[-1]:
            with torch.no_grad():
                before = lin(module, probe, SUBJECT)
                module.lora_B[ADAPTER].weight.normal_()
                assert torch.equal(before, lin(module, probe, SUBJECT)), name
                assert not torch.equal(lin(module, probe, ADAPTER), lin(module, probe, BASE)), name


def test_removing_the_conditioning_changes_the_output(comps, randomise_lora):
    tr = _two_loras(comps, randomise_lora)
    x, t, text, cond = _inputs()
    with torch.no_grad():
        with_views = joint_forward(tr, x, t, text, cond, gen_branch=SUBJECT, cond_branch=ADAPTER)
        without = joint_forward(tr, x, t, text, None, gen_branch=SUBJECT, cond_branch=ADAPTER)
        other_views = joint_forward(tr, x, t, text, cond.flip(2), gen_branch=SUBJECT, cond_branch=ADAPTER)
    assert with_views.shape == without.shape == x.shape
    assert (with_views - without).abs().max() > 1e-3
    assert (with_views - other_views).abs().max() > 1e-4  # each view's own temporal index: order matters


def test_lin_computes_what_peft_computes_for_each_branch(comps, randomise_lora):
    """`lin` skips peft's mixed-batch routing, not its arithmetic: the same output as
    `layer(x, adapter_names=...)` for the subject LoRA, the 3Dapter LoRA and the frozen base."""
    tr = _two_loras(comps, randomise_lora)
    layer = tr.blocks[0].attn1.to_q
    assert hasattr(layer, "lora_A") and SUBJECT in layer.lora_A and ADAPTER in layer.lora_A
    x = torch.randn(2, 5, layer.in_features, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        outs = {}
        for branch in (SUBJECT, ADAPTER, BASE):
            want = layer(x, adapter_names=[branch] * 2)
            outs[branch] = got = lin(layer, x, branch)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert (outs[SUBJECT] - outs[BASE]).abs().max() > 1e-3 and (outs[ADAPTER] - outs[SUBJECT]).abs().max() > 1e-3
