"""DreamBooth prior preservation: class images from the base model, their on-disk cache, the prior loss term."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.diffusion.train import prior as prior_mod
from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, subject_prior_loss, train_subject_lora
from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.train.multimodal import MultiModalConfig, class_prompt, train_multimodal
from likeness3d.backend.stages.diffusion.train.prior import ClassPrior, cache_key, class_images

PROMPT = "a rgb photo of pebble"
GEN = dict(resolution=16, steps=2, seed=3)


@pytest.fixture
def counted(monkeypatch):
    """Counts the calls that generate class images (the pipeline runs only inside generate_class_images)."""
    calls = []
    real = prior_mod.generate_class_images

    def counting(*args, **kwargs):
        calls.append(args[2] if len(args) > 2 else kwargs["count"])
        return real(*args, **kwargs)

    monkeypatch.setattr(prior_mod, "generate_class_images", counting)
    return calls


def test_class_images_are_cached_and_reused(tmp_path, counted):
    comp = load_components("base", "tiny")
    first = class_images(comp, PROMPT, 3, cache=tmp_path, **GEN)
    assert not first.from_cache and counted == [3] and first.note == ""
    assert first.images.shape == (3, 16, 16, 3) and first.images.dtype == np.uint8
    key, inputs = cache_key(comp, prompt=PROMPT, count=3, resolution=16, steps=2, guidance_scale=7.5, seed=3)
    assert first.folder == tmp_path / key
    assert sorted(p.name for p in tmp_path.iterdir()) == [key]  # no temporary folder left behind
    assert sorted(p.name for p in first.folder.iterdir()) == ["0000.png", "0001.png", "0002.png", "meta.json"]
    assert json.loads((first.folder / "meta.json").read_text())["inputs"]["prompt"] == PROMPT
    assert inputs["model"]["source"] == "tiny" and inputs["count"] == 3

    second = class_images(load_components("base", "tiny"), PROMPT, 3, cache=tmp_path, **GEN)
    assert second.from_cache and counted == [3]  # nothing generated the second time
    np.testing.assert_array_equal(second.images, first.images)

    # anything that changes the images changes the key: another seed, count or prompt generates anew
    other = class_images(comp, PROMPT, 3, cache=tmp_path, resolution=16, steps=2, seed=4)
    assert not other.from_cache and counted == [3, 3] and other.folder != first.folder
    class_images(comp, PROMPT, 2, cache=tmp_path, **GEN)
    class_images(comp, "a rgb photo of cat", 3, cache=tmp_path, **GEN)
    assert counted == [3, 3, 2, 3] and len(list(tmp_path.iterdir())) == 4


def test_a_damaged_entry_is_made_again(tmp_path, counted):
    comp = load_components("base", "tiny")
    first = class_images(comp, PROMPT, 2, cache=tmp_path, **GEN)
    (first.folder / "0001.png").unlink()
    again = class_images(comp, PROMPT, 2, cache=tmp_path, **GEN)
    assert not again.from_cache and counted == [2, 2] and (again.folder / "0001.png").is_file()
    np.testing.assert_array_equal(again.images, first.images)  # the same seeds make the same images


def test_a_crash_while_writing_leaves_no_entry(tmp_path, counted, monkeypatch):
    comp = load_components("base", "tiny")
    real = prior_mod._write_synced
    written = []

    def failing(path, data):
        written.append(path.name)
        if len(written) == 2:
            raise OSError("disk full")
        real(path, data)

    monkeypatch.setattr(prior_mod, "_write_synced", failing)
    got = class_images(comp, PROMPT, 3, cache=tmp_path, **GEN)
    assert got.images.shape == (3, 16, 16, 3) and got.folder is None and "disk full" in got.note
    assert list(tmp_path.iterdir()) == []  # neither a half entry nor a temporary folder
    monkeypatch.setattr(prior_mod, "_write_synced", real)
    assert not class_images(comp, PROMPT, 3, cache=tmp_path, **GEN).from_cache and counted == [3, 3]
    assert class_images(comp, PROMPT, 3, cache=tmp_path, **GEN).from_cache and counted == [3, 3]


def test_generation_is_batch_independent_and_uses_the_base_model(views, monkeypatch):
    """Class images come from the base model (adapters off) and do not depend on the batch. CPU kernels
    differ by a rounding step across batch sizes, so equality is within one uint8 level on a few pixels;
    a leaked adapter moves the images by far more (checked below with the switch-off disabled)."""
    from likeness3d.backend.stages.diffusion.train.lora import add_lora

    comp = load_components("base", "tiny")
    one = prior_mod.generate_class_images(comp, PROMPT, 3, batch_size=1, **GEN).astype(np.int16)
    add_lora(comp, SubjectLoraConfig(rank=4, adapter_name="customize"))
    for p in comp.unet.parameters():  # a LoRA that changes the output (B is zero-initialised)
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.5)
    three = prior_mod.generate_class_images(comp, PROMPT, 3, batch_size=3, **GEN).astype(np.int16)
    assert comp.unet.active_adapters() == ["customize"]  # and on again afterwards
    batch_diff = np.abs(three - one)
    assert batch_diff.max() <= 1 and (batch_diff > 0).mean() < 0.01
    # the same generation with the adapter left on: what a broken switch-off would give
    monkeypatch.setattr(comp.unet, "disable_adapters", lambda: None)
    leaked = prior_mod.generate_class_images(comp, PROMPT, 3, batch_size=3, **GEN).astype(np.int16)
    assert np.abs(leaked - one).mean() > 5.0


def test_prior_term_is_in_the_loss_with_its_weight(views):
    images, masks = views(2, 16, 16)
    classes = ClassPrior(np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), PROMPT)
    cfg = SubjectLoraConfig(steps=3, rank=4, learning_rate=1e-2, adapter_name="t")
    runs = {}
    for w in (1.0, 5.0):
        comp = load_components("base", "tiny")
        runs[w] = train_subject_lora(comp, images, masks, prompts="a rgb photo of sks pebble", config=cfg, seed=0,
                                     prior=ClassPrior(classes.images, PROMPT, w))
    plain = train_subject_lora(load_components("base", "tiny"), images, masks, config=cfg, seed=0)
    assert len(runs[1.0].prior_losses) == 3 and all(np.isfinite(runs[1.0].prior_losses)) and plain.prior_losses == ()
    # step 0: same weights and the same random draws, so the totals differ by exactly (5 - 1) x the prior term
    assert runs[1.0].prior_losses[0] == pytest.approx(runs[5.0].prior_losses[0], rel=1e-6)
    assert runs[5.0].losses[0] - runs[1.0].losses[0] == pytest.approx(4 * runs[1.0].prior_losses[0], rel=1e-4, abs=1e-7)
    assert runs[1.0].losses[0] > runs[1.0].prior_losses[0]  # instance + prior


def test_subject_prior_loss_splits_one_batch(views):
    from diffusers import DDPMScheduler

    from likeness3d.backend.stages.diffusion.text import encode_prompts

    comp = load_components("base", "tiny")
    images, masks = views(1, 16, 16)
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    v = torch.from_numpy(masks)[:, None].float()
    cls = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    inst, prior = subject_prior_loss(comp, DDPMScheduler.from_config(comp.scheduler.config), x, v,
                                     encode_prompts(comp, ["a rgb photo of sks pebble"]), cls,
                                     encode_prompts(comp, [PROMPT] * 2), SubjectLoraConfig(), torch.Generator().manual_seed(0))
    assert inst.ndim == 0 and prior.ndim == 0 and inst > 0 and prior > 0 and inst != prior


def test_multimodal_prior_acts_on_the_stages_it_names(views):
    comp = load_components("base", "tiny")
    images, masks = views(2, 16, 16)
    mods = {m: (images, masks if m == "rgb" else np.ones_like(masks)) for m in ("mask", "depth", "normal", "rgb")}
    classes = ClassPrior(np.full((2, 16, 16, 3), 128, np.uint8), class_prompt("rgb", "pebble"))
    assert classes.prompt == "a rgb photo of pebble"
    for method in ("lora", "full"):
        cfg = MultiModalConfig(steps=(1, 0, 1, 2), method=method, full_learning_rate=1e-4,
                               lora=SubjectLoraConfig(rank=4, adapter_name="customize"))
        res = train_multimodal(load_components("base", "tiny"), mods, class_word="pebble", config=cfg, prior={"rgb": classes})
        got = {m: len(r.prior_losses) for m, r in res.stages}
        assert got == {"mask": 0, "normal": 0, "rgb": 2}, method
    with pytest.raises(ValueError, match="albedo"):
        train_multimodal(comp, mods, class_word="pebble", prior={"albedo": classes})


def test_class_prior_checks_its_inputs():
    with pytest.raises(ValueError, match="uint8"):
        ClassPrior(np.zeros((2, 16, 16, 3), np.float32), PROMPT)
    with pytest.raises(ValueError, match="weight.*0"):
        ClassPrior(np.zeros((2, 16, 16, 3), np.uint8), PROMPT, weight=0.0)
    with pytest.raises(ValueError, match="32x32 but the subject images 16x16"):
        ClassPrior(np.zeros((2, 32, 32, 3), np.uint8), PROMPT).check_size((16, 16))
    with pytest.raises(ValueError, match="count must be a positive integer, got 0"):
        prior_mod.generate_class_images(load_components("base", "tiny"), PROMPT, 0, resolution=16)
