"""Subject LoRA: a few steps on tiny models, the masked loss, and the diffusers file format round trip."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from likeness3d.backend.stages.diffusion.sample.inpaint import DiffusionInpaintConfig, build_inpainter, inpaint_views
from likeness3d.backend.stages.diffusion.train.lora import (
    LORA_WEIGHT_NAME,
    SubjectLoraConfig,
    add_lora,
    remove_lora,
    save_lora,
    subject_loss,
    train_subject_lora,
)
from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.protocol.errors import Cancelled

FAST = SubjectLoraConfig(steps=3)


def _lora_params(unet, name="subject"):
    return {n: p.detach().clone() for n, p in unet.named_parameters() if "lora_" in n and f".{name}." in n}


def test_defaults_are_tire_and_dreambooth_lora():
    c = SubjectLoraConfig()
    assert (c.steps, c.rank, c.alpha, c.learning_rate, c.batch_size) == (400, 16, 16.0, 1e-4, 1)
    assert c.max_rotation_deg == 15.0 and c.hflip_prob == 0.5
    assert c.prompt("cat") == "a photo of sks cat"


@pytest.mark.parametrize(
    "field,value",
    [("steps", 0), ("rank", 2.5), ("alpha", -1.0), ("learning_rate", float("nan")), ("hflip_prob", 1.5),
     ("max_rotation_deg", 120.0), ("background", (1.0, 1.0)), ("prompt_template", "a photo of sks"),
     ("target_modules", ())],
)
def test_config_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=rf"SubjectLoraConfig\.{field}"):
        SubjectLoraConfig(**{field: value})


def test_training_changes_only_the_adapter(inpaint_components, views):
    c = inpaint_components
    images, masks = views(2)
    base = {k: v.clone() for k, v in c.unet.state_dict().items()}
    seen = []
    result = train_subject_lora(c, images, masks, class_word="cat", config=FAST, progress=lambda *a: seen.append(a))
    assert result.steps == 3 and len(result.losses) == 3 and np.isfinite(result.losses).all()
    assert [s[:2] for s in seen] == [(1, 3), (2, 3), (3, 3)] and "loss" in seen[-1][2]
    after = c.unet.state_dict()
    for k, v in base.items():  # peft wraps the projections: base weights move to `...base_layer.weight`
        k2 = k if k in after else k.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(after[k2], v), k
    lora = _lora_params(c.unet)
    assert lora and all(p.dtype == torch.float32 for p in lora.values())
    assert any(p.abs().max() > 0 for n, p in lora.items() if "lora_B" in n)  # B starts at zero, so it learned
    assert not c.unet.training and not any(p.requires_grad for p in c.unet.parameters())
    assert c.unet.active_adapters() == ["subject"]


@pytest.mark.parametrize("role", ["inpaint", "base"])
def test_background_pixels_do_not_change_the_loss(role, views):
    """The loss sees only the valid foreground: new background pixels give the identical loss, while a
    changed foreground pixel changes it (same seed: same augmentation, masks, noise and timesteps)."""
    from diffusers import DDPMScheduler

    c = load_components(role, "tiny")
    images, masks = views(2, 32, 32)
    imgs = torch.from_numpy(images).permute(0, 3, 1, 2)
    valid = torch.from_numpy(masks)[:, None].float()
    embeds = torch.zeros(2, 77, 32)
    sched = DDPMScheduler.from_config(c.scheduler.config)

    def loss(x):
        return subject_loss(c, sched, x, valid, embeds, SubjectLoraConfig(), torch.Generator().manual_seed(7))

    ref = loss(imgs)
    other_bg = torch.where(valid.bool(), imgs, torch.rand_like(imgs))
    assert torch.equal(loss(other_bg), ref)
    other_fg = imgs.clone()
    other_fg[:, :, 16, 16] = 1 - other_fg[:, :, 16, 16]
    assert not torch.equal(loss(other_fg), ref)
    assert torch.isfinite(ref)


def test_saved_file_loads_into_a_fresh_diffusers_pipeline(models_root, views, tmp_path):
    """Train in place, save, then a pipeline made by diffusers' own from_pretrained + load_lora_weights gives
    the same images as the in-place one (alpha != rank included), and different from the plain model."""
    from diffusers import StableDiffusionInpaintPipeline

    images, masks = views(2)
    cfg = SubjectLoraConfig(steps=4, rank=4, alpha=8.0, learning_rate=1e-2)
    trained = load_components("inpaint", models_root)
    train_subject_lora(trained, images, masks, class_word="cat", config=cfg, seed=1)
    path = save_lora(trained, tmp_path / "lora")
    assert path == tmp_path / "lora" / LORA_WEIGHT_NAME and path.is_file()
    with safe_open(str(path), "pt") as f:
        keys, meta = list(f.keys()), f.metadata()
    assert keys and all(k.startswith("unet.") and (".lora.down." in k or ".lora.up." in k) for k in keys)
    assert json.loads(meta["lora_adapter_metadata"])["unet.lora_alpha"] == 8.0

    run = dict(prompts="a photo of sks cat", config=DiffusionInpaintConfig(strength=0.5, num_inference_steps=6), seed=3)
    in_place = inpaint_views(build_inpainter(trained), images, masks, **run)

    fresh = StableDiffusionInpaintPipeline.from_pretrained(
        models_root / "inpaint", local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    fresh.set_progress_bar_config(disable=True)
    plain = inpaint_views(fresh, images, masks, **run)
    fresh.load_lora_weights(str(tmp_path / "lora"))
    loaded = inpaint_views(fresh, images, masks, **run)
    np.testing.assert_allclose(loaded, in_place, atol=1e-5)
    assert np.abs(loaded - plain).max() > 1e-3

    # the toolkit's own loading path (build_inpainter(lora=...)) gives the same result
    again = inpaint_views(build_inpainter(load_components("inpaint", models_root), lora=tmp_path / "lora"), images, masks, **run)
    np.testing.assert_allclose(again, in_place, atol=1e-5)


def test_base_unet_with_prompt_list_and_resume(views):
    """Customize-It-3D's use: a 4-channel UNet, one prompt per image, staged training resuming the adapter."""
    c = load_components("base", "tiny")
    images, masks = views(2)
    prompts = ["a foreground mask of sks cat", "a rgb photo of sks cat"]
    r = train_subject_lora(c, images, masks, prompts=prompts, config=dataclasses.replace(FAST, steps=2))
    assert np.isfinite(r.losses).all()
    first = _lora_params(c.unet)
    add_lora(c, FAST, resume=True)
    assert all(torch.equal(p, first[n]) for n, p in _lora_params(c.unet).items())
    train_subject_lora(c, images, masks, prompts=prompts, config=dataclasses.replace(FAST, steps=1), resume=True)
    add_lora(c, FAST)  # no resume: a fresh adapter, B back to zero
    assert all((p == 0).all() for n, p in _lora_params(c.unet).items() if "lora_B" in n)
    assert remove_lora(c) and not remove_lora(c)
    assert "subject" not in (getattr(c.unet, "peft_config", None) or {})


