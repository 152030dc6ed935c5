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

    images: [C, H, W, 3] (over the background already) or [C, H, W, 4] straight-alpha RGBA on the device;
    weights: [C, H, W] or None; batches: [steps, B] view indices; backgrounds: [steps, 3] (used with RGBA
    images: the target of step s is premultiplied colour + backgrounds[s] x transparency).
    """

    def __init__(self, loss_fn: Callable[..., Tensor], images: Tensor, weights: Tensor | None, batches: Tensor,
                 backgrounds: Tensor, use_alpha: bool, warmup: int = 3):
        self.images, self.weights, self.batches, self.backgrounds = images, weights, batches, backgrounds
        self.loss_fn, self.use_alpha = loss_fn, use_alpha
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
        # warm-up on a side stream (allocator, cuBLAS handles), then capture, as torch.cuda.graph asks
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
        s = self.step.view(1)
        idx = self.batches.index_select(0, s)[0]  # [B]
        if self.has_alpha:
            bg = self.backgrounds.index_select(0, s)  # [1, 3]
            target = self.premult.index_select(0, idx) + bg * self.transparency.index_select(0, idx)
            target_alpha = self.images[..., 3].index_select(0, idx)
        else:
            target, target_alpha = self.images.index_select(0, idx), None
        w = None if self.weights is None else self.weights.index_select(0, idx)
        alpha = self.alpha if self.use_alpha else None
        loss = self.loss_fn(self.rgb, target, alpha, target_alpha if self.use_alpha else None, w)
        inputs = [self.rgb, self.alpha] if self.use_alpha else [self.rgb]
        grads = torch.autograd.grad(loss, inputs)
        with torch.no_grad():
            self.log.index_copy_(0, s, loss.detach().view(1))
            self.step.add_(1)
        return grads[0], (grads[1] if self.use_alpha else None)

    def backward(self, rgb: Tensor, alpha: Tensor, extra: Tensor | None = None) -> None:
        """Replay the graph on this step's render and push the gradient into the rasteriser; `extra`, a []
        loss outside the graph (regularisers of the Gaussians), is back-propagated in the same pass."""
        with torch.no_grad():
            self.rgb.copy_(rgb)
            if self.use_alpha:
                self.alpha.copy_(alpha)
        self.graph.replay()
        tensors, grads = [rgb], [self.grad_rgb]
        if self.use_alpha:
            tensors.append(alpha)
            grads.append(self.grad_alpha)
        if extra is not None:
            tensors.append(extra)
            grads.append(None)
        torch.autograd.backward(tensors, grads)

    def losses(self, start: int, stop: int) -> Tensor:
        """The logged losses of steps [start, stop) (a view of the device log)."""
        return self.log[start:stop]
