"""The fit's CUDA steps (`step.FitStep` with the fast loss and update paths) and the choice of a fit's step.

`choose_paths` holds the rules (FitConfig + device), `make_step` builds the step once before the loop:
`step.PlainStep` on the CPU (and, on CUDA without graphs, with the fused or compiled loss and torch's fused
Adam plugged in), `GraphedLossStep` (the loss on a CUDA graph, Adam eager), `GraphedStep` (the update on
graphs too). Each is held against `PlainStep` (tests/backend/stages/splats/fast/test_step_gpu.py).
"""

from __future__ import annotations

import importlib.util

import torch
from torch import Tensor

from ..config import FitConfig
from ..render import RenderOutput
from ..step import FitData, FitStep, PlainStep, StepPaths, adam_state, adam_step, photometric_loss
from . import fit_graph


def fused_photometric_loss(rgb, target, alpha, target_alpha, weights, ssim_weight, alpha_weight) -> Tensor:
    """`photometric_loss` with L1 + D-SSIM from the Triton kernels of `fused_loss` (CUDA)."""
    from .fused_loss import fused_l1_dssim

    return photometric_loss(rgb, target, alpha, target_alpha, weights, ssim_weight, alpha_weight, fused_l1_dssim)


def fused_adam_step(optimizers: dict[str, torch.optim.Adam]) -> None:
    """`adam_step` with torch's fused Adam kernel (CUDA): one launch per parameter, one pass over its memory
    (the multi-tensor maths take about nine). Step counts live on the device."""
    steps = []
    for opt in optimizers.values():
        p = opt.param_groups[0]["params"][0]
        if p.grad is None:
            continue
        steps.append(adam_state(opt.state[p], p, p.device)["step"])
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


def choose_paths(config: FitConfig, device: torch.device, mcmc: bool, triton: bool | None = None) -> StepPaths:
    """The paths a fit on `device` runs (triton: whether Triton is installed; None: look).

    The CPU: the plain torch step. CUDA: the loss "fused" where `fused_loss` and Triton, else "compiled" with
    `compile_loss`, else "torch"; on a graph with `cuda_graph`. The update as `config.update`, except that
    "graph" needs the loss graph (else "fused") and MCMC takes "foreach" (its per-step relocation reads the
    host's learning rate and edits the Adam state each step)."""
    if device.type != "cuda":
        return StepPaths()
    if triton is None:
        triton = importlib.util.find_spec("triton") is not None
    loss = "fused" if config.fused_loss and triton else "compiled" if config.compile_loss else "torch"
    if mcmc or config.update == "foreach":
        update = "foreach"
    elif config.update == "graph" and config.cuda_graph:
        update = "graph"
    else:
        update = "fused"
    return StepPaths(loss=loss, loss_graph=config.cuda_graph, update=update)


def make_step(config: FitConfig, data: FitData, strategy, mcmc: bool, decay: float) -> FitStep:
    """The step of a fit of `data` (on its device) with `strategy` (told to leave its per-step sums to the
    update graph when there is one); the means' learning rate decays by `decay` a step."""
    paths = choose_paths(config, data.images.device, mcmc)
    if paths.loss == "compiled":
        loss_fn = torch.compile(photometric_loss, dynamic=False)
    else:
        loss_fn = fused_photometric_loss if paths.loss == "fused" else photometric_loss
    adam = fused_adam_step if paths.update == "fused" else adam_step
    if not paths.loss_graph:
        return PlainStep(data, decay, loss_fn, adam, paths)
    if paths.update != "graph":
        return GraphedLossStep(data, decay, loss_fn, adam, paths)
    strategy.external_sums = True
    return GraphedStep(data, decay, loss_fn, paths)


class GraphedLossStep(FitStep):
    """The loss and its gradient w.r.t. the render replayed from one CUDA graph (`fit_graph.GraphedLoss`:
    the fused kernels, or `loss_fn` and autograd); Adam eager by `adam`. Renders come without background."""

    composites = True

    def __init__(self, data: FitData, decay: float, loss_fn, adam, paths: StepPaths):
        super().__init__(paths, decay, adam)
        self.graphed = fit_graph.GraphedLoss(data, None if paths.loss == "fused" else loss_fn)

    @property
    def graphs_captured(self) -> int:
        return self.graphed.captures

    def backward(self, out: RenderOutput, step: int, batch: list[int], reg: Tensor | None) -> None:
        # the graph reads the step's views and background from its own counter
        self.graphed.backward(out.rgb, out.alpha, reg)
        if reg is not None:
            self.pending.append(reg.detach())

    def losses(self, start: int, stop: int) -> Tensor:
        window = self.graphed.losses(start, stop)  # the graph's log: the loss without `reg`
        if self.pending:
            window = window + super().losses(start, stop)
        return window


class GraphedStep(GraphedLossStep):
    """`GraphedLossStep` whose update is on CUDA graphs too (`fit_graph.GraphedUpdate`: the default strategy's
    per-step sums, Adam by `adam_kernel`, the decay); growing and pruning stay eager, in the strategy."""

    def __init__(self, data: FitData, decay: float, loss_fn, paths: StepPaths):
        super().__init__(data, decay, loss_fn, None, paths)
        self.updater = fit_graph.GraphedUpdate("means", decay, strategy_sums=True)

    @property
    def graphs_captured(self) -> int:
        return self.graphed.captures + self.updater.captures

    def update(self, params, optimizers, state, meta, step) -> None:
        self.updater.step(params, optimizers, state, meta)
