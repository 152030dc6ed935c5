"""A stand-in for CUDA graph capture on the CPU: `eager_record` replaces `CapturedCall._record`, so that the
two "graphs" recompute eagerly into the same static tensors. A CPU test then runs the graphed path's autograd
wiring (`cuda_graphs.Replay`: static inputs, which inputs and parameters get gradients, in which order) as
the GPU runs it."""

from __future__ import annotations

import torch


def eager_record(self, run):
    state = {}
    with torch.enable_grad():
        out = run(*self.inputs)
    grad_out = torch.zeros_like(out)
    probe = torch.autograd.grad(out, self.wrt, grad_outputs=grad_out, retain_graph=True, allow_unused=True)
    grads = tuple(None if g is None else torch.zeros_like(g) for g in probe)

    class Forward:
        def replay(_):
            with torch.enable_grad():
                state["out"] = run(*self.inputs)
            self.out.copy_(state["out"].detach())

    class Backward:
        def replay(_):
            new = torch.autograd.grad(state.pop("out"), self.wrt, grad_outputs=self.grad_out, allow_unused=True)
            for static, g in zip(grads, new):
                if static is not None:
                    static.copy_(g)

    self.fwd, self.bwd = Forward(), Backward()
    return out, grad_out, grads
