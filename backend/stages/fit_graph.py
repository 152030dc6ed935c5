"""The fit's loss and its gradient with respect to the render, replayed as one CUDA graph (CUDA only).

At 512 px the fit loop is bound by host time per launched kernel, not by the GPU (docs/BENCHMARKS.md):
the loss (weighted L1, SSIM's five blurred moments, the alpha term, targets over a per-step background)
is about a hundred small kernels forward and backward. They depend only on the rendered image, whose shape
never changes during a fit, so they are captured once and replayed with a single launch per step; the
rasteriser (whose work depends on the Gaussians) stays outside and receives the gradient through
`torch.autograd.backward`. Densification does not touch the graph: it edits the Gaussians, not the image.

Per step the graph reads its static inputs (the render, copied in) and a step counter that it advances
itself; which views and which background a step uses are tables made up front, indexed on the device by
that counter; each step's loss goes into a log the host reads once per window.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor


class GraphedLoss:
    """loss_fn(rgb, target, alpha, target_alpha, weights) -> [] and its gradients, on one CUDA graph.

    The graph takes the render without a background (premultiplied colour and alpha, as the rasteriser
    makes it with `background=None`) and composites it over the step's background itself, so that too
    leaves the host's per-step work. images: [C, H, W, 3] (over the background already) or [C, H, W, 4]
    straight-alpha RGBA on the device; weights: [C, H, W] or None; batches: [steps, B] view indices;
    backgrounds: [steps, 3], the background of each step (for RGBA images the target is premultiplied
    colour + background x transparency; for RGB images the renders go over it).
    """

    def __init__(self, loss_fn: Callable[..., Tensor], images: Tensor, weights: Tensor | None, batches: Tensor,
                 backgrounds: Tensor, use_alpha: bool, warmup: int = 3, fused: tuple[float, float] | None = None):
        self.images, self.weights, self.batches, self.backgrounds = images, weights, batches, backgrounds
        self.loss_fn, self.use_alpha = loss_fn, use_alpha
        self.fused = fused
        """(ssim_weight, alpha_weight): views, targets, compositing, loss, gradients and the log in
        `fused_loss.FitLossKernels` (Triton, no autograd); None: `loss_fn` and autograd."""
        self.has_alpha = images.shape[-1] == 4
        steps, B = batches.shape
        if steps < warmup:
            raise ValueError(f"batches must have at least warmup = {warmup} rows, got {steps}")
        _, H, W, _ = images.shape
        dev = images.device
        if self.has_alpha:
            self.premult = images[..., :3] * images[..., 3:]
            self.transparency = 1.0 - images[..., 3:]
        self.rgb = torch.zeros(B, H, W, 3, device=dev, requires_grad=True)
        self.alpha = torch.zeros(B, H, W, device=dev, requires_grad=True)
        self.step = torch.zeros((), dtype=torch.long, device=dev)
        self.log = torch.zeros(steps + warmup, device=dev)
        self.kernels = None
        if fused is not None:
            from .fused_loss import FitLossKernels

            self.kernels = FitLossKernels(self.rgb.detach(), self.alpha.detach(), images, weights, batches,
                                          backgrounds, self.step, self.log, fused[0], fused[1], use_alpha)
        # warm-up on a side stream (allocator, cuBLAS handles, Triton's compile), then capture, as
        # torch.cuda.graph asks
        side = torch.cuda.Stream(device=dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(warmup):
                self._body()
        torch.cuda.current_stream(dev).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.grad_rgb, self.grad_alpha = self._body()
        with torch.no_grad():  # the warm-up advanced the counter and wrote the log
            self.step.zero_()
            self.log.zero_()

    def _body(self) -> tuple[Tensor, Tensor]:
        if self.kernels is not None:  # everything, step counter and log included, in the Triton kernels
            self.kernels()
            return self.kernels.grad_rgb, self.kernels.grad_alpha
        s = self.step.view(1)
        idx = self.batches.index_select(0, s)[0]  # [B]
        bg = self.backgrounds.index_select(0, s)  # [1, 3]
        if self.has_alpha:
            target = self.premult.index_select(0, idx) + bg * self.transparency.index_select(0, idx)
            target_alpha = self.images[..., 3].index_select(0, idx)
        else:
            target, target_alpha = self.images.index_select(0, idx), None
        w = None if self.weights is None else self.weights.index_select(0, idx)
        rgb = self.rgb + (1.0 - self.alpha)[..., None] * bg  # over the background, as gsplat composites
        alpha = self.alpha if self.use_alpha else None
        loss = self.loss_fn(rgb, target, alpha, target_alpha if self.use_alpha else None, w)
        grads = torch.autograd.grad(loss, [self.rgb, self.alpha])
        with torch.no_grad():
            self.log.index_copy_(0, s, loss.detach().view(1))
            self.step.add_(1)
        return grads[0], grads[1]

    def backward(self, rgb: Tensor, alpha: Tensor, extra: Tensor | None = None) -> None:
        """Replay the graph on this step's render (no background) and push the gradient into the
        rasteriser; `extra`, a [] loss outside the graph (regularisers of the Gaussians), goes back in the
        same pass."""
        with torch.no_grad():
            self.rgb.copy_(rgb)
            self.alpha.copy_(alpha)
        self.graph.replay()
        tensors, grads = [rgb, alpha], [self.grad_rgb, self.grad_alpha]
        if extra is not None:
            tensors.append(extra)
            grads.append(None)
        torch.autograd.backward(tensors, grads)

    def losses(self, start: int, stop: int) -> Tensor:
        """The logged losses of steps [start, stop) (a view of the device log)."""
        return self.log[start:stop]


def device_adam_state(state: dict, p: Tensor) -> dict:
    """Adam's state for `p` as the fused kernel wants it: zero moments when new, the step count as a tensor on
    p's device (torch's eager Adam keeps it on the CPU; reading that in a loop would sync)."""
    if "exp_avg" not in state:
        state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    step = state.get("step")
    if step is None or step.device != p.device:
        state["step"] = torch.full((), 0.0 if step is None else float(step), device=p.device)
    return state


class GraphedUpdate:
    """What follows the backward pass and keeps its shapes, as one CUDA graph: DefaultStrategy's per-step
    sums of the screen-space gradients, then Adam on every parameter (torch's fused kernel, one per
    parameter, learning rates and step counts as device tensors), then the decay of the `decaying` group's
    learning rate.

    A graph holds fixed addresses, and the strategy replaces parameters, moments and sums when it grows,
    prunes or resets opacities: the graph is captured again when any tensor it touches is a different
    object (about every `refine_every` steps while densifying; a capture takes milliseconds). It keeps those
    tensors referenced, so a replaced one cannot be freed and a new one take its place unnoticed. The
    gradients arrive in new tensors each step and are copied into the graph's inputs (one multi-tensor copy).
    """

    def __init__(self, decaying: str, decay: float, strategy_sums: bool):
        self.decaying, self.decay, self.strategy_sums = decaying, decay, strategy_sums
        self.graph: torch.cuda.CUDAGraph | None = None
        self.held: list = []
        self.lrs: dict[str, Tensor] = {}
        self.captures = 0

    def _touched(self, params, optimizers, state) -> list:
        out = []
        for name, p in params.items():
            st = optimizers[name].state.get(p, {})
            out += [name, p, p.grad is not None, st.get("exp_avg"), st.get("exp_avg_sq"), st.get("step")]
        if self.strategy_sums:
            out += [state.get("grad2d"), state.get("count")]
        return out

    def _unchanged(self, touched: list) -> bool:
        return len(touched) == len(self.held) and all(
            a is b or (isinstance(a, (str, bool)) and a == b) for a, b in zip(touched, self.held))

    def step(self, params, optimizers, state, info) -> None:
        if self.graph is None or not self._unchanged(self._touched(params, optimizers, state)):
            self._capture(params, optimizers, state, info)
            self.held = self._touched(params, optimizers, state)
        torch._foreach_copy_(self.grads, [params[n].grad for n in self.names])
        if self.strategy_sums:
            self.means2d_grad.copy_(info["means2d"].grad)
            self.radii.copy_(info["radii"])
        self.graph.replay()
        for p in params.values():
            p.grad = None
        for group in optimizers[self.decaying].param_groups:  # the host's copy, for anyone who reads it
            group["lr"] *= self.decay

    def _capture(self, params, optimizers, state, info) -> None:
        self.graph = None  # the old graph's memory pool goes first
        dev = params["means"].device
        self.names = [n for n, p in params.items() if p.grad is not None]
        self.grads = [torch.empty_like(params[n].grad) for n in self.names]
        slots = []
        for n in self.names:
            opt, p = optimizers[n], params[n]
            group, st = opt.param_groups[0], opt.state[p]
            device_adam_state(st, p)
            if n not in self.lrs:
                self.lrs[n] = torch.full((), float(group["lr"]), device=dev)
            slots.append((p, st["exp_avg"], st["exp_avg_sq"], st["step"], self.lrs[n], group["betas"], group["eps"]))
        if self.strategy_sums:
            n = len(params["means"])
            if state["grad2d"] is None:
                state["grad2d"] = torch.zeros(n, device=dev)
            if state["count"] is None:
                state["count"] = torch.zeros(n, device=dev)
            self.means2d_grad = torch.empty_like(info["means2d"].grad)
            self.radii = torch.empty_like(info["radii"])
            C = info["n_cameras"]
            # an attribute, not a local: the graph reads its memory at every replay
            self.scale = scale = torch.tensor([info["width"] / 2.0 * C, info["height"] / 2.0 * C]).to(dev)
        torch.cuda.synchronize(dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.no_grad():
            if self.strategy_sums:
                seen = (self.radii > 0).all(dim=-1)  # [C, N]
                norms = torch.linalg.vector_norm(self.means2d_grad * scale, dim=-1) * seen
                state["grad2d"].add_(norms.sum(dim=0))
                state["count"].add_(seen.sum(dim=0))
            for (p, m, v, step, lr, (b1, b2), eps), g in zip(slots, self.grads):
                step.add_(1)
                torch._fused_adam_([p.data], [g], [m], [v], [], [step], lr=lr, beta1=b1, beta2=b2,
                                   weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
            self.lrs[self.decaying].mul_(self.decay)
        self.graph = graph
        self.captures += 1
