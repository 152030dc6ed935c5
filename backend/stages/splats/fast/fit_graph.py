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

import importlib.util
from typing import Callable

import torch
from torch import Tensor

from ..step import FitData, adam_state


class GraphedLoss:
    """The fit's loss of a render and its gradients w.r.t. that render, on one CUDA graph.

    The graph takes the render without a background (premultiplied colour and alpha, as the rasteriser
    makes it with `background=None`) and composites it over the step's background itself, so that too
    leaves the host's per-step work; each replay is the next row of `data.batches` and `data.backgrounds`
    (for RGBA images the target is premultiplied colour + background x transparency; for RGB images the
    renders go over it). loss_fn(rgb, target, alpha, target_alpha, weights, ssim_weight, alpha_weight):
    `step.photometric_loss` or its compiled form, differentiated by autograd inside the graph; None: views,
    targets, compositing, loss, gradients and the log in `fused_loss.FitLossKernels` (Triton, no autograd).
    """

    def __init__(self, data: FitData, loss_fn: Callable[..., Tensor] | None, warmup: int = 3):
        self.data, self.loss_fn = data, loss_fn
        images = data.images
        self.batches = torch.as_tensor(data.batches, device=images.device)  # [rows, B]
        steps, B = self.batches.shape
        if steps < warmup:
            raise ValueError(f"batches must have at least warmup = {warmup} rows, got {steps}")
        _, H, W, _ = images.shape
        dev = images.device
        self.rgb = torch.zeros(B, H, W, 3, device=dev, requires_grad=True)
        self.alpha = torch.zeros(B, H, W, device=dev, requires_grad=True)
        self.step = torch.zeros((), dtype=torch.long, device=dev)
        self.log = torch.zeros(steps + warmup, device=dev)
        self.kernels = None
        if loss_fn is None:
            from .fused_loss import FitLossKernels

            self.kernels = FitLossKernels(self.rgb.detach(), self.alpha.detach(), images, data.weights,
                                          self.batches, data.backgrounds, self.step, self.log, data.ssim_weight,
                                          data.alpha_weight, data.use_alpha)
        else:
            data.premultiply()
        self.captures = 0
        """Graphs captured (1 once made)."""
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
        self.captures = 1
        with torch.no_grad():  # the warm-up advanced the counter and wrote the log
            self.step.zero_()
            self.log.zero_()

    def _body(self) -> tuple[Tensor, Tensor]:
        if self.kernels is not None:  # everything, step counter and log included, in the Triton kernels
            self.kernels()
            return self.kernels.grad_rgb, self.kernels.grad_alpha
        d, s = self.data, self.step.view(1)
        idx = self.batches.index_select(0, s)[0]  # [B]
        bg = d.backgrounds.index_select(0, s)  # [1, 3]
        target, target_alpha, w = d.targets(lambda t: t.index_select(0, idx), bg)
        rgb = self.rgb + (1.0 - self.alpha)[..., None] * bg  # over the background, as gsplat composites
        alpha = self.alpha if d.use_alpha else None
        loss = self.loss_fn(rgb, target, alpha, target_alpha, w, d.ssim_weight, d.alpha_weight)
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


