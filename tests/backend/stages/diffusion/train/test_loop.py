"""The one training loop (`train/loop.py`) behind the subject LoRA and the full fine-tune: the same image order,
the same step, honest CUDA-graph fields, and the graphed path's autograd wiring (with eager stand-in graphs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from eager_graphs import eager_record

from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.train import graphed_unet, loop
from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, train_subject_lora
from likeness3d.backend.stages.diffusion.train.multimodal import train_full
from likeness3d.backend.stages.diffusion.train.prior import ClassPrior

PROMPT = "a rgb photo of sks pebble"
CFG = SubjectLoraConfig(steps=3, rank=4, adapter_name="t")


def _run(method: str, images, masks, config=CFG, seed=0, prior=None, text_encoder=False, comp=None):
    """(components, result) of one run of `method` ("lora" or "full") on a fresh tiny base model."""
    comp = comp or load_components("base", "tiny")
    if method == "lora":
        return comp, train_subject_lora(comp, images, masks, prompts=PROMPT, config=config, seed=seed, prior=prior)
    return comp, train_full(comp, images, masks, PROMPT, config, 1e-3, seed, train_text_encoder=text_encoder,
                            prior=prior)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_both_methods_draw_the_images_in_shuffled_epochs(method, views, monkeypatch):
    """Every image once per epoch, in a new order each epoch (the full fine-tune drew with replacement before)."""
    images, masks = views(3, 16, 16)
    src = torch.from_numpy(images).permute(0, 3, 1, 2)
    drawn = []
    real = loop.subject_loss

    def spy(components, scheduler, imgs, *args, **kwargs):
        drawn.extend(next(i for i in range(len(src)) if torch.equal(x, src[i])) for x in imgs)
        return real(components, scheduler, imgs, *args, **kwargs)

    monkeypatch.setattr(loop, "subject_loss", spy)
    _run(method, images, masks, dataclasses.replace(CFG, steps=12))
    epochs = [drawn[i : i + 3] for i in range(0, 12, 3)]
    assert all(sorted(e) == [0, 1, 2] for e in epochs), drawn
    assert len({tuple(e) for e in epochs}) > 1, drawn  # shuffled anew, not one fixed order


@pytest.mark.parametrize("text_encoder", [False, True])
def test_lora_and_full_take_the_same_first_step(text_encoder, views):
    """At step 1 the LoRA (B = 0) is the base model, as is the full fine-tune's: one seed gives the same
    images, augmentation, noise and timesteps, so the same first loss (its prior term too); then they part."""
    images, masks = views(2, 16, 16)
    classes = ClassPrior(np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8), "a rgb photo of pebble")
    _, lora = _run("lora", images, masks, seed=5, prior=classes)
    _, full = _run("full", images, masks, seed=5, prior=classes, text_encoder=text_encoder)
    assert lora.losses[0] == pytest.approx(full.losses[0], rel=1e-4)
    assert lora.prior_losses[0] == pytest.approx(full.prior_losses[0], rel=1e-4)
    assert lora.losses[1:] != full.losses[1:]  # different parameters trained at different rates
    assert (lora.adapter_name, full.adapter_name) == ("t", "full")


@pytest.mark.parametrize("method", ["lora", "full"])
def test_cpu_results_say_no_graphs_and_why(method, views):
    images, masks = views(2, 16, 16)
    _, r = _run(method, images, masks)
    assert r.cuda_graphs is False and "not on CUDA (cpu)" == r.graph_note
    assert r.steps == 3 and len(r.losses) == 3 and np.isfinite(r.losses).all()


def test_why_not_graphed_names_each_reason():
    cuda = torch.device("cuda")  # only the device's type is read: no GPU needed
    assert loop.why_not_graphed(SubjectLoraConfig(), cuda) == ""
    assert loop.why_not_graphed(SubjectLoraConfig(), torch.device("cpu")) == "not on CUDA (cpu)"
    assert "cuda_graph" in loop.why_not_graphed(SubjectLoraConfig(cuda_graph=False), cuda)
    assert "gradient checkpointing" in loop.why_not_graphed(SubjectLoraConfig(gradient_checkpointing=True), cuda)


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_failed_capture_is_in_the_result(method, views, monkeypatch):
    """A capture that fails trains eagerly, and the result says so with the error (never silently)."""
    def refuse(*args):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(loop, "why_not_graphed", lambda config, device: "")  # as on CUDA
    monkeypatch.setattr(graphed_unet, "_capture", refuse)
    images, masks = views(2, 16, 16)
    with pytest.warns(RuntimeWarning, match="could not be captured"):
        _, r = _run(method, images, masks)
    assert r.cuda_graphs is False and r.graph_note.startswith("capture failed, trained eagerly: RuntimeError")
    assert np.isfinite(r.losses).all()


class _EagerGraphs(graphed_unet._Captured):
    """`_Captured` with its two graphs replaced by eager recomputation into the same static tensors, so the
    CPU runs the graphed path's autograd wiring (`Replay`: static inputs, which inputs and parameters get
    gradients, in which order) as the GPU runs it."""

    _record = eager_record


@pytest.mark.parametrize("method,text_encoder", [("lora", False), ("full", False), ("full", True)])
def test_the_graphed_path_trains_what_the_eager_one_does(method, text_encoder, views, monkeypatch):
    """Through `GraphedDenoiser` and `Replay` (stand-in graphs) the same losses and weights as eagerly; the
    full fine-tune's text encoder learns through the replayed UNet's gradient w.r.t. the embeddings."""
    images, masks = views(2, 16, 16)
    cfg = dataclasses.replace(CFG, learning_rate=1e-2)
    eager_comp, eager = _run(method, images, masks, cfg, text_encoder=text_encoder)
    monkeypatch.setattr(loop, "why_not_graphed", lambda config, device: "")
    monkeypatch.setattr(graphed_unet, "_capture", _EagerGraphs)
    comp, graphed = _run(method, images, masks, cfg, text_encoder=text_encoder)
    assert graphed.cuda_graphs is True and graphed.graph_note == "" and not eager.cuda_graphs
    np.testing.assert_allclose(graphed.losses, eager.losses, rtol=1e-4, atol=1e-6)
    for part in ("unet", "text_encoder"):
        a, b = getattr(eager_comp, part).state_dict(), getattr(comp, part).state_dict()
        for k in a:
            torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-6, msg=f"{part}.{k}")
    if text_encoder:
        fresh = load_components("base", "tiny").text_encoder.state_dict()
        assert any(not torch.equal(v, fresh[k]) for k, v in comp.text_encoder.state_dict().items())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_the_graphs_are_released_before_the_models_are_restored(method, views, monkeypatch):
    """The captured graphs (their memory pool) are gone when `restore` casts the models back, although the last
    step's autograd graph (a prior term's too) held them through the replay node."""
    import weakref

    from likeness3d.backend.stages.diffusion.train import lora, multimodal

    made, seen = [], []

    def capture(*args):
        g = _EagerGraphs(*args)
        made.append(weakref.ref(g))
        return g

    def checked(train):
        def run(components, imgs, valid, embed, trainable, config, **kw):
            def restore():
                seen.append([r() is None for r in made])
                trainable.restore()

            return train(components, imgs, valid, embed, dataclasses.replace(trainable, restore=restore), config, **kw)
        return run

    monkeypatch.setattr(loop, "why_not_graphed", lambda config, device: "")
    monkeypatch.setattr(graphed_unet, "_capture", capture)
    monkeypatch.setattr(lora if method == "lora" else multimodal, "train", checked(loop.train))
    images, masks = views(2, 16, 16)
    classes = ClassPrior(np.full((2, 16, 16, 3), 128, np.uint8), "a rgb photo of pebble")
    _, r = _run(method, images, masks, prior=classes)
    assert r.cuda_graphs and seen == [[True]]
