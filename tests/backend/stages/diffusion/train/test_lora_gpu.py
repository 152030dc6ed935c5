"""The training loop on CUDA (GPU only): the graphed UNet step (`graphed_unet`) was really captured and replayed,
and trains what the eager step trains, for the subject LoRA and the full fine-tune (text encoder frozen or
trained through the replayed UNet's gradient)."""

import dataclasses
import warnings

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.diffusion.components import components_from_modules
from likeness3d.backend.stages.diffusion.tiny import build_modules
from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, train_subject_lora
from likeness3d.backend.stages.diffusion.train.multimodal import train_full

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def _components(role: str):
    with torch.device("cuda"):
        parts = build_modules(role, scale="tiny", seed=0)
    return components_from_modules(parts, role=role, device="cuda", dtype=torch.float16)


def _stream_warnings(caught) -> list[str]:
    """torch's "AccumulateGrad node's stream does not match" UserWarning from run_backward: what
    `make_graphed_callables` caused by keeping its capture's autograd graph alive (see graphed_unet)."""
    return [str(w.message) for w in caught if "AccumulateGrad" in str(w.message)]


def _check_graphed(runs):
    (a, wa), (b, wb) = runs[False], runs[True]
    assert a.cuda_graphs is False and a.graph_note == "off (cuda_graph = false)"
    assert b.cuda_graphs is True and b.graph_note == "", b.graph_note  # captured and replayed at every step
    assert len(b.losses) == 8 and np.isfinite(b.losses).all()
    assert np.allclose(a.losses, b.losses, rtol=1e-2, atol=1e-4), (a.losses, b.losses)
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        assert torch.allclose(wa[k], wb[k], rtol=1e-2, atol=1e-4), k


def test_graphed_lora_steps_equal_eager_ones(views):
    images, masks = views(2)
    runs = {}
    for graph in (False, True):
        c = _components("inpaint")
        cfg = dataclasses.replace(SubjectLoraConfig(steps=8), cuda_graph=graph)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train_subject_lora(c, images, masks, class_word="cat", config=cfg, seed=4)
        assert not _stream_warnings(caught), _stream_warnings(caught)
        lora = {n: p.detach().float().clone() for n, p in c.unet.named_parameters() if "lora_" in n}
        runs[graph] = (result, lora)
    _check_graphed(runs)


@pytest.mark.parametrize("text_encoder", [False, True])
def test_graphed_full_fine_tune_equals_eager(text_encoder, views):
    """fp32 master weights of the whole UNet as graph inputs; with the text encoder trained, the embeddings
    require grad and the replayed backward hands their gradient to the eager encoder."""
    images, masks = views(2)
    runs = {}
    for graph in (False, True):
        c = _components("base")
        te_before = {k: v.float().clone() for k, v in c.text_encoder.state_dict().items()}
        cfg = dataclasses.replace(SubjectLoraConfig(steps=8), cuda_graph=graph)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = train_full(c, images, masks, "a rgb photo of sks cat", cfg, 1e-4, 4,
                                train_text_encoder=text_encoder)
        assert not _stream_warnings(caught), _stream_warnings(caught)
        weights = {f"unet.{k}": v.float().clone() for k, v in c.unet.state_dict().items()}
        te = {k: v.float().clone() for k, v in c.text_encoder.state_dict().items()}
        weights.update({f"text_encoder.{k}": v for k, v in te.items()})
        moved = any(not torch.equal(v, te_before[k]) for k, v in te.items())
        assert moved == text_encoder  # trained only when asked, graphed or not
        assert all(v.dtype == torch.float16 for v in c.unet.state_dict().values())  # cast back
        runs[graph] = (result, weights)
    _check_graphed(runs)
