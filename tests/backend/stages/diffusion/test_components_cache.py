"""`load_components` through a worker's model cache: keys, what a job's changes leave behind (nothing), and
when a bundle is loaded again. The cache is on here as in a worker (`model_cache.enable()`), one "job" being
what lies between two `model_cache.end_job()` calls."""

from __future__ import annotations

import pytest
import torch

from likeness3d.backend import model_cache
from likeness3d.backend.stages.diffusion.components import load_components, weights_changed
from likeness3d.backend.stages.diffusion.sample.inpaint import build_inpainter
from likeness3d.backend.stages.diffusion.tiny import build_modules, save_tiny
from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, save_lora, train_subject_lora
from likeness3d.backend.stages.diffusion.train.multimodal import train_full


@pytest.fixture
def cache_on():
    assert model_cache.enable()
    yield
    model_cache.enable(False)


def adapters(module) -> list[str]:
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [n for n, m in module.named_modules() if isinstance(m, BaseTunerLayer)]


def fresh_unet(folder):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(folder, subfolder="unet").eval()


def assert_same_weights(module, reference) -> None:
    mine, ref = module.state_dict(), reference.state_dict()
    assert list(mine) == list(ref)  # same names: no peft wrapper (`base_layer`) is left
    for k, v in ref.items():
        assert torch.equal(mine[k], v), k


def test_outside_a_worker_every_load_is_fresh():
    assert not model_cache.enabled()
    a, b = load_components("inpaint", "tiny"), load_components("inpaint", "tiny")
    assert a.unet is not b.unet and not a.from_cache and not b.from_cache
    assert a.load_seconds > 0 and model_cache.cached() == [] and model_cache.end_job() == []


def test_tiny_bundles_are_kept_by_role_source_device_and_dtype(cache_on):
    first = load_components("inpaint", "tiny")
    assert not first.from_cache and first.load_seconds > 0
    model_cache.end_job()
    again = load_components("inpaint", "tiny")
    assert again.from_cache and again.unet is first.unet and again.text_encoder is first.text_encoder
    assert again.scheduler is not first.scheduler and again.scheduler.config == first.scheduler.config
    assert again.degraded and again.source == "tiny" and again.role == "inpaint"
    other_dtype = load_components("inpaint", "tiny", dtype=torch.bfloat16)
    base = load_components("base", "tiny")
    assert not other_dtype.from_cache and not base.from_cache and base.unet.config.in_channels == 4
    assert sorted(model_cache.cached()) == [("base", "tiny", "cpu", "float32"), ("inpaint", "tiny", "cpu", "bfloat16"),
                                            ("inpaint", "tiny", "cpu", "float32")]
    uses = model_cache.end_job()
    assert [u.outcome for u in uses] == ["reused", "loaded", "loaded"]
    assert model_cache.clear() == 3 and model_cache.cached() == []
    assert not load_components("inpaint", "tiny").from_cache


def test_a_second_request_in_one_job_gets_its_own_copy(cache_on):
    """Within a job the first user may be training an adapter into its bundle: a second one is loaded apart."""
    a = load_components("inpaint", "tiny")
    b = load_components("inpaint", "tiny")
    assert b.unet is not a.unet and not b.from_cache
    assert [u.outcome for u in model_cache.end_job()] == ["loaded", "loaded, not kept"]
    assert load_components("inpaint", "tiny").unet is a.unet


