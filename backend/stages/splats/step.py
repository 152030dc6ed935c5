"""The fit's step interface (loss, backward, Adam update, loss read-back) and its plain torch implementation.

`fit.fit` runs the loop; per step it renders, calls the strategy, then `FitStep.backward` (loss of the
render and its gradient into the Gaussians) and `FitStep.update` (Adam on every parameter, then the
means' learning-rate decay), and every window `FitStep.losses`. `PlainStep` does that in plain torch
(`photometric_loss`, `adam_step`): what the CPU and MCMC use and what every fast path is held against. The
CUDA steps (Triton loss kernels, torch's fused Adam, CUDA graphs) are in `fast/step.py`, which also picks
the step for a fit (`fast.step.make_step`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from ..quality.metrics import ssim_map, weighted_mean
from .render import RenderOutput


def l1_dssim(rgb: Tensor, target: Tensor, weights: Tensor | None, ssim_weight: float) -> Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM) of [B, H, W, 3] images, each a per-pixel weighted mean (torch)."""
    l1 = weighted_mean((rgb - target).abs().mean(-1), weights)
    dssim = weighted_mean(1.0 - ssim_map(rgb, target), weights)
    return (1 - ssim_weight) * l1 + ssim_weight * dssim


def photometric_loss(
    rgb: Tensor,  # [B, H, W, 3] render
    target: Tensor,  # [B, H, W, 3]
    alpha: Tensor | None,  # [B, H, W] rendered alpha, or None
    target_alpha: Tensor | None,  # [B, H, W]
    weights: Tensor | None,  # [B, H, W]
    ssim_weight: float,
    alpha_weight: float,
    l1_dssim_fn: Callable[..., Tensor] = l1_dssim,
) -> Tensor:
    """(1 - lambda) L1 + lambda (1 - SSIM) (+ alpha_weight x alpha L1), each a per-pixel weighted mean.

    l1_dssim_fn(rgb, target, weights, ssim_weight): the first two terms (`fast.fused_loss.fused_l1_dssim`:
    the Triton kernels)."""
    loss = l1_dssim_fn(rgb, target, weights, ssim_weight)
    if alpha is not None:
        loss = loss + alpha_weight * weighted_mean((alpha - target_alpha).abs(), weights)
    return loss


def adam_state(state: dict, p: Tensor, step_device: torch.device) -> dict:
    """Adam's state for `p` where torch keeps it (optimizer.state[p]; gsplat's strategies edit it): zero
    moments when new, the step count a [] float tensor on `step_device` (the CPU for `adam_step`, as torch's
    eager Adam; p's device for the CUDA kernels, which would sync reading a host count in a loop)."""
    if "exp_avg" not in state:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    step = state.get("step")
    if step is None or step.device != step_device:
        state["step"] = torch.full((), 0.0 if step is None else float(step), device=step_device)
    return state


def adam_step(optimizers: dict[str, torch.optim.Adam]) -> None:
    """One Adam step of every parameter at its own learning rate, then clear the gradients.

    The same update as calling each optimizer's step(), done with a handful of multi-tensor (foreach)
    kernels for all parameters together: six Optimizer.step() calls cost more host time than the
    rasterisation itself at 512 px. State lives where torch keeps it (`adam_state`).
    """
    params, grads, m, v, sizes = [], [], [], [], []
    cpu = torch.device("cpu")
    for opt in optimizers.values():
        group = opt.param_groups[0]
        p = group["params"][0]
        if p.grad is None:
            continue
        state = adam_state(opt.state[p], p, cpu)
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


