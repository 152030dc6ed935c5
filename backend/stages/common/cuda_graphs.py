"""A differentiable call replayed from CUDA graphs: one forward graph and one backward graph for fixed shapes.

A LoRA training step of a large model is bound by the host: diffusers' and peft's Python launch the kernels
one module at a time (an SD-2 UNet step on an H100: GPU busy 48 ms of 125 ms, bench/gpu_lora_step.py). The
shapes never change during a training run, so the call is captured once (forward and backward, the trained
parameters as graph inputs) and replayed with one launch each way; autograd still sees a function of those
parameters and of the inputs that require grad, so the loss, the GradScaler, clipping and AdamW outside run
as before. Autocast must not cache its casts inside a graph: a caller under autocast passes
`cache_enabled=False`. The captured function must not synchronise with the host (no `.item()`, no tensors
made from Python lists on the device): a capture that fails raises RuntimeError for the caller to fall back.

The capture follows `torch.cuda.make_graphed_callables` (warm-up on a side stream, then a forward and a
backward graph in one memory pool) with two differences:

- Inputs keep their `requires_grad` in the static copies, so an input that requires grad (prompt embeddings
  of a text encoder being trained) gets its gradient from the backward graph.
- The capture's own autograd graph is dropped once captured. `make_graphed_callables` keeps it alive in its
  static outputs, and with it the trained parameters' AccumulateGrad nodes, made on the warm-up side stream:
  every replayed backward then handed its gradients from the training stream to nodes of another stream
  (torch's UserWarning "The AccumulateGrad node's stream does not match the stream of the node that produced
  the incoming gradient") with an event record and wait per parameter every step. Here the first replay makes
  the nodes afresh on the training stream.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import torch

WARMUP_ITERS = 3
"""Eager forward + backward passes on a side stream before the capture (lazy initialisation, cuBLAS
workspaces): `make_graphed_callables`' default."""


class CapturedCall:
    """`run(*inputs) -> tensor` captured for the shapes of `inputs`, with its static tensors: inputs (copied
    into before a replay), output, output gradient (copied into before the backward replay) and the gradients
    of the inputs and parameters that require them."""

    def __init__(self, run: Callable[..., torch.Tensor], inputs: Sequence[torch.Tensor], params: Sequence[torch.Tensor]):
        self.params = tuple(p for p in params if p.requires_grad)
        # static inputs: copies, not the caller's tensors; each keeps whether it requires grad
        self.inputs = tuple(x.detach().clone().requires_grad_(x.requires_grad) for x in inputs)
        self.wrt = tuple(x for x in self.inputs if x.requires_grad) + self.params
        """What the backward graph differentiates: the inputs that require grad, then the parameters."""
        if not self.wrt:
            raise RuntimeError("nothing in the captured call requires grad: there is no backward to capture")
        out, self.grad_out, grads = self._record(run)
        self.out = out.detach()
        del out  # drop the capture's autograd graph: see the module docstring
        it = iter(grads)
        self.input_grads = tuple(next(it) if x.requires_grad else None for x in self.inputs)
        self.param_grads = tuple(it)

    def _record(self, run):
        """Warm up, then capture `self.fwd` and `self.bwd`. Returns (the captured output, with the capture's
        autograd graph; the static output gradient; the static gradients of `self.wrt`, None where unused)."""
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_ITERS):
                out = run(*self.inputs)
                torch.autograd.grad(out, self.wrt, grad_outputs=torch.empty_like(out), allow_unused=True)
                del out  # the warm-up's autograd graph (and its AccumulateGrad nodes) goes
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        self.fwd, self.bwd = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        pool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(self.fwd, pool=pool):
            out = run(*self.inputs)
        grad_out = torch.empty_like(out)
        with torch.cuda.graph(self.bwd, pool=pool):
            # allow_unused: a parameter the forward never reads gets no gradient (None), as in eager autograd
            grads = torch.autograd.grad(out, self.wrt, grad_outputs=grad_out, allow_unused=True)
        return out, grad_out, grads


