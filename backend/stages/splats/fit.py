"""Resplat: fit a Gaussian set to images, masks and cameras (TIRE step 4; 3DGS optimisation).

Loss per view, with per-pixel weights w (source views weigh more, masked pixels less):
(1 - lambda) * L1 + lambda * (1 - SSIM), lambda = 0.2 as 3DGS, each a w-weighted mean, plus an alpha L1
when the targets carry alpha. Densification and pruning: gsplat's DefaultStrategy (its per-step
bookkeeping made sync-free, `densify.gsplat_default_strategy`) or MCMCStrategy on CUDA,
`densify.SimpleStrategy` (the same 3DGS rules) on the CPU. The hooks run every step: `progress(step,
total, loss)`, and `check_cancel()`, which stops the fit by raising (JobContext.check_cancel raises
Cancelled).

`fit` is the loop, as gsplat's simple_trainer: prepare, then per step render, strategy, `step.backward`,
`step.update`, strategy, loss log, hooks. What a step's loss and update run is a `step.FitStep` chosen once
(`fast.step.make_step`): on the CPU `step.PlainStep` (the torch loss, and `adam_step`: torch's Adam maths,
all groups at once, which MCMC's update uses on CUDA too); on CUDA the fast paths of `fast/` (Triton loss
kernels, fused Adam, CUDA graphs), each held against the plain step by the GPU tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..common.loss_log import LossLog
from ..views.cameras import Cameras
from .config import FitConfig
from .densify import SimpleStrategy, gsplat_default_strategy
from .fast.step import make_step
from .gaussians import Gaussians
from .render import gsplat_intrinsics, pick_backend, render
from .step import FitData, StepPaths, adam_step, photometric_loss

# adam_step and photometric_loss live in `step`; importable from here too, as before the split
__all__ = ["FitConfig", "FitResult", "LOSS_WINDOW", "adam_step", "fit", "from_params", "photometric_loss",
           "to_params"]


LOSS_WINDOW = 50
"""Losses are read back from the device once per this many steps."""


@dataclass
class FitResult:
    gaussians: Gaussians
    """The fitted set (detached)."""
    losses: list[float] = field(default_factory=list)
    """Loss of every step."""
    paths: StepPaths = field(default_factory=StepPaths)
    """Which loss and update the steps ran (`fast.step.choose_paths`)."""
    graphs_captured: int = 0
    """CUDA graphs the steps captured (0 on the eager paths)."""


def to_params(g: Gaussians) -> dict[str, torch.nn.Parameter]:
    """Gaussians -> the parameter dict gsplat's strategies edit (keys means, scales, quats, opacities, sh0, shN)."""
    p = {
        "means": g.means, "scales": g.log_scales, "quats": g.quats, "opacities": g.logit_opacities,
        "sh0": g.sh[:, :1],
    }
    if g.sh.shape[1] > 1:
        p["shN"] = g.sh[:, 1:]
    return torch.nn.ParameterDict({k: torch.nn.Parameter(v.detach().clone().contiguous()) for k, v in p.items()})


def from_params(p) -> Gaussians:
    sh = p["sh0"] if "shN" not in p else torch.cat([p["sh0"], p["shN"]], dim=1)
    return Gaussians(p["means"], p["quats"], p["scales"], p["opacities"], sh)


def _check_inputs(images: Tensor, cameras: Cameras, weights: Tensor | None) -> None:
    C, H, W = len(cameras), cameras.height, cameras.width
    if images.ndim != 4 or images.shape[:3] != (C, H, W) or images.shape[3] not in (3, 4):
        raise ValueError(f"images must have shape [C, H, W, 3|4] = [{C}, {H}, {W}, 3|4], got {tuple(images.shape)}")
    if weights is not None and tuple(weights.shape) != (C, H, W):
        raise ValueError(f"weights must have shape [C, H, W] = [{C}, {H}, {W}], got {tuple(weights.shape)}")
    if weights is not None and (weights < 0).any():
        raise ValueError(f"weights must be >= 0, got a minimum of {float(weights.min())}")


def _schedule(config: FitConfig, views: int, has_alpha: bool, background, device: torch.device):
    """Each step's views ([rows][batch_size]: epochs of a random permutation) and background ([rows, 3]:
    random ones for RGBA targets with `random_background`), rows = max(steps, 3) (a graph's warm-up reads 3)."""
    gen = torch.Generator().manual_seed(config.seed)
    device_gen = torch.Generator(device=device).manual_seed(config.seed)
    rows = max(config.steps, 3)
    batches, order, cursor = [], torch.randperm(views, generator=gen).tolist(), 0
    for _ in range(rows):
        if cursor + config.batch_size > views:
            order, cursor = torch.randperm(views, generator=gen).tolist(), 0
        batches.append(order[cursor:cursor + config.batch_size])
        cursor += config.batch_size
    if has_alpha and config.random_background:
        backgrounds = torch.rand(rows, 3, generator=device_gen, device=device)
    else:
        backgrounds = torch.as_tensor(background, dtype=torch.float32).to(device).expand(rows, 3)
    return batches, backgrounds


