"""Multi-modal DreamBooth on the tiny base model: modality images from the mesh, staged training, LoRA file."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from likeness3d.backend.synthetic.example import example_case
from likeness3d.backend.stages.views.cameras import Cameras
from likeness3d.backend.stages.diffusion.train.lora import LORA_WEIGHT_NAME, SubjectLoraConfig, save_lora
from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.train.multimodal import (
    MODALITIES, MultiModalConfig, modality_images, prompt, train_multimodal,
)
from likeness3d.backend.stages.views.mesh_passes import Raycaster


@pytest.fixture(scope="module")
def subject():
    case = example_case(image_size=32, texture_size=32)
    refs = case.references[:2]
    cams = Cameras.from_protocol([r.camera for r in refs])
    rgba = np.stack([r.image for r in refs]).astype(np.float32) / 255
    passes = Raycaster(case.truth).passes(cams)
    mods = modality_images(rgba[..., :3], rgba[..., 3] >= 0.5, passes, cams.viewmats.numpy())
    return case, mods


def test_modality_images_encode_what_the_prompts_name(subject):
    _, mods = subject
    assert set(mods) == set(MODALITIES)
    mask_img, valid = mods["mask"]
    fg = mask_img[..., 0] > 0.5
    assert valid.all() and 0.1 < fg.mean() < 0.9
    depth = mods["depth"][0][..., 0]
    assert depth[~fg].max() == 0 and 0.1 - 1e-6 <= depth[fg].min() and depth[fg].max() == pytest.approx(1.0)
    normal = mods["normal"][0]
    # facing the camera: z towards the viewer is the dominant, positive component (blue)
    assert normal[fg][:, 2].mean() > 0.8 and np.all(normal[~fg] == 0)
    rgb, rgb_valid = mods["rgb"]
    assert np.array_equal(rgb_valid, fg)
    assert prompt("normal", "cat") == "a normal map of sks cat"
    with pytest.raises(ValueError, match="modality"):
        prompt("albedo", "cat")


def test_stages_in_order_and_lora_loads_in_diffusers(subject, tmp_path):
    from diffusers import StableDiffusionPipeline

    case, mods = subject
    comp = load_components("base", "tiny")
    seen = []
    cfg = MultiModalConfig(steps=(1, 2, 0, 2), lora=SubjectLoraConfig(rank=4, learning_rate=1e-2, adapter_name="customize"))
    res = train_multimodal(comp, mods, class_word=case.class_word, config=cfg, progress=lambda s, n, m: seen.append((s, n, m)))
    assert [m for m, _ in res.stages] == ["mask", "depth", "rgb"]
    assert [r.steps for _, r in res.stages] == [1, 2, 2]
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 5] and all(n == 5 for _, n, _ in seen)
    assert "(mask)" in seen[0][2] and "(rgb)" in seen[-1][2]
    path = save_lora(comp, tmp_path / "lora", res.adapter_name)
    assert path.name == LORA_WEIGHT_NAME
    parts = {k: getattr(load_components("base", "tiny"), k) for k in ("unet", "vae", "text_encoder", "tokenizer", "scheduler")}
    pipe = StableDiffusionPipeline(**parts, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    x, t = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0)), torch.tensor([500])
    emb = torch.randn(1, 77, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        plain = pipe.unet(x, t, encoder_hidden_states=emb).sample
        pipe.load_lora_weights(str(tmp_path / "lora"))
        loaded = pipe.unet(x, t, encoder_hidden_states=emb).sample
        trained = comp.unet(x, t, encoder_hidden_states=emb).sample
    torch.testing.assert_close(loaded, trained, rtol=1e-4, atol=1e-5)
    assert (loaded - plain).abs().max() > 1e-4


def test_bad_inputs(subject):
    _, mods = subject
    with pytest.raises(ValueError, match="steps"):
        MultiModalConfig(steps=(1, 2, 3))
    with pytest.raises(ValueError, match="base"):
        train_multimodal(load_components("inpaint", "tiny"), mods, class_word="cat")
    with pytest.raises(ValueError, match="lacks"):
        train_multimodal(load_components("base", "tiny"), {"rgb": mods["rgb"]}, class_word="cat")


def test_full_fine_tune_option(subject, tmp_path):
    from diffusers import UNet2DConditionModel

    from likeness3d.backend.stages.diffusion.train.multimodal import save_full

    case, mods = subject
    comp = load_components("base", "tiny")
    before = {k: v.clone() for k, v in comp.unet.state_dict().items()}
    te_before = {k: v.clone() for k, v in comp.text_encoder.state_dict().items()}
    cfg = MultiModalConfig(steps=(1, 0, 1, 1), method="full", full_learning_rate=1e-3, train_text_encoder=False)
    res = train_multimodal(comp, mods, class_word=case.class_word, config=cfg)
    assert [m for m, _ in res.stages] == ["mask", "normal", "rgb"]
    after = comp.unet.state_dict()
    assert set(after) == set(before)  # no adapter: the weights themselves changed
    # every weight trained, not just some: the UNet's first and last layers and (nearly) every tensor moved
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert {"conv_in.weight", "conv_out.weight"} <= set(changed) and len(changed) >= 0.9 * len(before), \
        f"{len(changed)} of {len(before)} tensors changed"
    assert all(torch.equal(v, te_before[k]) for k, v in comp.text_encoder.state_dict().items())  # left frozen
    assert all(v.dtype == comp.dtype for v in after.values()) and not any(p.requires_grad for p in comp.unet.parameters())
    folder = save_full(comp, tmp_path / "ft", text_encoder=False)
    assert sorted(p.name for p in folder.iterdir()) == ["unet"]
    loaded = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
    for k, v in loaded.state_dict().items():
        torch.testing.assert_close(v, after[k])
    with pytest.raises(ValueError, match="method"):
        MultiModalConfig(method="dora")


def test_full_fine_tune_trains_the_text_encoder_and_saves_it(subject, tmp_path):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from likeness3d.backend.stages.diffusion.train.multimodal import save_full
    from likeness3d.backend.stages.diffusion.text import encode_prompts

    case, mods = subject
    comp = load_components("base", "tiny")
    text = prompt("rgb", case.class_word)
    te_before = {k: v.clone() for k, v in comp.text_encoder.state_dict().items()}
    emb_before = encode_prompts(comp, [text])
    cfg = MultiModalConfig(steps=(1, 0, 0, 2), method="full", full_learning_rate=1e-3)
    assert cfg.train_text_encoder  # the authors' full fine-tune trains both
    train_multimodal(comp, mods, class_word=case.class_word, config=cfg)
    te_after = comp.text_encoder.state_dict()
    changed = [k for k in te_before if not torch.equal(te_before[k], te_after[k])]
    assert any("encoder.layers" in k for k in changed) and any("token_embedding" in k for k in changed)
    assert all(v.dtype == comp.dtype for v in te_after.values() if v.is_floating_point())
    assert not any(p.requires_grad for p in comp.text_encoder.parameters())
    # every caller of encode_prompts (coarse SDS, refine SDS, pseudo views) now gets the fine-tuned embeddings
    emb_after = encode_prompts(comp, [text])
    assert (emb_after - emb_before).abs().max() > 1e-4
    folder = save_full(comp, tmp_path / "ft")
    assert sorted(p.name for p in folder.iterdir()) == ["text_encoder", "unet"]
    te = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
    for k, v in te.state_dict().items():
        torch.testing.assert_close(v, te_after[k])
    # both load into a diffusers pipeline, which then encodes the prompt as the fine-tuned components do
    base = load_components("base", "tiny")
    pipe = StableDiffusionPipeline(unet=UNet2DConditionModel.from_pretrained(folder, subfolder="unet"), text_encoder=te,
                                   vae=base.vae, tokenizer=base.tokenizer, scheduler=base.scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    with torch.no_grad():
        pipe_emb = pipe.encode_prompt(text, torch.device("cpu"), 1, False)[0]
    torch.testing.assert_close(pipe_emb, emb_after, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="train_text_encoder"):
        MultiModalConfig(method="full", train_text_encoder="yes")