@pytest.mark.filterwarnings("ignore:Already found a `peft_config` attribute")  # the second adapter, on purpose
def test_after_lora_training_the_next_job_gets_the_folder_weights_and_no_adapter(cache_on, models_root, views, tmp_path):
    comps = load_components("inpaint", models_root)
    images, masks = views(2, 32, 32)
    train_subject_lora(comps, images, masks, config=SubjectLoraConfig(steps=2), seed=0)
    save_lora(comps, tmp_path / "lora", "subject")
    build_inpainter(comps, lora=tmp_path / "lora", adapter_name="loaded")  # a second adapter, as a loaded LoRA
    comps.unet.enable_gradient_checkpointing()
    comps.unet.train()  # as a job cancelled mid-training would leave it
    assert set(comps.unet.peft_config) == {"subject", "loaded"} and adapters(comps.unet)
    assert [u.outcome for u in model_cache.end_job()] == ["loaded"]
    # the clean-up ran at the end of the job, not only at the next hit: the adapters' memory is free
    assert not adapters(comps.unet) and not hasattr(comps.unet, "peft_config")

    again = load_components("inpaint", models_root)
    assert again.from_cache and again.unet is comps.unet and again.load_seconds < 5
    for m in (again.unet, again.vae, again.text_encoder):
        assert not adapters(m) and not m.training
        assert not any(p.requires_grad or p.grad is not None for p in m.parameters())
    assert not again.unet.is_gradient_checkpointing
    reference = fresh_unet(models_root / "inpaint")
    assert_same_weights(again.unet, reference)
    # and it computes what a fresh load computes (no adapter left active in the forward)
    g = torch.Generator().manual_seed(0)
    x, t, h = torch.randn(1, 9, 16, 16, generator=g), torch.tensor([500]), torch.randn(1, 77, 32, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(again.unet(x, t, encoder_hidden_states=h).sample,
                                   reference(x, t, encoder_hidden_states=h).sample)


def test_a_full_fine_tune_is_never_handed_to_a_later_job(cache_on, models_root, views):
    comps = load_components("base", models_root)
    images, masks = views(2, 32, 32)
    train_full(comps, images, masks, "a photo of sks thing", SubjectLoraConfig(steps=1), 1e-3, 0)
    assert model_cache.cached() == []  # train_full said so before it changed anything
    model_cache.end_job()
    again = load_components("base", models_root)
    assert not again.from_cache and again.unet is not comps.unet
    assert_same_weights(again.unet, fresh_unet(models_root / "base"))


def test_weights_changed_forgets_only_the_bundle_that_shares_the_modules(cache_on):
    inpaint, base = load_components("inpaint", "tiny"), load_components("base", "tiny")
    assert weights_changed(inpaint) and not weights_changed(inpaint)
    assert model_cache.cached() == [("base", "tiny", "cpu", "float32")]
    model_cache.end_job()
    assert not load_components("inpaint", "tiny").from_cache and load_components("base", "tiny").unet is base.unet
    model_cache.enable(False)
    assert not weights_changed(load_components("inpaint", "tiny"))  # nothing is cached outside a worker


def test_in_place_writes_and_casts_are_seen_without_the_call(cache_on):
    comps = load_components("inpaint", "tiny")
    with torch.no_grad():
        comps.unet.conv_in.weight.add_(1.0)  # an optimizer step, say
    model_cache.end_job()
    again = load_components("inpaint", "tiny")
    assert not again.from_cache and again.unet is not comps.unet
    assert_same_weights(again.unet, build_modules("inpaint", seed=0)["unet"])
    again.vae.half()
    model_cache.end_job()
    assert not load_components("inpaint", "tiny").from_cache


def test_weights_replaced_in_the_folder_are_loaded_again(cache_on, tmp_path):
    save_tiny(tmp_path / "inpaint", "inpaint", seed=0)
    first = load_components("inpaint", tmp_path)
    model_cache.end_job()
    assert load_components("inpaint", tmp_path).from_cache
    model_cache.end_job()
    save_tiny(tmp_path / "inpaint", "inpaint", seed=1)
    again = load_components("inpaint", tmp_path)
    assert not again.from_cache and again.unet is not first.unet
    assert_same_weights(again.unet, build_modules("inpaint", seed=1)["unet"])


def test_loading_leaves_the_global_random_state_alone(cache_on):
    torch.manual_seed(5)
    expected = torch.rand(4)
    for _ in range(2):  # a load, then a hit
        torch.manual_seed(5)
        load_components("base", "tiny")
        torch.testing.assert_close(torch.rand(4), expected)
        model_cache.end_job()