def test_cancel_stops_between_steps(inpaint_components, views):
    images, masks = views(1)
    calls = []

    def cancel():
        calls.append(1)
        if len(calls) == 3:
            raise Cancelled("job cancelled by request")

    with pytest.raises(Cancelled):
        train_subject_lora(inpaint_components, images, masks, config=SubjectLoraConfig(steps=10), cancel=cancel)
    assert len(calls) == 3 and not inpaint_components.unet.training


def test_bad_inputs_name_the_argument(inpaint_components, views):
    c = inpaint_components
    images, masks = views(2)
    empty = masks.copy()
    empty[1] = False
    with pytest.raises(ValueError, match=r"masks\[1\] has no foreground"):
        train_subject_lora(c, images, empty, config=FAST)
    with pytest.raises(ValueError, match=r"images height and width must be positive multiples of 8, got 30x32"):
        train_subject_lora(c, images[:, :30], masks[:, :30], config=FAST)
    with pytest.raises(ValueError, match=r"images must be in \[0, 1\]"):
        train_subject_lora(c, images * 2, masks, config=FAST)
    with pytest.raises(ValueError, match=r"masks must have shape \[2, 32, 32\]"):
        train_subject_lora(c, images, masks[:1], config=FAST)
    with pytest.raises(ValueError, match=r"prompts must be a string or 2 strings"):
        train_subject_lora(c, images, masks, prompts=["a"], config=FAST)
    with pytest.raises(ValueError, match="no LoRA adapter named 'nope'"):
        save_lora(c, "/nonexistent", adapter_name="nope")


