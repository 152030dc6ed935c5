"""The saved 3DreamBooth LoRA loads into diffusers' WanPipeline (load_lora_weights) and acts as trained."""

import torch

from likeness3d.backend.stages.video.components import load_video_components
from likeness3d.backend.stages.video.config import ADAPTER_TARGETS, SUBJECT_TARGETS
from likeness3d.backend.stages.video.joint import joint_forward
from likeness3d.backend.stages.video.lora import ADAPTER, SUBJECT, add_lora, load_adapter, save_adapter, save_diffusers


def test_the_3dreambooth_lora_loads_into_wan_pipeline(comps, randomise_lora, tmp_path):
    tr = comps.transformer
    add_lora(tr, SUBJECT, 4, 8.0, SUBJECT_TARGETS, seed=0)
    randomise_lora(tr, SUBJECT, 7)
    path = save_diffusers(tr, SUBJECT, tmp_path, "lora_3dreambooth.safetensors")
    x, t, text = torch.randn(1, 16, 3, 4, 4), torch.tensor([400.0]), torch.randn(1, 8, 32)
    with torch.no_grad():
        want = joint_forward(tr, x, t, text, gen_branch=SUBJECT)

    fresh = load_video_components("tiny", device="cpu", dtype=torch.float32)  # same seeded base weights
    pipe = fresh.pipeline()
    with torch.no_grad():
        plain = pipe.transformer(x, t, text, return_dict=False)[0]
    pipe.load_lora_weights(str(tmp_path), weight_name=path.name, adapter_name="sks")
    with torch.no_grad():
        got = pipe.transformer(x, t, text, return_dict=False)[0]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)  # alpha / r = 2 came through the metadata
    assert (got - plain).abs().max() > 1e-3
    video = pipe("a video of a sks pebble", height=32, width=32, num_frames=5, num_inference_steps=2,
                 max_sequence_length=fresh.max_tokens, output_type="np").frames
    assert video.shape == (1, 5, 32, 32, 3)


def test_a_pretrained_3dapter_folder_round_trips(comps, randomise_lora, tmp_path):
    tr = comps.transformer
    add_lora(tr, ADAPTER, 4, 8.0, ADAPTER_TARGETS, seed=0)
    randomise_lora(tr, ADAPTER, 3)
    save_adapter(tr, tmp_path, {"steps": 5})
    saved = {n: p.detach().clone() for n, p in tr.named_parameters() if f".{ADAPTER}." in n}
    other = load_video_components("tiny", device="cpu", dtype=torch.float32).transformer
    meta = load_adapter(other, tmp_path, seed=9)
    assert meta["rank"] == 4 and meta["alpha"] == 8.0 and meta["steps"] == 5
    loaded = {n: p for n, p in other.named_parameters() if f".{ADAPTER}." in n}
    assert saved.keys() == loaded.keys()
    assert all(torch.equal(saved[n], loaded[n]) for n in saved)
    assert all(p.requires_grad for p in loaded.values())
