"""Resplat on the CPU: convergence on held-out views, hooks, densification, losses, bad input."""

import pytest
import torch

from likeness3d.backend.stages.views.cameras import Cameras, orbit
from likeness3d.backend.stages.splats.densify import SimpleStrategy
from likeness3d.backend.stages.splats.fit import FitConfig, fit, from_params, to_params
from likeness3d.backend.stages.splats.gaussians import from_mesh, random_gaussians
from likeness3d.backend.stages.views.mesh_passes import Raycaster, mesh_rgba
from likeness3d.backend.stages.quality.metrics import psnr, ssim_map, weighted_mean
from likeness3d.backend.stages.splats.render import render
from likeness3d.backend.stages.splats.step import adam_step
from likeness3d.backend.synthetic.shapes import uv_sphere

WHITE = torch.ones(3)


def over_white(rgba: torch.Tensor) -> torch.Tensor:
    return rgba[..., :3] * rgba[..., 3:] + WHITE * (1 - rgba[..., 3:])


@pytest.mark.slow
def test_fit_converges_on_held_out_views():
    # A known textured mesh, 12 training views and 4 held-out views between them, 64 x 64.
    mesh = uv_sphere(1.0, 48, 24, texture_size=64, seed=3)
    train = orbit((0, 0, 0), 1.0, [0, 60, 120, 180, 240, 300], [-20, 35], 64, 64)
    held_out = orbit((0, 0, 0), 1.0, [30, 150, 210, 330], [10], 64, 64)
    caster = Raycaster(mesh)
    images, truth = mesh_rgba(caster, train, supersample=2), over_white(mesh_rgba(caster, held_out, supersample=2))
    # Start on the surface but grey: the colours (and the silhouettes) must be learnt.
    start = from_mesh(mesh, count=2000, color=(0.5, 0.5, 0.5))
    before = psnr(render(start, held_out, background=WHITE).rgb.clamp(0, 1), truth)
    steps = []
    # 300 steps from grey: colours need a faster rate than 3DGS's 2.5e-3 (tuned for 30k steps).
    config = FitConfig(steps=300, lr_sh0=0.01, refine_start=100, refine_every=100, cap_max=4000)
    result = fit(start, images, train, config=config, progress=lambda s, n, loss: steps.append((s, n, loss)))
    after = psnr(render(result.gaussians, held_out, background=WHITE).rgb.clamp(0, 1), truth)
    assert before < 20.0
    assert after >= 25.0, f"held-out PSNR {after:.2f} dB (started at {before:.2f} dB)"
    assert [s for s, _, _ in steps] == list(range(1, 301)) and steps[-1][1] == 300
    assert len(result.losses) == 300 and sum(result.losses[-20:]) < 0.5 * sum(result.losses[:20])
    assert len(result.gaussians) != 2000  # densification and pruning ran


class Stop(Exception):
    pass


def test_cancel_hook_stops_the_fit_at_once():
    g = random_gaussians(50, extent=0.5, scale=0.05)
    cams = orbit((0, 0, 0), 0.7, [0, 90], [0], 16, 16)
    images = torch.rand(2, 16, 16, 3)
    calls = []

    def check_cancel():
        calls.append(1)
        if len(calls) == 4:
            raise Stop()

    progress = []
    with pytest.raises(Stop):
        fit(g, images, cams, config=FitConfig(steps=50), check_cancel=check_cancel,
            progress=lambda s, n, loss: progress.append(s))
    assert len(calls) == 4 and progress == [1, 2, 3]


def test_monitor_gets_detached_snapshots_and_losses_are_all_kept():
    g = random_gaussians(50, extent=0.5, scale=0.05)
    cams = orbit((0, 0, 0), 0.7, [0, 90], [0], 16, 16)
    seen = []
    result = fit(g, torch.rand(2, 16, 16, 4), cams, config=FitConfig(steps=7),
                 monitor=lambda step, snap: seen.append((step, snap)), monitor_every=3)
    assert [s for s, _ in seen] == [3, 6, 7]
    assert all(not snap.means.requires_grad and len(snap) == 50 for _, snap in seen)
    assert torch.equal(seen[-1][1].means, result.gaussians.means)
    assert len(result.losses) == 7 and all(loss > 0 for loss in result.losses)


