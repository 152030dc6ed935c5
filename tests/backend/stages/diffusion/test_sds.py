"""Score distillation on tiny diffusers models: the gradient is the formula, schedules, NaN guard."""

from __future__ import annotations

import math

import pytest
import torch

from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.text import encode_prompts
from likeness3d.backend.stages.diffusion.sds import SDSConfig, encode_latents, sds_loss, timestep_fraction, to_timestep

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def base():
    return load_components("base", "tiny")


def _embeds(comp, B):
    return encode_prompts(comp, ["a rgb photo of sks cat"] * B), encode_prompts(comp, [""] * B)


@pytest.mark.parametrize("weighting", ["sds", "uniform"])
def test_gradient_equals_formula(base, weighting):
    torch.manual_seed(0)
    B = 2
    images = torch.rand(B, 3, 32, 32, requires_grad=True)
    cond, uncond = _embeds(base, B)
    cfg = SDSConfig(guidance_scale=7.5, weighting=weighting)
    noise = torch.randn(B, 4, 16, 16)
    res = sds_loss(base, images, cond, uncond, cfg, fraction=0.4, noise=noise)
    res.loss.backward()
    assert res.finite and res.timestep == round(0.4 * 999)

    # By hand: same latents, noise and t; w(t) (eps_hat - eps) pushed through the encoder (VJP), / B.
    x = images.detach().clone().requires_grad_(True)
    lat = base.vae.encode(x * 2 - 1).latent_dist.mean * base.vae.config.scaling_factor
    abar = base.scheduler.alphas_cumprod[res.timestep].item()
    noisy = math.sqrt(abar) * lat.detach() + math.sqrt(1 - abar) * noise
    t = torch.full((B,), res.timestep)
    with torch.no_grad():
        eps_c = base.unet(noisy, t, encoder_hidden_states=cond).sample
        eps_u = base.unet(noisy, t, encoder_hidden_states=uncond).sample
    w = 1 - abar if weighting == "sds" else 1.0
    g = w * (eps_u + 7.5 * (eps_c - eps_u) - noise)
    (expected,) = torch.autograd.grad(lat, x, g / B)
    assert res.weight == pytest.approx(w)
    assert res.grad_norm == pytest.approx(float(g.norm()), rel=1e-4)
    assert expected.abs().max() > 0
    torch.testing.assert_close(images.grad, expected, rtol=1e-4, atol=1e-6)


def test_grad_clip_bounds_every_element(base):
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    cond, uncond = _embeds(base, 1)
    kw = dict(fraction=0.5, noise=torch.randn(1, 4, 16, 16))
    free = sds_loss(base, images, cond, uncond, SDSConfig(guidance_scale=100.0), **kw)
    clipped = sds_loss(base, images, cond, uncond, SDSConfig(guidance_scale=100.0, grad_clip=0.01), **kw)
    n = 4 * 16 * 16
    assert free.grad_norm > 0.01 * math.sqrt(n)  # clipping is active here
    assert clipped.grad_norm <= 0.01 * math.sqrt(n) + 1e-6


def test_schedules_at_endpoints():
    r = (0.2, 0.6)
    for s in ("linear", "sqrt"):
        assert timestep_fraction(s, 0, 100, r) == pytest.approx(0.6)
        assert timestep_fraction(s, 99, 100, r) == pytest.approx(0.2)
    # linear halfway is the midpoint; sqrt anneals faster early: at p = 1/4 it has covered half the range.
    assert timestep_fraction("linear", 50, 101, r) == pytest.approx(0.4)
    assert timestep_fraction("sqrt", 25, 101, r) == pytest.approx(0.4)
    g = torch.Generator().manual_seed(0)
    draws = [timestep_fraction("random", i, 1000, r, g) for i in range(1000)]
    assert 0.2 <= min(draws) < 0.21 and 0.59 < max(draws) <= 0.6
    assert to_timestep(0.0, 1000) == 0 and to_timestep(1.0, 1000) == 999


def test_bad_arguments():
    with pytest.raises(ValueError, match="schedule"):
        SDSConfig(schedule="cosine")
    with pytest.raises(ValueError, match="t_range"):
        SDSConfig(t_range=(0.7, 0.2))
    with pytest.raises(ValueError, match="step"):
        timestep_fraction("linear", 10, 10, (0.2, 0.6))
    with pytest.raises(ValueError, match="resolution"):
        SDSConfig(resolution=30)


def test_nan_guard_skips_the_step():
    comp = load_components("base", "tiny")
    with torch.no_grad():
        comp.unet.conv_out.bias.fill_(float("nan"))
    images = torch.rand(1, 3, 32, 32, requires_grad=True)
    cond, uncond = _embeds(comp, 1)
    res = sds_loss(comp, images, cond, uncond, fraction=0.3, generator=torch.Generator().manual_seed(0))
    res.loss.backward()
    assert not res.finite and float(res.loss.detach()) == 0.0
    assert torch.isfinite(images.grad).all() and images.grad.abs().max() == 0


def test_lower_resolution_encode_gives_full_size_latents(base):
    images = torch.rand(1, 3, 64, 64, requires_grad=True)
    lat = encode_latents(base, images, SDSConfig(encode_scale=0.5))
    assert lat.shape == (1, 4, 32, 32)
    lat.sum().backward()
    assert images.grad.abs().sum() > 0


def test_low_precision_model_fp32_master_parameters():
    """The UNet and VAE in a 16-bit dtype (bf16 here: CPU fp16 convolutions are missing), the 3D
    representation's images fp32: the gradient reaches them in fp32, finite, and close to the fp32 one."""
    torch.manual_seed(0)
    low = load_components("base", "tiny", dtype=torch.bfloat16)
    full = load_components("base", "tiny")
    images = torch.rand(1, 3, 32, 32)
    noise = torch.randn(1, 4, 16, 16)
    grads = []
    for comp in (low, full):
        x = images.clone().requires_grad_(True)
        cond, uncond = _embeds(comp, 1)
        sds_loss(comp, x, cond, uncond, SDSConfig(guidance_scale=7.5), fraction=0.4, noise=noise).loss.backward()
        grads.append(x.grad)
    assert grads[0].dtype == torch.float32 and torch.isfinite(grads[0]).all()
    cos = torch.nn.functional.cosine_similarity(grads[0].flatten(), grads[1].flatten(), dim=0)
    assert cos > 0.95, float(cos)


def test_v_prediction_is_converted_to_epsilon(base):
    """A v-prediction schedule: the residual uses eps = sqrt(abar) v + sqrt(1 - abar) x_t."""
    import dataclasses

    from diffusers import DDIMScheduler

    comp = dataclasses.replace(base, scheduler=DDIMScheduler.from_config(base.scheduler.config, prediction_type="v_prediction"))
    images = torch.rand(1, 3, 32, 32)
    cond, uncond = _embeds(comp, 1)
    noise = torch.randn(1, 4, 16, 16)
    res = sds_loss(comp, images.clone().requires_grad_(True), cond, uncond, SDSConfig(guidance_scale=1.0, weighting="uniform"),
                   fraction=0.5, noise=noise)
    lat = encode_latents(comp, images, SDSConfig())
    abar = comp.scheduler.alphas_cumprod[res.timestep].item()
    noisy = math.sqrt(abar) * lat + math.sqrt(1 - abar) * noise
    with torch.no_grad():
        v = comp.unet(noisy, torch.tensor([res.timestep]), encoder_hidden_states=cond).sample
    eps = math.sqrt(abar) * v + math.sqrt(1 - abar) * noisy
    assert res.grad_norm == pytest.approx(float((eps - noise).norm()), rel=1e-4)
