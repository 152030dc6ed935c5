"""The fit's CUDA steps (`fast/step.py`) against the plain torch step on CUDA, on the same inputs (GPU only).

The loss: synthetic renders (leaf tensors, no rasteriser, so nothing but the step differs) through each
step's `backward`, the gradients w.r.t. the raw render and alpha and the logged losses compared; float32
rounding of the Triton kernels against torch's maths: losses within 1e-5, gradients within 1e-4 of their
largest value (as tests/backend/stages/splats/test_render_gpu.py holds the kernels themselves). The update:
the same gradients each step (fresh tensors, the parameter objects replaced midway as the strategy does)
through each step's `update` and the default strategy's bookkeeping; parameters within 1e-5 of their scale.
Each graphed step must have captured its graphs (`graphs_captured`): an eager fallback fails.
"""

import importlib.util
from types import SimpleNamespace

import pytest
import torch

from likeness3d.backend.stages.splats.config import FitConfig
from likeness3d.backend.stages.splats.fast.step import GraphedLossStep, GraphedStep, make_step
from likeness3d.backend.stages.splats.fit import to_params
from likeness3d.backend.stages.splats.gaussians import random_gaussians
from likeness3d.backend.stages.splats.render import RenderOutput
from likeness3d.backend.stages.splats.step import FitData, PlainStep, StepPaths

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

TRITON = importlib.util.find_spec("triton") is not None
PLAIN = dict(cuda_graph=False, fused_loss=False, compile_loss=False, update="foreach")
"""The configuration whose step on CUDA is the plain one (torch loss, `adam_step`)."""

LOSS_VARIANTS = {  # FitConfig fields -> the step's class and paths
    "graph+fused": (dict(cuda_graph=True, fused_loss=True), GraphedLossStep, StepPaths("fused", True, "foreach")),
    "graph+torch": (dict(cuda_graph=True, fused_loss=False), GraphedLossStep, StepPaths("torch", True, "foreach")),
    "fused eager": (dict(cuda_graph=False, fused_loss=True), PlainStep, StepPaths("fused", False, "foreach")),
}
STEPS = 6
BATCHES = [[0, 1], [2, 3], [1, 2], [3, 0], [0, 2], [1, 3]]


def loss_data(rgba: bool, weighted: bool) -> FitData:
    gen = torch.Generator().manual_seed(21)
    images = torch.rand(4, 40, 48, 4 if rgba else 3, generator=gen).cuda()
    weights = (0.5 + torch.rand(4, 40, 48, generator=gen)).cuda() if weighted else None
    backgrounds = torch.rand(STEPS, 3, generator=gen).cuda()
    return FitData(images, weights, BATCHES, backgrounds, ssim_weight=0.2, alpha_weight=0.1)


def run_loss(fields: dict, data: FitData, renders: list, with_reg: bool) -> tuple:
    """Each step's render through the step's backward, the losses read in two windows, as the loop does:
    (the step, [(raw grad, alpha grad)], losses [STEPS])."""
    step = make_step(FitConfig(**{**PLAIN, **fields}), data, SimpleNamespace(), mcmc=False, decay=1.0)
    grads, windows, start = [], [], 0
    for s, (raw, alpha) in enumerate(renders):
        raw, alpha = raw.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
        # gsplat's compositing when the step asks for a background: rgb + (1 - alpha) bg
        rgb = raw if step.composites else raw + (1.0 - alpha)[..., None] * data.backgrounds[s]
        reg = 0.01 * alpha.mean() + 0.002 * raw.square().mean() if with_reg else None  # as MCMC's, every step
        step.backward(RenderOutput(rgb=rgb, alpha=alpha, depth=None), s, data.batches[s], reg)
        grads.append((raw.grad, alpha.grad))
        if s + 1 in (4, STEPS):
            windows.append(step.losses(start, s + 1))
            start = s + 1
    torch.cuda.synchronize()
    return step, grads, torch.cat(windows)


@pytest.mark.parametrize("rgba, weighted, with_reg", [(True, True, True), (False, True, False), (True, False, False),
                                                      (False, False, True)])
@pytest.mark.parametrize("variant", list(LOSS_VARIANTS))
def test_loss_steps_match_the_plain_step(variant, rgba, weighted, with_reg):
    fields, cls, paths = LOSS_VARIANTS[variant]
    if paths.loss == "fused" and not TRITON:
        pytest.skip("needs Triton")
    gen = torch.Generator().manual_seed(22)
    renders = [((torch.rand(2, 40, 48, 3, generator=gen) * 0.6).cuda(), torch.rand(2, 40, 48, generator=gen).cuda())
               for _ in range(STEPS)]
    plain, plain_grads, plain_losses = run_loss({}, loss_data(rgba, weighted), renders, with_reg)
    fast, fast_grads, fast_losses = run_loss(fields, loss_data(rgba, weighted), renders, with_reg)
    assert type(plain) is PlainStep and plain.paths == StepPaths() and plain.graphs_captured == 0
    assert type(fast) is cls and fast.paths == paths
    assert fast.composites == paths.loss_graph
    assert fast.graphs_captured == (1 if paths.loss_graph else 0)  # the loss really replays from a graph
    assert plain_losses.shape == fast_losses.shape == (STEPS,) and bool((plain_losses > 0).all())
    rel = ((fast_losses - plain_losses).abs() / plain_losses).max()
    assert rel <= 1e-5, (plain_losses, fast_losses)
    for s, ((ra, aa), (rb, ab)) in enumerate(zip(plain_grads, fast_grads)):
        for name, a, b in (("rgb", ra, rb), ("alpha", aa, ab)):
            err = float((a - b).abs().max())
            assert err <= 1e-4 * float(a.abs().max()), (s, name, err, float(a.abs().max()))