def test_weights_steer_the_fit():
    # Two views disagree about the colours; the one with weight dominates the result.
    g = random_gaussians(300, extent=0.4, scale=0.06, seed=1)
    one = orbit((0, 0, 0), 0.6, [0], [0], 16, 16)
    cams = Cameras.cat([one, one])  # the same camera twice
    red, blue = torch.zeros(16, 16, 3), torch.zeros(16, 16, 3)
    red[..., 0], blue[..., 2] = 1.0, 1.0
    images = torch.stack([red, blue])
    weights = torch.stack([torch.ones(16, 16), torch.full((16, 16), 0.05)])
    result = fit(g, images, cams, weights=weights, config=FitConfig(steps=100, lr_sh0=0.05, refine_start=10_000),
                 background=(0.0, 0.0, 0.0))
    out = render(result.gaussians, cams[[0]], background=torch.zeros(3)).rgb[0]
    centre = out[4:12, 4:12].reshape(-1, 3).mean(0)
    assert centre[0] > 2 * centre[2]


def test_adam_step_equals_torch_adam_with_per_parameter_rates():
    gen = torch.Generator().manual_seed(0)
    ours = {k: torch.nn.Parameter(torch.randn(5, 3, generator=gen)) for k in ("a", "b")}
    ref = {k: torch.nn.Parameter(p.detach().clone()) for k, p in ours.items()}
    lrs = {"a": 0.1, "b": 0.003}
    opt_ours = {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in ours.items()}
    opt_ref = {k: torch.optim.Adam([p], lr=lrs[k], eps=1e-15) for k, p in ref.items()}
    for _ in range(4):
        target = torch.randn(5, 3, generator=gen)
        for group, opts in ((ours, opt_ours), (ref, opt_ref)):
            sum(((p - target) ** 3).sum() for p in group.values()).backward()
        adam_step(opt_ours)
        for o in opt_ref.values():
            o.step()
            o.zero_grad()
    for k in ours:
        assert torch.allclose(ours[k], ref[k], atol=1e-6)
        assert ours[k].grad is None
        assert torch.allclose(opt_ours[k].state[ours[k]]["exp_avg_sq"], opt_ref[k].state[ref[k]]["exp_avg_sq"])


def test_simple_strategy_grows_splits_prunes_and_keeps_adam_state_aligned():
    g = random_gaussians(40, extent=0.5, scale=0.02, seed=3)
    params = to_params(g)
    optimizers = {k: torch.optim.Adam([p], lr=1e-3) for k, p in params.items()}
    loss = sum(p.square().sum() for p in params.values())
    loss.backward()
    for o in optimizers.values():
        o.step()
    with torch.no_grad():
        params["scales"][:10] = torch.log(torch.tensor(0.5))  # large: split
        params["opacities"][-5:] = -10.0  # transparent: pruned
    strategy = SimpleStrategy(refine_start_iter=0, refine_every=1, grow_grad2d=0.1, grow_scale3d=0.1,
                              reset_every=10_000)
    state = strategy.initialize_state(scene_scale=1.0)
    means2d = torch.zeros(1, 40, 2, requires_grad=True)
    (means2d * torch.cat([torch.ones(20), torch.zeros(20)])[None, :, None]).sum().backward()
    info = {"means2d": means2d, "radii": torch.ones(1, 40, 2, dtype=torch.int32), "width": 2, "height": 2,
            "n_cameras": 1}
    strategy.step_post_backward(params, optimizers, state, step=1, info=info)
    # Gaussians 0-9 (large, high gradient) split in two, 10-19 (small, high gradient) duplicated,
    # 35-39 pruned: 40 - 10 + 20 + 10 - 5 = 55.
    assert len(params["means"]) == 55
    for name, p in params.items():
        st = optimizers[name].state[p]
        assert st["exp_avg"].shape == p.shape and st["exp_avg_sq"].shape == p.shape
        assert optimizers[name].param_groups[0]["params"][0] is p
    children = params["scales"][-20:].exp()
    assert torch.allclose(children, torch.full_like(children, 0.5 / 1.6), atol=1e-6)
    assert len(from_params(params)) == 55


