"""Resplat: fit a Gaussian set to images, masks and cameras (TIRE step 4; 3DGS optimisation).

Loss per view, with per-pixel weights w (source views weigh more, masked pixels less):
(1 - lambda) * L1 + lambda * (1 - SSIM), lambda = 0.2 as 3DGS, each a w-weighted mean, plus an alpha L1
when the targets carry alpha. Densification and pruning: gsplat's DefaultStrategy (its per-step
bookkeeping made sync-free, `densify.gsplat_default_strategy`) or MCMCStrategy on CUDA,
`densify.SimpleStrategy` (the same 3DGS rules) on the CPU. The hooks run every step: `progress(step,
total, loss)`, and `check_cancel()`, which stops the fit by raising (JobContext.check_cancel raises
Cancelled). Parameters are updated by `adam_step` (torch's Adam maths, all groups at once).
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor

from ..views.cameras import Cameras
from .config import FitConfig
from .densify import SimpleStrategy, gsplat_default_strategy
from .fast.fit_graph import device_adam_state
from .gaussians import Gaussians
from ..common.loss_log import LossLog
from ..quality.metrics import ssim_map, weighted_mean
from .render import gsplat_intrinsics, pick_backend, render


LOSS_WINDOW = 50
"""Losses are read back from the device once per this many steps."""


@dataclass
class FitResult:
    gaussians: Gaussians
    """The fitted set (detached)."""
    losses: list[float] = field(default_factory=list)
    """Loss of every step."""


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


def photometric_loss(
    rgb: Tensor,  # [B, H, W, 3] render
    target: Tensor,  # [B, H, W, 3]
    alpha: Tensor | None,  # [B, H, W] rendered alpha, or None
    target_alpha: Tensor | None,  # [B, H, W]
    weights: Tensor | None,  # [B, H, W]
    ssim_weight: float,
    alpha_weight: float,
) -> Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM) (+ alpha_weight x alpha L1), each a per-pixel weighted mean."""
    l1 = weighted_mean((rgb - target).abs().mean(-1), weights)
    dssim = weighted_mean(1.0 - ssim_map(rgb, target), weights)
    loss = (1 - ssim_weight) * l1 + ssim_weight * dssim
    if alpha is not None:
        loss = loss + alpha_weight * weighted_mean((alpha - target_alpha).abs(), weights)
    return loss


def fused_photometric_loss(rgb, target, alpha, target_alpha, weights, ssim_weight, alpha_weight) -> Tensor:
    """`photometric_loss` with L1 + D-SSIM from the Triton kernels of `fused_loss` (CUDA)."""
    from .fast.fused_loss import fused_l1_dssim

    loss = fused_l1_dssim(rgb, target, weights, ssim_weight)
    if alpha is not None:
        loss = loss + alpha_weight * weighted_mean((alpha - target_alpha).abs(), weights)
    return loss


def pick_loss(config: FitConfig, device: torch.device) -> Callable[..., Tensor]:
    """The loss function a fit on `device` uses: fused (Triton), compiled, or plain torch."""
    if device.type != "cuda":
        return photometric_loss
    if config.fused_loss and importlib.util.find_spec("triton") is not None:
        return fused_photometric_loss
    if config.compile_loss:
        return torch.compile(photometric_loss, dynamic=False)
    return photometric_loss


def adam_step(optimizers: dict[str, torch.optim.Adam]) -> None:
    """One Adam step of every parameter at its own learning rate, then clear the gradients.

    The same update as calling each optimizer's step(), done with a handful of multi-tensor (foreach)
    kernels for all parameters together: six Optimizer.step() calls cost more host time than the
    rasterisation itself at 512 px. State lives where torch keeps it (optimizer.state[param]: step,
    exp_avg, exp_avg_sq), so gsplat's strategies edit it as usual.
    """
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
        # step size and denominator scale of torch's Adam (bias-corrected moments)
        sizes.append((group["lr"] / (1 - beta1**t), math.sqrt(1 - beta2**t), group["eps"], beta1, beta2))
        p.grad = None
    if not params:
        return
    beta1, beta2 = sizes[0][3], sizes[0][4]
    if any(s[3] != beta1 or s[4] != beta2 for s in sizes):
        raise ValueError("adam_step needs one (beta1, beta2) for all optimizers")
    torch._foreach_lerp_(m, grads, 1 - beta1)
    torch._foreach_mul_(v, beta2)
    torch._foreach_addcmul_(v, grads, grads, 1 - beta2)
    denom = torch._foreach_sqrt(v)
    torch._foreach_div_(denom, [s[1] for s in sizes])
    torch._foreach_add_(denom, [s[2] for s in sizes])
    torch._foreach_addcdiv_(params, m, denom, [-s[0] for s in sizes])


