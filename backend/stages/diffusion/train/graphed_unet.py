"""The UNet's forward and backward of a training step as CUDA graphs (CUDA only).

A LoRA step on an SD-2-sized UNet at 512 px is bound by the host: diffusers' and peft's Python launches
the kernels one module at a time, and of a 125 ms step on an H100 the GPU was busy 48 ms
(bench/gpu_lora_step.py). The shapes never change during a training run, so the UNet call is captured once
(forward and backward, the trained parameters as graph inputs) and replayed with one launch each way;
autograd still sees a function of those parameters and of the prompt embeddings, so the GradScaler,
clipping, AdamW and (full fine-tune) the text encoder's backward outside run as before. Autocast must not
cache its casts inside a graph: the caller runs the step under `torch.autocast(..., cache_enabled=False)`.

The capture follows `torch.cuda.make_graphed_callables` (warm-up on a side stream, then a forward and a
backward graph in one memory pool) with two differences:

- The prompt embeddings keep their `requires_grad` in the static inputs, so when the text encoder is trained
  (its embeddings require grad) the backward graph computes their gradient and the encoder learns.
- The capture's own autograd graph is dropped once captured. `make_graphed_callables` keeps it alive in its
  static outputs, and with it the trained parameters' AccumulateGrad nodes, made on the warm-up side stream:
  every replayed backward then handed its gradients from the training stream to nodes of another stream,
  which is the UserWarning torch raises from `run_backward` ("The AccumulateGrad node's stream does not
  match the stream of the node that produced the incoming gradient"), and an event record and wait per
  parameter every step. Here the first replay makes the nodes afresh on the training stream.
"""

from __future__ import annotations

import warnings

import torch

WARMUP_ITERS = 3
"""Eager forward + backward passes on a side stream before the capture (lazy initialisation, cuBLAS
workspaces): `make_graphed_callables`' default."""


class _Captured:
    """One forward graph and one backward graph of `unet(sample, timestep, hidden).sample` for fixed shapes,
    with their static tensors: inputs (copied into before a replay), output, output gradient (copied into
    before the backward replay) and the gradients of the inputs and parameters that require them."""

    def __init__(self, unet, sample: torch.Tensor, timestep: torch.Tensor, hidden: torch.Tensor):
        def run(s, t, h):
            return unet(s, t, encoder_hidden_states=h).sample

        self.params = tuple(p for p in unet.parameters() if p.requires_grad)
        # static inputs: copies, not the caller's tensors; the embeddings keep whether they require grad
        self.inputs = (sample.detach().clone(), timestep.detach().clone(),
                       hidden.detach().clone().requires_grad_(hidden.requires_grad))
        self.wrt = tuple(x for x in self.inputs if x.requires_grad) + self.params
        """What the backward graph differentiates: the inputs that require grad, then the parameters."""
        if not self.wrt:
            raise RuntimeError("nothing in the UNet call requires grad: there is no backward to capture")
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


class _Replay(torch.autograd.Function):
    """Autograd's view of a replay: a function of (sample, timestep, hidden, *trained parameters)."""

    @staticmethod
    def forward(ctx, captured: _Captured, *inputs: torch.Tensor) -> torch.Tensor:
        ctx.captured = captured
        for static, x in zip(captured.inputs, inputs[:3]):
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


def _capture(unet, sample, timestep, hidden) -> _Captured:
    """The graphs for these shapes (a seam for tests, which cannot capture on the CPU)."""
    return _Captured(unet, sample, timestep, hidden)


class GraphedDenoiser:
    """`denoiser(sample, timestep, hidden) -> unet(...).sample`, replayed from CUDA graphs for the shapes of its
    first call (captured then, after warm-up passes) and run eagerly for any other shapes. A UNet that cannot
    be captured (a module that synchronises with the host, say) runs eagerly, with a warning that says why:
    slower, the same result. `outcome()` says afterwards whether every call was replayed, for the training
    result and report.json."""

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet
        self.captured: _Captured | None = None
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

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        key = self._key(sample, timestep, hidden)
        if self.captured is None and self.failed is None:
            try:
                self.captured = _capture(self.unet, sample, timestep, hidden)
                self.key = key
            except RuntimeError as e:
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"the UNet could not be captured in a CUDA graph, training it eagerly: {self.failed}",
                              RuntimeWarning, stacklevel=2)
        if self.captured is None or key != self.key:
            self.eager_calls += 1
            return self.unet(sample, timestep, encoder_hidden_states=hidden).sample
        self.replays += 1
        return _Replay.apply(self.captured, sample, timestep, hidden, *self.captured.params)

    def outcome(self) -> tuple[bool, str]:
        """(every call was replayed from the graphs, why not: "" when they were)."""
        if self.failed is not None:
            return False, f"capture failed, trained eagerly: {self.failed}"
        if self.replays == 0:
            return False, "never called"
        if self.eager_calls:
            return False, (f"{self.eager_calls} of {self.eager_calls + self.replays} UNet calls ran eagerly "
                           "(shapes other than the captured ones)")
        return True, ""
