"""The fit's step objects on the CPU: the factory's choice for each device and configuration (the rules of the
loop before the split), and the plain step inside fit() against that loop as it was written inline (bit for bit).
tests/backend/stages/splats/fast/test_step_gpu.py holds the CUDA steps against the plain one."""

import itertools

import pytest
import torch

from likeness3d.backend.stages.quality.metrics import ssim_map, weighted_mean
from likeness3d.backend.stages.splats.densify import SimpleStrategy
from likeness3d.backend.stages.splats.fast.step import choose_paths, make_step
from likeness3d.backend.stages.splats.fit import FitConfig, fit, from_params, to_params
from likeness3d.backend.stages.splats.gaussians import random_gaussians
from likeness3d.backend.stages.splats.render import gsplat_intrinsics, render
from likeness3d.backend.stages.splats.step import FitData, PlainStep, StepPaths
from likeness3d.backend.stages.views.cameras import Cameras, orbit


def inline_loop(gaussians, images, cameras, weights, config, background):
    """fit() on the CPU as one inline loop, as it read before the step objects (torch loss, `adam_step`,
    SimpleStrategy): the reference the plain step must reproduce exactly."""
    import math

    def adam(optimizers):  # adam_step, as it was
        params, grads, m, v, sizes = [], [], [], [], []
        for opt in optimizers.values():
            group = opt.param_groups[0]
            p = group["params"][0]
            if p.grad is None:
                continue
            state = opt.state[p]
            if not state:
                state["step"] = torch.tensor(0.0)
                state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["step"] += 1
            beta1, beta2 = group["betas"]
            t = float(state["step"])
            params.append(p.data)
            grads.append(p.grad)
            m.append(state["exp_avg"])
            v.append(state["exp_avg_sq"])
            sizes.append((group["lr"] / (1 - beta1**t), math.sqrt(1 - beta2**t), group["eps"], beta1, beta2))
            p.grad = None
        beta1, beta2 = sizes[0][3], sizes[0][4]
        torch._foreach_lerp_(m, grads, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
        denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, [s[1] for s in sizes])
        torch._foreach_add_(denom, [s[2] for s in sizes])
        torch._foreach_addcdiv_(params, m, denom, [-s[0] for s in sizes])

    def loss_fn(rgb, target, alpha, target_alpha, w, ssim_weight, alpha_weight):  # photometric_loss, as it was
        l1 = weighted_mean((rgb - target).abs().mean(-1), w)
        dssim = weighted_mean(1.0 - ssim_map(rgb, target), w)
        loss = (1 - ssim_weight) * l1 + ssim_weight * dssim
        if alpha is not None:
            loss = loss + alpha_weight * weighted_mean((alpha - target_alpha).abs(), w)
        return loss

    has_alpha = images.shape[-1] == 4
    if has_alpha:
        premult = images[..., :3] * images[..., 3:]
        transparency = 1.0 - images[..., 3:]
    C = len(cameras)
    views = [cameras[i] for i in range(C)]
    intrinsics = [gsplat_intrinsics(v.Ks) for v in views]
    gen = torch.Generator().manual_seed(config.seed)
    device_gen = torch.Generator().manual_seed(config.seed)
    rows = max(config.steps, 3)
    batches, order, cursor = [], torch.randperm(C, generator=gen).tolist(), 0
    for _ in range(rows):
        if cursor + config.batch_size > C:
            order, cursor = torch.randperm(C, generator=gen).tolist(), 0
        batches.append(order[cursor:cursor + config.batch_size])
        cursor += config.batch_size
    if has_alpha and config.random_background:
        backgrounds = torch.rand(rows, 3, generator=device_gen)
    else:
        backgrounds = torch.as_tensor(background, dtype=torch.float32).expand(rows, 3)
    params = to_params(gaussians)
    with torch.no_grad():
        center = params["means"].mean(0)
        scene_scale = float((params["means"] - center).norm(dim=-1).max().clamp_min(1e-6))
    lrs = {"means": config.lr_means * scene_scale, "scales": config.lr_scales, "quats": config.lr_quats,
           "opacities": config.lr_opacities, "sh0": config.lr_sh0, "shN": config.lr_shN}
    optimizers = {k: torch.optim.Adam([{"params": [p], "lr": lrs[k], "name": k}], eps=1e-15)
                  for k, p in params.items()}
    decay = 0.01 ** (1.0 / config.steps)
    strategy = SimpleStrategy(
        prune_opa=config.prune_opa, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
        prune_scale3d=config.prune_scale3d, refine_start_iter=config.refine_start,
        refine_stop_iter=config.refine_stop, reset_every=config.reset_every, refine_every=config.refine_every,
        max_gaussians=config.cap_max, seed=config.seed)
    state = strategy.initialize_state(scene_scale=scene_scale)
    use_alpha = has_alpha and config.alpha_weight > 0
    losses = []
    for step in range(config.steps):
        batch = batches[step]
        if len(batch) == 1:
            cams, ks = views[batch[0]], intrinsics[batch[0]]
        else:
            cams = Cameras.cat([views[i] for i in batch])
            ks = torch.cat([intrinsics[i] for i in batch])
        bg = backgrounds[step]
        degree = min(step // config.sh_degree_interval, gaussians.sh_degree)
        out = render(from_params(params), cams, background=bg, sh_degree=degree, with_depth=False, intrinsics=ks)
        strategy.step_pre_backward(params, optimizers, state, step, out.meta)
        pick = (lambda t: t[batch[0]][None]) if len(batch) == 1 else (lambda t: t[batch])
        w = None if weights is None else pick(weights)
        if has_alpha:
            target_alpha = pick(images)[..., 3]
            target = pick(premult) + bg * pick(transparency)
        else:
            target = pick(images)
        alpha_pair = (out.alpha, target_alpha) if use_alpha else (None, None)
        loss = loss_fn(out.rgb, target, *alpha_pair, w, config.ssim_weight, config.alpha_weight)
        loss.backward()
        losses.append(float(loss.detach()))
        adam(optimizers)
        strategy.step_post_backward(params, optimizers, state, step, out.meta, packed=False)
        for group in optimizers["means"].param_groups:
            group["lr"] *= decay
    return from_params(params).detach(), losses


@pytest.mark.parametrize("rgba, batch_size, weighted", [(True, 2, True), (False, 1, False)])
def test_plain_step_is_the_inline_loop_bit_for_bit(rgba, batch_size, weighted):
    g = random_gaussians(120, extent=0.5, scale=0.05, sh_degree=1, seed=4)
    cams = orbit((0, 0, 0), 0.8, [0, 70, 150, 230, 300], [10], 20, 16)
    gen = torch.Generator().manual_seed(9)
    images = torch.rand(5, 16, 20, 4 if rgba else 3, generator=gen)
    weights = 0.5 + torch.rand(5, 16, 20, generator=gen) if weighted else None
    # densifies at steps 8 and 16 (grows and prunes: the strategy replaces the parameters), one more SH band at 10
    config = FitConfig(steps=24, batch_size=batch_size, refine_start=5, refine_every=8, reset_every=16,
                       sh_degree_interval=10, grow_grad2d=1e-5, prune_opa=0.02, lr_sh0=0.01)
    background = (0.2, 0.4, 0.6)
    ref, ref_losses = inline_loop(g, images, cams, weights, config, background)
    result = fit(g, images, cams, weights=weights, config=config, background=background)
    assert result.paths.loss == "torch" and result.paths.update == "foreach" and not result.paths.loss_graph
    assert result.graphs_captured == 0
    assert len(ref) != len(g)  # the strategy ran
    assert result.losses == ref_losses  # bit for bit: the same ops in the same order on the same device
    for name, t in result.gaussians.fields().items():
        assert torch.equal(t, ref.fields()[name]), name


def old_rules(config: FitConfig, cuda: bool, triton: bool, mcmc: bool) -> StepPaths:
    """The choice as the loop made it inline before the split (pick_loss, the graph and update flags)."""
    if not cuda:
        loss = "torch"
    elif config.fused_loss and triton:
        loss = "fused"
    elif config.compile_loss:
        loss = "compiled"
    else:
        loss = "torch"
    graphed = config.cuda_graph and cuda
    updater = graphed and config.update == "graph" and not mcmc
    fused_adam = cuda and not mcmc and (config.update == "fused" or (config.update == "graph" and not updater))
    return StepPaths(loss=loss, loss_graph=graphed, update="graph" if updater else "fused" if fused_adam else "foreach")


def test_choose_paths_keeps_the_rules_of_the_inline_loop():
    flags = itertools.product([False, True], [False, True], [False, True], ["graph", "fused", "foreach"],
                              ["cpu", "cuda"], [False, True], [False, True])
    for fused_loss, compile_loss, cuda_graph, update, device, triton, mcmc in flags:
        config = FitConfig(fused_loss=fused_loss, compile_loss=compile_loss, cuda_graph=cuda_graph, update=update)
        got = choose_paths(config, torch.device(device), mcmc, triton=triton)
        assert got == old_rules(config, device == "cuda", triton, mcmc), (config, device, triton, mcmc)
    # the defaults on CUDA with Triton: everything fast; MCMC keeps the loss graph, its Adam eager and foreach
    cuda = torch.device("cuda")
    assert choose_paths(FitConfig(), cuda, False, triton=True) == StepPaths("fused", True, "graph")
    assert choose_paths(FitConfig(), cuda, True, triton=True) == StepPaths("fused", True, "foreach")
    assert choose_paths(FitConfig(cuda_graph=False), cuda, False, triton=False) == StepPaths("torch", False, "fused")


def test_make_step_on_the_cpu_is_the_plain_step_whatever_the_config():
    data = FitData(torch.rand(2, 8, 8, 4), None, [[0], [1], [0]], torch.ones(3, 3), 0.2, 0.1)
    for config in (FitConfig(), FitConfig(compile_loss=True, fused_loss=False), FitConfig(update="fused")):
        strategy = SimpleStrategy()
        step = make_step(config, data, strategy, mcmc=False, decay=0.99)
        assert type(step) is PlainStep and step.paths == StepPaths() and step.graphs_captured == 0
        assert not step.composites and not hasattr(strategy, "external_sums")
    assert data.premult is not None and data.transparency.shape == (2, 8, 8, 1)  # the plain step's targets


def test_graphed_loss_body_run_eagerly_on_the_cpu_is_the_plain_step(monkeypatch):
    """`GraphedLossStep` with the torch loss, its graph's body run eagerly on the CPU (CUDA's streams and graph
    replaced by stand-ins whose replay runs the body): the plain step's losses and gradients. The GPU tests
    (fast/test_step_gpu.py) hold the captured graphs and the Triton kernels the same way."""
    import contextlib
    from types import SimpleNamespace

    from likeness3d.backend.stages.splats.fast.step import GraphedLossStep
    from likeness3d.backend.stages.splats.render import RenderOutput
    from likeness3d.backend.stages.splats.step import adam_step, photometric_loss

    stream = SimpleNamespace(wait_stream=lambda other: None)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: stream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "CUDAGraph", SimpleNamespace)
    monkeypatch.setattr(torch.cuda, "graph", lambda g: contextlib.nullcontext())
    gen = torch.Generator().manual_seed(31)
    steps, batches = 5, [[0, 1], [2, 0], [1, 2], [0, 2], [2, 1]]
    renders = [(torch.rand(2, 12, 14, 3, generator=gen) * 0.6, torch.rand(2, 12, 14, generator=gen))
               for _ in range(steps)]
    for rgba, weighted, with_reg in [(True, True, True), (False, False, False)]:
        images = torch.rand(3, 12, 14, 4 if rgba else 3, generator=gen)
        weights = 0.5 + torch.rand(3, 12, 14, generator=gen) if weighted else None
        backgrounds = torch.rand(steps, 3, generator=gen)
        runs = []
        for graphed in (False, True):
            data = FitData(images, weights, batches, backgrounds, 0.2, 0.1)
            if graphed:
                step = GraphedLossStep(data, 1.0, photometric_loss, adam_step, StepPaths("torch", True, "foreach"))
                g = step.graphed

                def replay(g=g):  # what the captured graph does: the body, into the captured gradient buffers
                    grad_rgb, grad_alpha = g._body()
                    g.grad_rgb.copy_(grad_rgb)
                    g.grad_alpha.copy_(grad_alpha)

                g.graph.replay = replay
                assert step.composites and step.graphs_captured == 1 and int(g.step) == 0
            else:
                step = PlainStep(data, 1.0)
            grads, windows = [], []
            for s, (raw, alpha) in enumerate(renders):
                raw, alpha = raw.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
                rgb = raw if step.composites else raw + (1.0 - alpha)[..., None] * backgrounds[s]
                reg = 0.01 * alpha.mean() + 0.002 * raw.square().mean() if with_reg else None
                step.backward(RenderOutput(rgb=rgb, alpha=alpha, depth=None), s, batches[s], reg)
                grads.append((raw.grad, alpha.grad))
                if s + 1 in (3, steps):
                    windows.append(step.losses(3 if s + 1 == steps else 0, s + 1))
            runs.append((grads, torch.cat(windows)))
        (ga, la), (gb, lb) = runs
        assert la.shape == lb.shape == (steps,)
        assert torch.allclose(la, lb, rtol=1e-6, atol=0), (la, lb)
        for (ra, aa), (rb, ab) in zip(ga, gb):
            assert torch.allclose(ra, rb, rtol=1e-5, atol=1e-9) and torch.allclose(aa, ab, rtol=1e-5, atol=1e-9)
