"""The backward track run on the GPU (`track_backward(..., device="cuda")`, as TIRE's job device does) against
the same track on the CPU: the same observed pixels (ties of the grazing cosine aside), colours and sources."""

from __future__ import annotations

import pytest
import torch

from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.views.mesh_passes import mesh_passes, mesh_rgba
from likeness3d.backend.stages.views.track import KnownView, TrackConfig, track_backward
from likeness3d.backend.synthetic.shapes import uv_sphere

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_track_on_the_gpu_matches_the_cpu():
    sphere = uv_sphere(radius=1.0, n_lon=128, n_lat=64)
    sources = orbit((0, 0, 0), 1.0, [0.0, 50.0, 120.0], [10.0], 96, 96)
    targets = orbit((0, 0, 0), 1.0, [30.0, 60.0, 100.0, 150.0, 200.0, 300.0], [0.0, 25.0], 64, 64)
    sp, img = mesh_passes(sphere, sources), mesh_rgba(sphere, sources, supersample=2)
    tp = mesh_passes(sphere, targets, normals="smooth")
    known = [KnownView(img[i], sp.depth[i], sources[i : i + 1]) for i in range(len(sources))]
    cfg = TrackConfig(max_angle_deg=75.0)
    cpu = track_backward(tp.points, tp.normal, tp.mask, known, cfg)
    gpu = track_backward(tp.points, tp.normal, tp.mask, known, cfg, device="cuda")
    assert gpu.observed.device.type == "cpu"  # results come back on the inputs' device
    same = (cpu.observed == gpu.observed).float().mean().item()
    assert same >= 0.999 and cpu.observed.sum() > 1000, same
    both = cpu.observed & gpu.observed
    assert (cpu.source[both] == gpu.source[both]).float().mean().item() >= 0.999
    assert (cpu.colour[both] - gpu.colour[both]).abs().max().item() < 1e-3
    assert torch.equal(gpu.infill, tp.mask & ~gpu.observed)