class Replay(torch.autograd.Function):
    """Autograd's view of a replay: a function of (*inputs, *trained parameters)."""

    @staticmethod
    def forward(ctx, captured: CapturedCall, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.captured = captured
        for static, x in zip(captured.inputs, tensors[: len(captured.inputs)]):
            if static.data_ptr() != x.data_ptr():
                static.copy_(x)
        captured.fwd.replay()
        return captured.out.detach()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        c = ctx.captured
        if c.grad_out.data_ptr() != grad.data_ptr():
            c.grad_out.copy_(grad)
        c.bwd.replay()
        # the static gradient buffers themselves: consumed by this backward, overwritten by the next replay
        return (None, *(g.detach() if g is not None else None for g in c.input_grads + c.param_grads))


def replay(captured: CapturedCall, *inputs: torch.Tensor) -> torch.Tensor:
    """The captured call's output for `inputs` (same shapes as captured), differentiable as the eager call."""
    return Replay.apply(captured, *inputs, *captured.params)


class GraphedCall:
    """`call(*inputs) -> run(*inputs)`, replayed from CUDA graphs for the shapes of its first call (captured
    then, after warm-up passes) and run eagerly for any other shapes. A call that cannot be captured (a module
    that synchronises with the host, say) runs eagerly, with a warning that says why: slower, the same result.
    `outcome()` says afterwards whether every call was replayed, for the training result and report.json."""

    what = "the call"

    def __init__(self, run: Callable[..., torch.Tensor], params: Callable[[], Sequence[torch.Tensor]]):
        self.run = run
        self.params = params
        """The parameters the call trains (those that require grad), asked for at the capture."""
        self.captured: CapturedCall | None = None
        self.key = None
        self.failed: str | None = None
        """Why the capture failed, if it did."""
        self.replays = 0
        """Calls replayed from the graphs."""
        self.eager_calls = 0
        """Calls run eagerly (capture failed, or shapes other than the captured ones)."""

    @staticmethod
    def _key(*tensors: torch.Tensor) -> tuple:
        return tuple((t.shape, t.dtype, t.requires_grad) for t in tensors) + (torch.is_autocast_enabled("cuda"),)

    def capture(self, *inputs: torch.Tensor) -> CapturedCall:
        return CapturedCall(self.run, inputs, tuple(self.params()))

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        key = self._key(*inputs)
        if self.captured is None and self.failed is None:
            try:
                self.captured = self.capture(*inputs)
                self.key = key
            except RuntimeError as e:
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"{self.what} could not be captured in a CUDA graph, training it eagerly: {self.failed}",
                              RuntimeWarning, stacklevel=2)
        if self.captured is None or key != self.key:
            self.eager_calls += 1
            return self.run(*inputs)
        self.replays += 1
        return replay(self.captured, *inputs)

    def outcome(self) -> tuple[bool, str]:
        """(every call was replayed from the graphs, why not: "" when they were)."""
        if self.failed is not None:
            return False, f"capture failed, trained eagerly: {self.failed}"
        if self.replays == 0:
            return False, "never called"
        if self.eager_calls:
            return False, (f"{self.eager_calls} of {self.eager_calls + self.replays} calls of {self.what} ran eagerly "
                           "(shapes other than the captured ones)")
        return True, ""


class GraphedForward:
    """`call(*inputs) -> run(*inputs)` without gradients, replayed from one CUDA graph for the shapes of its
    first call and run eagerly for any other shapes (or where the capture fails: a warning says why). The
    returned tensor is the graph's static output: read it before the next call overwrites it."""

    def __init__(self, run: Callable[..., torch.Tensor], what: str = "the call"):
        self.run, self.what = run, what
        self.graph: torch.cuda.CUDAGraph | None = None
        self.inputs: tuple[torch.Tensor, ...] = ()
        self.out: torch.Tensor | None = None
        self.key = None
        self.failed: str | None = None
        self.replays = 0
        self.eager_calls = 0

    def _capture(self, inputs: Sequence[torch.Tensor]) -> None:
        self.inputs = tuple(x.detach().clone() for x in inputs)
        torch.cuda.synchronize()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.no_grad():
            for _ in range(WARMUP_ITERS):
                self.run(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(graph):
            self.out = self.run(*self.inputs)
        self.graph = graph

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        key = tuple((t.shape, t.dtype, t.device) for t in inputs)
        if self.graph is None and self.failed is None:
            try:
                self._capture(inputs)
                self.key = key
            except RuntimeError as e:
                self.graph, self.out, self.inputs = None, None, ()
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"{self.what} could not be captured in a CUDA graph, running it eagerly: {self.failed}",
                              RuntimeWarning, stacklevel=2)
        if self.graph is None or key != self.key:
            self.eager_calls += 1
            with torch.no_grad():
                return self.run(*inputs)
        for static, x in zip(self.inputs, inputs):
            static.copy_(x)
        self.graph.replay()
        self.replays += 1
        return self.out

    def outcome(self) -> tuple[bool, str]:
        """(every call was replayed, why not)."""
        if self.failed is not None:
            return False, f"capture failed, ran eagerly: {self.failed}"
        if self.replays == 0:
            return False, "never called"
        if self.eager_calls:
            return False, f"{self.eager_calls} of {self.eager_calls + self.replays} calls of {self.what} ran eagerly"
        return True, ""
