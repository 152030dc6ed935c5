"""The Triton loss kernels (`stages/splats/fast/fused_loss.py`) against the torch loss, in Triton's interpreter on the CPU.

Triton ships with CUDA builds of torch; CI installs it beside the CPU build (the dev extra) so this runs there. Without
it the test skips; tests/backend/stages/splats/test_render_gpu.py checks the compiled kernels on the GPU."""

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="needs Triton (CUDA torch builds)")

SCRIPT = r"""
import torch
from likeness3d.backend.stages.splats.fast.fused_loss import fused_l1_dssim
from likeness3d.backend.stages.splats.step import photometric_loss

torch.manual_seed(0)
for B, H, W, weighted in [(1, 20, 37, True), (2, 12, 70, False)]:  # 70 > 64: two column blocks
    a = torch.rand(B, H, W, 3)
    b = (a + 0.2 * torch.randn(B, H, W, 3)).clamp(0, 1)
    w = torch.rand(B, H, W) if weighted else None
    x1 = a.clone().requires_grad_(True)
    ref = photometric_loss(x1, b, None, None, w, 0.2, 0.1)
    ref.backward()
    x2 = a.clone().requires_grad_(True)
    out = fused_l1_dssim(x2, b, w, 0.2)
    (3.0 * out).backward()
    assert abs(float(ref) - float(out)) <= 1e-6 * float(ref), (float(ref), float(out))
    err = float((3 * x1.grad - x2.grad).abs().max()) / float(x1.grad.abs().max())
    assert err <= 1e-4, err
# the fit graph's kernels: views, background and targets looked up from the step counter; log and counter
from likeness3d.backend.stages.splats.fast.fused_loss import FitLossKernels

for rgba, weighted in [(True, True), (False, False)]:
    C, B, H, W = 4, 2, 12, 17
    images = torch.rand(C, H, W, 4 if rgba else 3)
    weights = torch.rand(C, H, W) if weighted else None
    batches = torch.tensor([[0, 1], [3, 2], [1, 0]])
    backgrounds = torch.rand(3, 3)
    step, log = torch.tensor(1), torch.zeros(3)
    raw, alpha = torch.rand(B, H, W, 3) * 0.5, torch.rand(B, H, W)
    kernels = FitLossKernels(raw, alpha, images, weights, batches, backgrounds, step, log, 0.2, 0.1, True)
    kernels()
    idx, bg = batches[1], backgrounds[1]
    if rgba:
        target = images[idx, ..., :3] * images[idx, ..., 3:] + bg * (1 - images[idx, ..., 3:])
        ta = images[idx, ..., 3]
    else:
        target, ta = images[idx], None
    r1, a1 = raw.clone().requires_grad_(True), alpha.clone().requires_grad_(True)
    ref = photometric_loss(r1 + (1 - a1)[..., None] * bg, target, a1 if rgba else None, ta,
                           None if weights is None else weights[idx], 0.2, 0.1)
    ref.backward()
    assert int(step) == 2 and log[0] == 0 and log[2] == 0
    assert abs(float(ref) - float(log[1])) <= 1e-6 * float(ref), (float(ref), float(log[1]))
    assert float((kernels.grad_rgb - r1.grad).abs().max()) <= 1e-4 * float(r1.grad.abs().max())
    assert float((kernels.grad_alpha - a1.grad).abs().max()) <= 1e-4 * float(a1.grad.abs().max())
print("ok")
"""


def test_fused_loss_equals_the_torch_loss_in_the_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and run.stdout.strip().endswith("ok"), run.stderr[-3000:]