def _make_strategy(config: FitConfig, backend: str, scene_scale: float):
    if backend == "gsplat":
        from gsplat.strategy import MCMCStrategy

        if config.strategy == "mcmc":
            strategy = MCMCStrategy(cap_max=config.cap_max, refine_start_iter=config.refine_start,
                                    refine_stop_iter=config.refine_stop, refine_every=config.refine_every)
            return strategy, strategy.initialize_state()
        strategy = gsplat_default_strategy(
            prune_opa=config.prune_opa, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
            prune_scale3d=config.prune_scale3d, refine_start_iter=config.refine_start,
            refine_stop_iter=config.refine_stop, reset_every=config.reset_every, refine_every=config.refine_every,
        )
        return strategy, strategy.initialize_state(scene_scale=scene_scale)
    if config.strategy == "mcmc":
        raise ValueError("strategy 'mcmc' needs CUDA (gsplat's relocation kernels); use 'default' on the CPU")
    strategy = SimpleStrategy(
        prune_opa=config.prune_opa, grow_grad2d=config.grow_grad2d, grow_scale3d=config.grow_scale3d,
        prune_scale3d=config.prune_scale3d, refine_start_iter=config.refine_start,
        refine_stop_iter=config.refine_stop, reset_every=config.reset_every, refine_every=config.refine_every,
        max_gaussians=config.cap_max, seed=config.seed,
    )
    return strategy, strategy.initialize_state(scene_scale=scene_scale)


def fit(
    gaussians: Gaussians,
    images: Tensor,
    cameras: Cameras,
    weights: Tensor | None = None,
    config: FitConfig = FitConfig(),
    background: tuple[float, float, float] = (1.0, 1.0, 1.0),
    progress: Callable[[int, int, float], None] | None = None,
    check_cancel: Callable[[], None] | None = None,
    monitor: Callable[[int, Gaussians], None] | None = None,
    monitor_every: int = 100,
) -> FitResult:
    """Optimise `gaussians` (on their device) so their renders match `images`.

    images: [C, H, W, 3] (already over `background`) or [C, H, W, 4] straight-alpha RGBA, in [0, 1].
    cameras: C cameras of the images' size. weights: [C, H, W] >= 0 per-pixel loss weights, or None.
    Hooks, every step: check_cancel(), then progress(step, total, loss) after the update, where loss is
    the mean of the newest window of LOSS_WINDOW steps read back (reading the loss each step would stall
    the GPU; on CUDA a window arrives asynchronously, usually one window late).
    monitor(step, gaussians) every `monitor_every` steps and at the end gets a detached snapshot (for
    previews and evaluation).
    """
    device = gaussians.device
    backend = pick_backend(device)
    _check_inputs(images, cameras, weights)
    # 1. Everything a step needs, on the device up front: no host-device copy inside the loop.
    images = images.to(device=device, dtype=torch.float32)
    weights = None if weights is None else weights.to(device=device, dtype=torch.float32)
    views = [cameras[i].to(device) for i in range(len(cameras))]
    intrinsics = [gsplat_intrinsics(v.Ks) for v in views]
    batches, backgrounds = _schedule(config, len(cameras), images.shape[-1] == 4, background, device)
    data = FitData(images, weights, batches, backgrounds, config.ssim_weight, config.alpha_weight)

    # 2. Parameters, one Adam each (the layout gsplat's strategies edit), the strategy and the step.
    params = to_params(gaussians)
    with torch.no_grad():
        center = params["means"].mean(0)
        scene_scale = float((params["means"] - center).norm(dim=-1).max().clamp_min(1e-6))
    lrs = {"means": config.lr_means * scene_scale, "scales": config.lr_scales, "quats": config.lr_quats,
           "opacities": config.lr_opacities, "sh0": config.lr_sh0, "shN": config.lr_shN}
    optimizers = {k: torch.optim.Adam([{"params": [p], "lr": lrs[k], "name": k}], eps=1e-15)
                  for k, p in params.items()}
    strategy, state = _make_strategy(config, backend, scene_scale)
    mcmc = backend == "gsplat" and config.strategy == "mcmc"
    fit_step = make_step(config, data, strategy, mcmc, decay=0.01 ** (1.0 / config.steps))

    # 3. The loop.
    log = LossLog(device)
    window_start = 0
    shown = float("nan")
    max_degree = gaussians.sh_degree
    for step in range(config.steps):
        if check_cancel is not None:
            check_cancel()
        batch = batches[step]
        if len(batch) == 1:
            cams, ks = views[batch[0]], intrinsics[batch[0]]
        else:
            cams = Cameras.cat([views[i] for i in batch])
            ks = torch.cat([intrinsics[i] for i in batch])
        degree = min(step // config.sh_degree_interval, max_degree)
        bg = None if fit_step.composites else backgrounds[step]  # a view: no kernel
        out = render(from_params(params), cams, background=bg, sh_degree=degree, with_depth=False, intrinsics=ks)
        strategy.step_pre_backward(params, optimizers, state, step, out.meta)
        reg = None
        if mcmc:
            reg = config.mcmc_opacity_reg * torch.sigmoid(params["opacities"]).mean() \
                + config.mcmc_scale_reg * params["scales"].exp().mean()
        fit_step.backward(out, step, batch, reg)
        lr = optimizers["means"].param_groups[0]["lr"]  # this step's rate, before update() decays it
        fit_step.update(params, optimizers, state, out.meta, step)
        if mcmc:  # relocation noise scaled by the means' rate
            strategy.step_post_backward(params, optimizers, state, step, out.meta, lr=lr)
        else:
            strategy.step_post_backward(params, optimizers, state, step, out.meta, packed=False)

        last = step + 1 == config.steps
        if step + 1 - window_start == LOSS_WINDOW or last:  # one asynchronous read per window
            log.add(fit_step.losses(window_start, step + 1), step + 1)
            window_start = step + 1
            if last:
                log.poll(wait=True)
            shown = log.shown
        if progress is not None:
            progress(step + 1, config.steps, shown)
        if monitor is not None and ((step + 1) % monitor_every == 0 or last):
            monitor(step + 1, from_params(params).detach())
    return FitResult(gaussians=from_params(params).detach(), losses=log.values, paths=fit_step.paths,
                     graphs_captured=fit_step.graphs_captured)