def ssim_2d(a, b):
    """SSIM with the plain 11 x 11 window, one moment at a time (what the separable version must equal)."""
    x, y = a.permute(0, 3, 1, 2).double(), b.permute(0, 3, 1, 2).double()
    t = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-t**2 / (2 * 1.5**2))
    w = (g[:, None] * g[None, :] / g.sum() ** 2).expand(3, 1, 11, 11)
    blur = lambda z: torch.nn.functional.conv2d(z, w, padding=5, groups=3)  # noqa: E731
    mx, my = blur(x), blur(y)
    sxx, syy, sxy = blur(x * x) - mx**2, blur(y * y) - my**2, blur(x * y) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    return (((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))).mean(1)


def test_metrics():
    a = torch.rand(2, 20, 20, 3, generator=torch.Generator().manual_seed(0))
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    assert torch.allclose(ssim_map(a, a), torch.ones(2, 20, 20), atol=1e-4)
    assert torch.allclose(ssim_map(a, b).double(), ssim_2d(a, b), atol=1e-5)
    assert ssim_map(a, torch.rand_like(a)).mean() < 0.3
    assert abs(psnr(torch.zeros(4, 4, 3), torch.full((4, 4, 3), 0.1)) - 20.0) < 1e-5
    w = torch.zeros(2, 20, 20)
    w[0] = 1
    values = torch.stack([torch.ones(20, 20), torch.full((20, 20), 3.0)])
    assert torch.allclose(weighted_mean(values, w), torch.tensor(0.5))  # second image weighs nothing
    assert torch.allclose(weighted_mean(values, torch.ones(2, 20, 20)), values.mean())


def test_fit_rejects_bad_input():
    g = random_gaussians(10)
    cams = orbit((0, 0, 0), 1.0, [0, 90], [0], 8, 8)
    with pytest.raises(ValueError, match="images"):
        fit(g, torch.rand(2, 8, 9, 3), cams)
    with pytest.raises(ValueError, match="weights"):
        fit(g, torch.rand(2, 8, 8, 3), cams, weights=-torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="mcmc"):
        fit(g, torch.rand(2, 8, 8, 3), cams, config=FitConfig(steps=1, strategy="mcmc"))
    with pytest.raises(ValueError, match="strategy"):
        FitConfig(strategy="adc")
    with pytest.raises(ValueError, match="steps"):
        FitConfig(steps=0)


def test_sync_free_bookkeeping_equals_gsplats():
    strategy_mod = pytest.importorskip("gsplat.strategy")  # pure torch bookkeeping: no CUDA build involved
    from likeness3d.backend.stages.splats.densify import gsplat_default_strategy

    gen = torch.Generator().manual_seed(0)
    params = to_params(random_gaussians(30))
    ours, theirs = gsplat_default_strategy(), strategy_mod.DefaultStrategy()
    s_ours, s_theirs = ours.initialize_state(), theirs.initialize_state()
    for _ in range(3):
        means2d = torch.zeros(2, 30, 2, requires_grad=True)
        (means2d * torch.randn(2, 30, 2, generator=gen)).sum().backward()
        radii = (torch.rand(2, 30, 2, generator=gen) > 0.3).int() * 4
        info = {"means2d": means2d, "radii": radii, "width": 64, "height": 48, "n_cameras": 2,
                "gaussian_ids": None}
        ours._update_state(params, s_ours, info)
        theirs._update_state(params, s_theirs, info)
    assert torch.allclose(s_ours["grad2d"], s_theirs["grad2d"], atol=1e-6)
    assert torch.equal(s_ours["count"], s_theirs["count"])


def test_fused_adam_step_is_the_multi_tensor_step():
    from likeness3d.backend.stages.splats.fast.step import fused_adam_step

    gen = torch.Generator().manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(7, 3, generator=gen)) for _ in range(3)]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    make = lambda ps: {str(i): torch.optim.Adam([{"params": [p], "lr": 0.01 * (i + 1)}], eps=1e-15)  # noqa: E731
                       for i, p in enumerate(ps)}
    oa, ob = make(a), make(b)
    for _ in range(5):
        for p, q in zip(a, b):
            g = torch.randn(7, 3, generator=gen)
            p.grad, q.grad = g.clone(), g.clone()
        adam_step(oa)
        fused_adam_step(ob)
    assert all(p.grad is None for p in b)
    for p, q in zip(a, b):
        assert torch.allclose(p, q, atol=1e-6)