@dataclass
class FitData:
    """What the steps read, on the fit's device, made once before the loop (no host-device copy inside it)."""

    images: Tensor
    """[C, H, W, 3] (over the background already) or [C, H, W, 4] straight-alpha RGBA, float32."""
    weights: Tensor | None
    """[C, H, W] per-pixel loss weights, or None."""
    batches: list[list[int]]
    """The views of each step, [rows][B], rows >= max(steps, 3) (a CUDA graph's warm-up reads 3)."""
    backgrounds: Tensor
    """[rows, 3] each step's background (RGBA targets go over it; RGB renders are composited over it)."""
    ssim_weight: float
    alpha_weight: float
    premult: Tensor | None = None
    """[C, H, W, 3] premultiplied colour of RGBA images, once `premultiply` has run."""
    transparency: Tensor | None = None
    """[C, H, W, 1] 1 - alpha of RGBA images, once `premultiply` has run."""

    @property
    def has_alpha(self) -> bool:
        return self.images.shape[-1] == 4

    @property
    def use_alpha(self) -> bool:
        """The loss has its alpha term (RGBA targets and alpha_weight > 0)."""
        return self.has_alpha and self.alpha_weight > 0

    def premultiply(self) -> None:
        """Make `premult` and `transparency` (RGBA images) for `targets`: a target is then two kernels."""
        if self.has_alpha and self.premult is None:
            self.premult = self.images[..., :3] * self.images[..., 3:]
            self.transparency = 1.0 - self.images[..., 3:]

    def targets(self, pick: Callable[[Tensor], Tensor], bg: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """(target [B, H, W, 3], target alpha [B, H, W] or None without the alpha term, weights or None) of
        the views `pick` selects from a [C, ...] tensor, RGBA targets over `bg` ([3] or [1, 3])."""
        w = None if self.weights is None else pick(self.weights)
        if not self.has_alpha:
            return pick(self.images), None, w
        target_alpha = pick(self.images[..., 3]) if self.use_alpha else None
        return pick(self.premult) + bg * pick(self.transparency), target_alpha, w


@dataclass(frozen=True)
class StepPaths:
    """Which implementation a step runs (`fast.step.choose_paths`)."""

    loss: str = "torch"
    """The loss function: "torch" (`photometric_loss`), "compiled" (it, by torch.compile) or "fused" (L1 +
    D-SSIM by the Triton kernels of `fast.fused_loss`)."""
    loss_graph: bool = False
    """The loss and its gradient w.r.t. the render replayed from a CUDA graph (`fast.fit_graph.GraphedLoss`;
    with "fused", the whole loss in `fused_loss.FitLossKernels`)."""
    update: str = "foreach"
    """"foreach" (`adam_step`), "fused" (torch's fused Adam kernel, `fast.step.fused_adam_step`) or "graph"
    (the strategy's sums and Adam on CUDA graphs, `fast.fit_graph.GraphedUpdate`)."""


class FitStep:
    """One fit step after the render: the loss and its gradient, the update, and the losses kept for reading.

    The loop calls, each step in order: backward(out, step, batch, reg), update(params, optimizers, state,
    meta, step); and after each window losses(start, stop). This base class updates with `adam`
    (`adam_step` or an equivalent over the same optimizers) and keeps the losses `backward` records."""

    composites = False
    """True: `backward` composites the render over the step's background itself; render without one."""

    def __init__(self, paths: StepPaths, decay: float, adam: Callable[[dict], None] = adam_step):
        self.paths, self.decay, self.adam = paths, decay, adam
        self.pending: list[Tensor] = []
        """[] losses on the device, of the steps since the last `losses` call."""

    @property
    def graphs_captured(self) -> int:
        """CUDA graphs captured so far (0 on eager paths)."""
        return 0

    def backward(self, out: RenderOutput, step: int, batch: list[int], reg: Tensor | None) -> None:
        """The loss of step `step`'s render `out` of views `batch` (plus `reg`, a [] loss of the Gaussians, on
        every step of a fit or on none), its gradient into the Gaussians' parameters, the loss kept for
        `losses`. Steps come in order, 0, 1, ...: a graph reads its views from its own counter."""
        raise NotImplementedError

    def update(self, params, optimizers: dict[str, torch.optim.Adam], state: dict, meta: dict, step: int) -> None:
        """Adam on every parameter with a gradient (clearing it), then decay the means' learning rate."""
        self.adam(optimizers)
        for group in optimizers["means"].param_groups:
            group["lr"] *= self.decay

    def losses(self, start: int, stop: int) -> Tensor:
        """The [stop - start] losses of steps [start, stop) on the device, each read once."""
        window = torch.stack(self.pending)
        self.pending.clear()
        return window


class PlainStep(FitStep):
    """The loss in torch (autograd through `loss_fn`, targets gathered per step), Adam by `adam`. The CPU's
    step, and CUDA's without graphs (`fast.step.make_step` passes the fused or compiled loss, fused Adam)."""

    def __init__(self, data: FitData, decay: float, loss_fn: Callable[..., Tensor] = photometric_loss,
                 adam: Callable[[dict], None] = adam_step, paths: StepPaths = StepPaths()):
        super().__init__(paths, decay, adam)
        self.data, self.loss_fn = data, loss_fn
        data.premultiply()

    def backward(self, out: RenderOutput, step: int, batch: list[int], reg: Tensor | None) -> None:
        d = self.data
        pick = (lambda t: t[batch[0]][None]) if len(batch) == 1 else (lambda t: t[batch])  # one view: no kernel
        target, target_alpha, w = d.targets(pick, d.backgrounds[step])
        alpha = out.alpha if d.use_alpha else None
        loss = self.loss_fn(out.rgb, target, alpha, target_alpha, w, d.ssim_weight, d.alpha_weight)
        if reg is not None:
            loss = loss + reg
        loss.backward()
        self.pending.append(loss.detach())
