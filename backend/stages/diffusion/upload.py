"""Host-to-device copies that do not stall the GPU.

`tensor.to("cuda")` from ordinary (pageable) host memory makes the host wait until the GPU has finished all
the work queued before the copy (torch synchronises the stream). The training steps here draw their random
numbers on a CPU generator, so that a seed gives the same draws on any device, and a step moved five or six
such tensors to the GPU (noise, timesteps, the inpainting mask, the rotation, the latents' samples): the
GPU's queue drained each time, and the host's Python work for the next kernels never overlapped the GPU's.
Copied from page-locked memory with `non_blocking=True` they queue like kernels (torch keeps the page-locked
block until its copy has run).
"""

from __future__ import annotations

import torch


def to_device(t: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """`t` on `device`; a host tensor goes to a CUDA device through page-locked memory, without a sync."""
    device = torch.device(device)
    if device.type != "cuda" or t.device.type != "cpu":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def host_noise(shape, generator: torch.Generator, device: torch.device | str,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn by a host `generator` in `dtype` (as diffusers' `randn_tensor` draws it for
    a CPU generator, so the values are the same), then moved to `device` without a sync."""
    return to_device(torch.randn(shape, generator=generator, dtype=dtype), device)