def fused_adam_step(optimizers: dict[str, torch.optim.Adam]) -> None:
    """`adam_step` with torch's fused Adam kernel (CUDA): one launch per parameter, one pass over its memory
    (the multi-tensor maths take about nine). Step counts live on the device."""
    steps = []
    for opt in optimizers.values():
        p = opt.param_groups[0]["params"][0]
        if p.grad is None:
            continue
        steps.append(device_adam_state(opt.state[p], p)["step"])
    if not steps:
        return
    torch._foreach_add_(steps, 1)
    for opt in optimizers.values():
        group = opt.param_groups[0]
        p = group["params"][0]
        if p.grad is None:
            continue
        state = opt.state[p]
        torch._fused_adam_([p.data], [p.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [], [state["step"]],
                           lr=group["lr"], beta1=group["betas"][0], beta2=group["betas"][1], weight_decay=0.0,
                           eps=group["eps"], amsgrad=False, maximize=False)
        p.grad = None


def _check_inputs(images: Tensor, cameras: Cameras, weights: Tensor | None) -> None:
    C, H, W = len(cameras), cameras.height, cameras.width
    if images.ndim != 4 or images.shape[:3] != (C, H, W) or images.shape[3] not in (3, 4):
        raise ValueError(f"images must have shape [C, H, W, 3|4] = [{C}, {H}, {W}, 3|4], got {tuple(images.shape)}")
    if weights is not None and tuple(weights.shape) != (C, H, W):
        raise ValueError(f"weights must have shape [C, H, W] = [{C}, {H}, {W}], got {tuple(weights.shape)}")
    if weights is not None and (weights < 0).any():
        raise ValueError(f"weights must be >= 0, got a minimum of {float(weights.min())}")


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
    images = images.to(device=device, dtype=torch.float32)
    weights = None if weights is None else weights.to(device=device, dtype=torch.float32)
    has_alpha = images.shape[-1] == 4
    if has_alpha:  # target = premultiplied + background x transparency, two kernels a step
        premult = images[..., :3] * images[..., 3:]
        transparency = 1.0 - images[..., 3:]
    else:
        premult = transparency = None
    C = len(cameras)
    # Everything a step needs is prepared on the device up front: no host-device copy inside the loop.
    views = [cameras[i].to(device) for i in range(C)]
    intrinsics = [gsplat_intrinsics(v.Ks) for v in views]
    gen = torch.Generator().manual_seed(config.seed)
    device_gen = torch.Generator(device=device).manual_seed(config.seed)
    rows = max(config.steps, 3)
    batches, order, cursor = [], torch.randperm(C, generator=gen).tolist(), 0
    for _ in range(rows):  # each step's views: epochs of a random permutation
        if cursor + config.batch_size > C:
            order, cursor = torch.randperm(C, generator=gen).tolist(), 0
        batches.append(order[cursor:cursor + config.batch_size])
        cursor += config.batch_size
    if has_alpha and config.random_background:
        backgrounds = torch.rand(rows, 3, generator=device_gen, device=device)
    else:
        backgrounds = torch.as_tensor(background, dtype=torch.float32).to(device).expand(rows, 3)

    # 1. Parameters, one Adam each (the layout gsplat's strategies edit).
    params = to_params(gaussians)
    with torch.no_grad():
        center = params["means"].mean(0)
        scene_scale = float((params["means"] - center).norm(dim=-1).max().clamp_min(1e-6))
    lrs = {"means": config.lr_means * scene_scale, "scales": config.lr_scales, "quats": config.lr_quats,
           "opacities": config.lr_opacities, "sh0": config.lr_sh0, "shN": config.lr_shN}
    optimizers = {k: torch.optim.Adam([{"params": [p], "lr": lrs[k], "name": k}], eps=1e-15)
                  for k, p in params.items()}
    decay = 0.01 ** (1.0 / config.steps)
    strategy, state = _make_strategy(config, backend, scene_scale)
    mcmc = backend == "gsplat" and config.strategy == "mcmc"
    loss_fn = pick_loss(config, device)
    use_alpha = has_alpha and config.alpha_weight > 0
    graphed = updater = None
    if config.cuda_graph and device.type == "cuda":
        from .fast.fit_graph import GraphedLoss, GraphedUpdate

        graphed = GraphedLoss(
            lambda rgb, target, alpha, target_alpha, w: loss_fn(rgb, target, alpha, target_alpha, w,
                                                                config.ssim_weight, config.alpha_weight),
            images, weights, torch.as_tensor(batches, device=device), backgrounds, use_alpha,
            fused=(config.ssim_weight, config.alpha_weight) if loss_fn is fused_photometric_loss else None)
        if config.update == "graph" and not mcmc:  # MCMC's per-step relocation reads the host's learning rate
            strategy.external_sums = True
            updater = GraphedUpdate("means", decay, strategy_sums=True)
    fused_adam = device.type == "cuda" and not mcmc and (config.update == "fused" or
                                                         (config.update == "graph" and updater is None))

    # 2. The loop.
    pending: list[Tensor] = []
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
        bg = backgrounds[step]  # a view: no kernel
        degree = min(step // config.sh_degree_interval, max_degree)

        # with the graph the render comes without background: the graph composites it
        out = render(from_params(params), cams, background=None if graphed is not None else bg, sh_degree=degree,
                     with_depth=False, intrinsics=ks)
        strategy.step_pre_backward(params, optimizers, state, step, out.meta)
        reg = None
        if mcmc:
            reg = config.mcmc_opacity_reg * torch.sigmoid(params["opacities"]).mean() \
                + config.mcmc_scale_reg * params["scales"].exp().mean()
        if graphed is not None:
            graphed.backward(out.rgb, out.alpha, reg)
            if reg is not None:
                pending.append(reg.detach())
        else:
            pick = (lambda t: t[batch[0]][None]) if len(batch) == 1 else (lambda t: t[batch])
            w = None if weights is None else pick(weights)
            if has_alpha:
                target_alpha = pick(images)[..., 3]
                target = pick(premult) + bg * pick(transparency)
            else:
                target = pick(images)
            alpha_pair = (out.alpha, target_alpha) if use_alpha else (None, None)
            loss = loss_fn(out.rgb, target, *alpha_pair, w, config.ssim_weight, config.alpha_weight)
            if reg is not None:
                loss = loss + reg
            loss.backward()
            pending.append(loss.detach())

        if updater is not None:  # sums, Adam and the decay on a graph; growing and pruning stay eager
            updater.step(params, optimizers, state, out.meta)
            strategy.step_post_backward(params, optimizers, state, step, out.meta, packed=False)
        else:
            fused_adam_step(optimizers) if fused_adam else adam_step(optimizers)
            if mcmc:
                lr = optimizers["means"].param_groups[0]["lr"]
                strategy.step_post_backward(params, optimizers, state, step, out.meta, lr=lr)
            else:
                strategy.step_post_backward(params, optimizers, state, step, out.meta, packed=False)
            for group in optimizers["means"].param_groups:
                group["lr"] *= decay

        last = step + 1 == config.steps
        if step + 1 - window_start == LOSS_WINDOW or last:  # one asynchronous read per window
            if graphed is not None:
                window_t = graphed.losses(window_start, step + 1)
                if pending:
                    window_t = window_t + torch.stack(pending)
            else:
                window_t = torch.stack(pending)
            log.add(window_t, step + 1)
            pending.clear()
            window_start = step + 1
            if last:
                log.poll(wait=True)
            shown = log.shown
        if progress is not None:
            progress(step + 1, config.steps, shown)
        if monitor is not None and ((step + 1) % monitor_every == 0 or last):
            monitor(step + 1, from_params(params).detach())
    return FitResult(gaussians=from_params(params).detach(), losses=log.values)