class GraphedUpdate:
    """What follows the backward pass and keeps its shapes, as one CUDA graph: DefaultStrategy's per-step
    sums of the screen-space gradients, then Adam on every parameter (`adam_kernel`, one Triton kernel per
    parameter; torch's fused kernel where Triton is missing; learning rates and step counts as device
    tensors), then the decay of the `decaying` group's learning rate.

    A graph holds fixed addresses, and the strategy replaces parameters, moments and sums when it grows,
    prunes or resets opacities: the graphs are dropped and made again when any tensor they update is a
    different object (about every `refine_every` steps while densifying; a capture takes milliseconds).
    They keep those tensors referenced, so a replaced one cannot be freed and a new one take its place
    unnoticed.

    The gradients are new tensors every step. In a steady loop the caching allocator hands the same blocks
    out in the same order (or in a short cycle of orders), so once a step's gradients sit at addresses an
    earlier step's did, a graph is captured that reads them where they are, and every later step whose
    gradients sit there again replays it with no copy (24 MB a step for 100k Gaussians at SH degree 3).
    The addresses are checked every step; a step whose gradients sit elsewhere copies them into a graph of
    its own buffers instead.
    """

    use_triton = True
    """Adam by `adam_kernel` where Triton is installed (False: torch's fused kernel, for comparisons)."""
    max_in_place = 4
    """Graphs reading the gradients in place, at most, per set of parameters (0: always copy)."""

    def __init__(self, decaying: str, decay: float, strategy_sums: bool):
        self.decaying, self.decay, self.strategy_sums = decaying, decay, strategy_sums
        self.held: list = []
        self.lrs: dict[str, Tensor] = {}
        self.copying: torch.cuda.CUDAGraph | None = None
        self.in_place: dict[tuple[int, ...], torch.cuda.CUDAGraph] = {}
        self.seen: set[tuple[int, ...]] = set()
        self.stream: torch.cuda.Stream | None = None
        self.captures = 0
        """Graphs captured so far."""
        self.in_place_steps = 0
        """Steps that read their gradients in place (the others copied them)."""

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
        if not self.held or not self._unchanged(self._touched(params, optimizers, state)):
            self._prepare(params, optimizers, state, info)
            self.held = self._touched(params, optimizers, state)
        inputs = [params[n].grad for n in self.names]
        if self.strategy_sums:
            inputs += [info["means2d"].grad, info["radii"]]
        key = tuple(t.data_ptr() for t in inputs) if all(t.is_contiguous() for t in inputs) else None
        graph = self.in_place.get(key)
        if graph is None and key in self.seen and len(self.in_place) < self.max_in_place:
            graph = self.in_place[key] = self._record(inputs)  # the second step at these addresses
        elif graph is None and key is not None and len(self.seen) < 64:
            self.seen.add(key)
        if graph is not None:
            self.in_place_steps += 1
        else:
            if self.copying is None:
                self.buffers = [torch.empty_like(t) for t in inputs]
                self.copying = self._record(self.buffers)
            floats = len(self.names) + self.strategy_sums  # the gradients, then means2d's
            torch._foreach_copy_(self.buffers[:floats], inputs[:floats])
            if self.strategy_sums:
                self.buffers[-1].copy_(inputs[-1])
            graph = self.copying
        graph.replay()
        for p in params.values():
            p.grad = None
        for group in optimizers[self.decaying].param_groups:  # the host's copy, for anyone who reads it
            group["lr"] *= self.decay

    def _prepare(self, params, optimizers, state, info) -> None:
        """A new set of parameters: drop the graphs (their memory pools go first) and gather what they update."""
        self.copying, self.in_place, self.seen = None, {}, set()
        dev = params["means"].device
        self.names = [n for n, p in params.items() if p.grad is not None]
        self.slots = []
        for n in self.names:
            opt, p = optimizers[n], params[n]
            group, st = opt.param_groups[0], opt.state[p]
            adam_state(st, p, p.device)
            if n not in self.lrs:
                self.lrs[n] = torch.full((), float(group["lr"]), device=dev)
            self.slots.append((p, st["exp_avg"], st["exp_avg_sq"], st["step"], self.lrs[n], group["betas"],
                               group["eps"]))
        if self.strategy_sums:
            n = len(params["means"])
            if state["grad2d"] is None:
                state["grad2d"] = torch.zeros(n, device=dev)
            if state["count"] is None:
                state["count"] = torch.zeros(n, device=dev)
            self.sums = (state["grad2d"], state["count"])
            C = info["n_cameras"]
            # an attribute, not a local: the graphs read its memory at every replay
            self.scale = torch.tensor([info["width"] / 2.0 * C, info["height"] / 2.0 * C]).to(dev)
        self.adam = None
        if self.use_triton and importlib.util.find_spec("triton") is not None:
            from .adam_kernel import adam_, warm_up

            warm_up(dev)
            self.adam = adam_
        if self.stream is None:
            self.stream = torch.cuda.Stream(device=dev)

    def _record(self, inputs: list[Tensor]) -> torch.cuda.CUDAGraph:
        """Capture the update reading the gradients (and means2d's gradient and radii) from `inputs`.

        capture_begin directly, not torch.cuda.graph: that empties the allocator's cache first, which would
        move the next gradients to new addresses."""
        grads = inputs[:len(self.names)]
        graph = torch.cuda.CUDAGraph()
        self.stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(self.stream), torch.no_grad():
            graph.capture_begin(capture_error_mode="thread_local")
            try:
                if self.strategy_sums:
                    means2d_grad, radii = inputs[len(self.names):]
                    seen = (radii > 0).all(dim=-1)  # [C, N]
                    norms = torch.linalg.vector_norm(means2d_grad * self.scale, dim=-1) * seen
                    self.sums[0].add_(norms.sum(dim=0))
                    self.sums[1].add_(seen.sum(dim=0))
                for (p, m, v, step, lr, (b1, b2), eps), g in zip(self.slots, grads):
                    if self.adam is not None:  # reads step + 1; the counts advance together below
                        self.adam(p.data, g, m, v, step, lr, b1, b2, eps)
                    else:
                        step.add_(1)
                        torch._fused_adam_([p.data], [g], [m], [v], [], [step], lr=lr, beta1=b1, beta2=b2,
                                           weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
                if self.adam is not None:
                    torch._foreach_add_([slot[3] for slot in self.slots], 1)
                self.lrs[self.decaying].mul_(self.decay)
            finally:
                graph.capture_end()
        torch.cuda.current_stream().wait_stream(self.stream)
        self.captures += 1
        return graph
