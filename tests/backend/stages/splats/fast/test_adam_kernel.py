"""The Triton Adam kernel (`stages/splats/fast/adam_kernel.py`) against torch.optim.Adam, in Triton's interpreter on the CPU.

Skips where Triton is missing (CI's CPU torch); tests/backend/stages/test_render_gpu.py runs the compiled
kernel inside the fit's update graph on the GPU machine."""

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton (CUDA torch builds)")

SCRIPT = r"""
import torch
from likeness3d.backend.stages.splats.fast.adam_kernel import BLOCK, adam_

gen = torch.Generator().manual_seed(0)
for shape, lr in [((3, 5), 0.01), ((BLOCK + 37,), 0.2), ((40, 15, 3), 1e-3)]:
    ref = torch.nn.Parameter(torch.randn(*shape, generator=gen))
    opt = torch.optim.Adam([ref], lr=lr, eps=1e-15)
    p = ref.detach().clone()
    m, v = torch.zeros_like(p), torch.zeros_like(p)
    step, lr_t = torch.zeros(()), torch.tensor(lr)
    for t in range(6):
        g = torch.randn(*shape, generator=gen) * (10.0 ** (t - 3))
        ref.grad = g.clone()
        opt.step()
        adam_(p, g, m, v, step, lr_t, 0.9, 0.999, 1e-15)
        step += 1
        err = float((p - ref.detach()).abs().max())
        assert err <= 1e-6 + 1e-5 * lr, (shape, t, err)
    st = opt.state[ref]
    for ours, theirs in ((m, st["exp_avg"]), (v, st["exp_avg_sq"])):  # float32 rounding of the biggest value
        assert float((ours - theirs).abs().max()) <= 1e-6 * float(theirs.abs().max()), (shape, ours, theirs)
try:
    adam_(torch.zeros(4), torch.zeros(2, 2), torch.zeros(4), torch.zeros(4), torch.zeros(()), torch.zeros(()), 0.9, 0.999, 1e-8)
except ValueError as e:
    assert "grad must be a contiguous float32 tensor of shape (4,)" in str(e), e
else:
    raise AssertionError("a grad of the wrong shape was accepted")
print("ok")
"""


def test_adam_kernel_is_torch_adam_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