def test_a_step_draws_what_two_encoder_calls_and_diffusers_sampling_drew(inpaint_components, views):
    """The step encodes the image and the masked image in one VAE call and moves its host-drawn randomness to
    the device itself: the same draws, in the same order, as two calls of diffusers' latent_dist.sample."""
    import torch.nn.functional as F
    from diffusers import DDPMScheduler

    from likeness3d.backend.stages.diffusion.train.augment import random_flip_rotate
    from likeness3d.backend.stages.diffusion.images import as_image_batch, as_mask_batch
    from likeness3d.backend.stages.diffusion.train.objective import _denoising
    from likeness3d.backend.stages.diffusion.train.masks import random_inpaint_masks
    from likeness3d.backend.stages.diffusion.text import encode_prompts

    c, cfg = inpaint_components, SubjectLoraConfig()
    images, masks = views(1)
    imgs = as_image_batch(images, "images")
    valid = as_mask_batch(masks, "masks", like=imgs)
    sched = DDPMScheduler.from_config(c.scheduler.config)
    embeds = encode_prompts(c, ["a photo of sks cat"])
    with torch.no_grad():
        pred, target, _ = _denoising(c, sched, imgs, valid, embeds, cfg, torch.Generator().manual_seed(3))
        g = torch.Generator().manual_seed(3)  # the sequence before: two encoder calls, diffusers' sampling
        bg = torch.tensor(cfg.background).view(1, 3, 1, 1)
        x, _ = random_flip_rotate(imgs * valid + bg * (1 - valid), valid, cfg.max_rotation_deg, cfg.hflip_prob,
                                  bg.view(3), g)
        x = x * 2 - 1
        sf = c.vae.config.scaling_factor
        latents = c.vae.encode(x).latent_dist.sample(generator=g) * sf
        noise = torch.randn(latents.shape, generator=g)
        t = torch.randint(0, sched.config.num_train_timesteps, (1,), generator=g)
        m = random_inpaint_masks(1, *x.shape[-2:], cfg.full_mask_prob, g)
        masked = c.vae.encode(x * (m < 0.5)).latent_dist.sample(generator=g) * sf
        model_in = torch.cat([sched.add_noise(latents, noise, t), F.interpolate(m, size=latents.shape[-2:]), masked], 1)
        ref = c.unet(model_in, t, encoder_hidden_states=embeds).sample
    want = sched.get_velocity(latents, noise, t) if sched.config.prediction_type == "v_prediction" else noise
    assert torch.allclose(target, want, atol=1e-6)
    assert torch.allclose(pred, ref, atol=1e-5), float((pred - ref).abs().max())


def test_a_unet_that_cannot_be_graphed_trains_eagerly_with_a_warning(inpaint_components, monkeypatch):
    """`GraphedDenoiser` falls back to the eager UNet, once, with a warning naming the capture's error, and
    its outcome says so (the training result and report.json carry it)."""
    from likeness3d.backend.stages.diffusion.train import graphed_unet
    from likeness3d.backend.stages.diffusion.train.graphed_unet import GraphedDenoiser

    calls = []

    def refuse(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(graphed_unet, "_capture", refuse)
    unet = inpaint_components.unet
    d = GraphedDenoiser(unet)
    x = torch.randn(1, unet.config.in_channels, 8, 8)
    t = torch.tensor([10])
    e = torch.randn(1, 77, unet.config.cross_attention_dim)
    with pytest.warns(RuntimeWarning, match="could not be captured.*stream is capturing"):
        out = d(x, t, e)
    again = d(x, t, e)
    with torch.no_grad():
        ref = unet(x, t, encoder_hidden_states=e).sample
    assert calls == [1] and torch.allclose(out, ref) and torch.allclose(again, ref)
    graphs, note = d.outcome()
    assert not graphs and note.startswith("capture failed") and "stream is capturing" in note
    assert (d.replays, d.eager_calls) == (0, 2)