UPDATE_VARIANTS = {  # FitConfig fields -> the step's class and paths (the loss on the update's own small data)
    "graph": (dict(cuda_graph=True, update="graph"), GraphedStep, "graph"),
    "loss graph + fused": (dict(cuda_graph=True, update="fused"), GraphedLossStep, "fused"),
    "loss graph + foreach": (dict(cuda_graph=True, update="foreach"), GraphedLossStep, "foreach"),
    "eager fused": (dict(cuda_graph=False, update="fused"), PlainStep, "fused"),
}


def run_update(fields: dict, start: dict, grads: list, steps: int) -> tuple:
    """`steps` updates from the parameters `start` with the gradients `grads`, each followed by the default
    strategy's post-backward (its sums; no refinement): (step, params, optimizers, state)."""
    from likeness3d.backend.stages.splats.densify import gsplat_default_strategy

    data = FitData(torch.rand(2, 16, 16, 3).cuda(), None, [[0], [1], [0]], torch.ones(3, 3).cuda(), 0.2, 0.1)
    strategy = gsplat_default_strategy(refine_start_iter=10**9)
    state = strategy.initialize_state(scene_scale=1.0)
    step = make_step(FitConfig(**{**PLAIN, **fields}), data, strategy, mcmc=False, decay=0.97)
    params = {k: torch.nn.Parameter(v.clone()) for k, v in start.items()}
    lrs = {"means": 1e-3, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 2.5e-3 / 20}
    optimizers = {k: torch.optim.Adam([{"params": [p], "lr": lrs[k], "name": k}], eps=1e-15)
                  for k, p in params.items()}
    for s in range(steps):
        if s == steps // 2:  # as a strategy does when it grows or prunes: new objects, the Adam state carried
            for k in list(params):
                new = torch.nn.Parameter(params[k].detach().clone())
                optimizers[k].state[new] = optimizers[k].state.pop(params[k])
                optimizers[k].param_groups[0]["params"] = [new]
                params[k] = new
        for k, p in params.items():
            p.grad = grads[s][k].clone()  # a new tensor each step, as autograd's
        means2d = torch.zeros(1, len(start["means"]), 2, device="cuda")
        means2d.grad = grads[s]["means2d"].clone()
        meta = {"means2d": means2d, "radii": grads[s]["radii"].clone(), "width": 64, "height": 48, "n_cameras": 1}
        step.update(params, optimizers, state, meta, s)
        strategy.step_post_backward(params, optimizers, state, s, meta, packed=False)
        assert all(p.grad is None for p in params.values())
    torch.cuda.synchronize()
    return step, params, optimizers, state


@pytest.mark.parametrize("variant", list(UPDATE_VARIANTS))
def test_update_steps_match_the_plain_step(variant):
    pytest.importorskip("gsplat.strategy")
    fields, cls, update = UPDATE_VARIANTS[variant]
    start = {k: v.detach().cuda() for k, v in to_params(random_gaussians(700, sh_degree=2, seed=23)).items()}
    gen = torch.Generator().manual_seed(24)
    steps = 12
    grads = [{**{k: (torch.randn(v.shape, generator=gen) * 0.1).cuda() for k, v in start.items()},
              "means2d": torch.randn(1, 700, 2, generator=gen).cuda() * 1e-3,
              "radii": ((torch.rand(1, 700, 2, generator=gen) > 0.2).int() * 3).cuda()} for _ in range(steps)]
    plain, pa, oa, sa = run_update({}, start, grads, steps)
    fast, pb, ob, sb = run_update(fields, start, grads, steps)
    assert type(plain) is PlainStep and plain.paths.update == "foreach"
    assert type(fast) is cls and fast.paths.update == update
    if update == "graph":  # the loss graph, and at least one update graph per parameter set (two sets here)
        assert fast.graphs_captured >= 3 and fast.updater.captures >= 2, fast.graphs_captured
    else:
        assert fast.graphs_captured == (1 if fields["cuda_graph"] else 0)
    for k in start:
        err = float((pa[k] - pb[k]).detach().abs().max())
        assert err <= 1e-5 * max(1.0, float(pa[k].detach().abs().max())), (k, err)
        ma, mb = oa[k].state[pa[k]], ob[k].state[pb[k]]
        for moment in ("exp_avg", "exp_avg_sq"):
            scale = float(ma[moment].abs().max())
            # each kernel sums the moments in its own order: float32 rounding over 12 steps is ~1e-5 of the
            # scale (a wrong beta or a missed step is off by percents)
            assert float((ma[moment] - mb[moment]).abs().max()) <= 1e-4 * scale, (k, moment)
        assert float(ma["step"]) == float(mb["step"]) == steps
        assert oa[k].param_groups[0]["lr"] == ob[k].param_groups[0]["lr"]  # the host's rate, decayed alike
    assert float((sa["grad2d"] - sb["grad2d"]).abs().max()) <= 1e-5 * float(sa["grad2d"].abs().max())
    assert torch.equal(sa["count"], sb["count"])
