"""The UNet's forward and backward of a training step as CUDA graphs (CUDA only).

A LoRA step on an SD-2-sized UNet at 512 px is bound by the host: diffusers' and peft's Python launches
the kernels one module at a time, and of a 125 ms step on an H100 the GPU was busy 48 ms
(bench/gpu_lora_step.py). The shapes never change during a training run, so the UNet call is captured once
with `torch.cuda.make_graphed_callables` (forward and backward, the adapter's parameters as graph inputs)
and replayed with one launch each way; autograd still sees a function of those parameters, so the
GradScaler, clipping and AdamW outside run as before. Autocast must not cache its casts inside a graph:
the caller runs the step under `torch.autocast(..., cache_enabled=False)`.
"""

from __future__ import annotations

import warnings

import torch


class _Denoise(torch.nn.Module):
    def __init__(self, unet: torch.nn.Module):
        super().__init__()
        self.unet = unet

    def forward(self, sample: torch.Tensor, timestep: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return self.unet(sample, timestep, encoder_hidden_states=hidden).sample


class GraphedDenoiser:
    """`denoiser(sample, timestep, hidden) -> unet(...).sample`, replayed from CUDA graphs for the shapes of its
    first call (captured then, after three warm-up passes) and run eagerly for any other shapes. A UNet
    that cannot be captured (a module that synchronises with the host, say) runs eagerly, with a warning
    that says why: slower, the same result."""

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet
        self.graphed = None
        self.key = None
        self.failed: str | None = None
        """Why the capture failed, if it did."""

    @staticmethod
    def _key(*tensors: torch.Tensor) -> tuple:
        return tuple((t.shape, t.dtype, t.requires_grad) for t in tensors) + (torch.is_autocast_enabled("cuda"),)

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        key = self._key(sample, timestep, hidden)
        if self.graphed is None and self.failed is None:
            # the sample arguments become the graphs' static inputs: copies, not the caller's tensors
            args = (sample.detach().clone(), timestep.detach().clone(), hidden.detach().clone())
            try:
                self.graphed = torch.cuda.make_graphed_callables(_Denoise(self.unet), args, num_warmup_iters=3)
                self.key = key
            except RuntimeError as e:
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"the UNet could not be captured in a CUDA graph, training it eagerly: {self.failed}",
                              RuntimeWarning, stacklevel=2)
        if self.graphed is None or key != self.key:
            return self.unet(sample, timestep, encoder_hidden_states=hidden).sample
        return self.graphed(sample, timestep, hidden)
