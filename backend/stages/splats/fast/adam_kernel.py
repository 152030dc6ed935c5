"""Adam as one Triton kernel per parameter, for the fit's update graph (CUDA, where Triton is installed).

torch's fused Adam (`torch._fused_adam_`) runs through its multi-tensor launcher, which cuts every tensor
into chunks of 64k elements and gives each chunk one block: for a fit's few large tensors (the SH bands of
100k Gaussians are 4.5 M floats) that is about a hundred blocks on a GPU with 132 SMs, and its update of
6 M floats took 233-267 us a step on an H200 (bench/gpu_fit_trace.py), a sixth of the whole step. Here each
program updates one block of 512 elements, thousands of programs per parameter, one pass over the memory
(read p, g, m, v; write p, m, v): 58 us for the same update (1024 or more elements a program: 63-73 us).

The maths are torch's Adam (no weight decay, no amsgrad), step for step: m = b1 m + (1 - b1) g,
v = b2 v + (1 - b2) g^2, p -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps), with t = step + 1 and
lr read from device tensors: advancing the step counts and decaying the learning rate is the caller's work
(`fit_graph.GraphedUpdate` does both once for all parameters after the kernels).
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl
from torch import Tensor

BLOCK = 512
"""Elements per program (bench/gpu_fit_trace.py --kernels)."""
WARPS = 4
"""Warps per program."""


@triton.jit(do_not_specialize=["n"])  # one compile for every size: a graph capture cannot compile
def _adam(p_ptr, g_ptr, m_ptr, v_ptr, step_ptr, lr_ptr, log_betas_ptr, n, beta1, beta2, eps,
          BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    # the bias corrections 1 - beta^t in float64: in float32 1 - 0.999^t loses four digits at small t
    t = tl.load(step_ptr).to(tl.float64) + 1.0
    bc1 = (1.0 - tl.exp(t * tl.load(log_betas_ptr))).to(tl.float32)
    bc2_sqrt = tl.sqrt((1.0 - tl.exp(t * tl.load(log_betas_ptr + 1))).to(tl.float32))
    lr = tl.load(lr_ptr)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0)
    m = tl.load(m_ptr + offs, mask=mask, other=0.0)
    v = tl.load(v_ptr + offs, mask=mask, other=0.0)
    p = tl.load(p_ptr + offs, mask=mask, other=0.0)
    m = m + (1.0 - beta1) * (g - m)  # torch's lerp
    v = beta2 * v + (1.0 - beta2) * g * g
    p = p - (lr / bc1) * m / (tl.sqrt(v) / bc2_sqrt + eps)
    tl.store(m_ptr + offs, m, mask=mask)
    tl.store(v_ptr + offs, v, mask=mask)
    tl.store(p_ptr + offs, p, mask=mask)


@functools.lru_cache(maxsize=16)
def _log_betas(device: torch.device, beta1: float, beta2: float) -> Tensor:
    return torch.tensor([math.log(beta1), math.log(beta2)], dtype=torch.float64).to(device)


def adam_(param: Tensor, grad: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: Tensor, lr: Tensor,
          beta1: float, beta2: float, eps: float) -> None:
    """One Adam step of `param` in place (and of its moments), at step count `step` + 1 and learning rate `lr`
    ([] float tensors on the parameter's device, read by the kernel: a CUDA graph may capture this call).
    Every tensor must be float32 and contiguous, the four arrays of one shape."""
    tensors = {"param": param, "grad": grad, "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}
    for name, t in tensors.items():
        if t.dtype != torch.float32 or not t.is_contiguous() or t.shape != param.shape:
            raise ValueError(f"{name} must be a contiguous float32 tensor of shape {tuple(param.shape)}, "
                             f"got {t.dtype} {tuple(t.shape)} (contiguous: {t.is_contiguous()})")
    for name, t in (("step", step), ("lr", lr)):
        if t.numel() != 1 or t.device != param.device:
            raise ValueError(f"{name} must be one value on {param.device}, got {t.numel()} on {t.device}")
    n = param.numel()
    if n == 0:
        return
    if not (0.0 < beta1 < 1.0 and 0.0 < beta2 < 1.0):
        raise ValueError(f"beta1 and beta2 must be in (0, 1), got {beta1} and {beta2}")
    _adam[(triton.cdiv(n, BLOCK),)](param, grad, exp_avg, exp_avg_sq, step, lr, _log_betas(param.device, beta1, beta2),
                                    n, float(beta1), float(beta2), float(eps), BLOCK=BLOCK,
                                    num_warps=WARPS)


def warm_up(device: torch.device) -> None:
    """Compile (or load) the kernel by a step on scratch tensors, before a CUDA graph captures `adam_`."""
    x = [torch.zeros(BLOCK + 1, device=device) for _ in range(4)]
    adam_(*x, torch.zeros((), device=device), torch.zeros((), device=device), 0.9, 0.999, 1e-15)
