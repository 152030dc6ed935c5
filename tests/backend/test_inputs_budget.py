"""A job's reference pixels: a budget per image (too_large), references downscaled to what the job uses
with cameras that still see the same points, and the worker's memory bound."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from likeness3d.backend.inputs.budget import (
    MIN_KEPT_SIDE, check_pixel_budget, downscale_reference, fit_references, working_side,
)
from likeness3d.protocol.assets import Asset, Camera, Reference
from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import TooLarge


def _reference(w: int, h: int) -> Reference:
    K = np.array([[0.9 * w, 0, (w - 1) / 2 + 3], [0, 0.8 * w, (h - 1) / 2 - 2], [0, 0, 1.0]])
    w2c = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 3.0], [0, 0, 0, 1]], np.float64)
    image = np.zeros((h, w, 4), np.uint8)
    image[h // 4 : h // 2, w // 3 : w // 2] = 255
    return Reference("r", image, Camera(K, w2c, w, h))


def test_downscale_keeps_what_the_camera_sees():
    ref = _reference(3000, 2000)
    small = downscale_reference(ref, 1500)
    assert small.image.shape[:2] == (1000, 1500) and (small.camera.width, small.camera.height) == (1500, 1000)
    points = np.array([[0.1, 0.0, 0.2], [-0.3, 0.5, -0.1], [0.0, 0.0, 0.0]])
    uv_big, z_big = ref.camera.project(points)
    uv_small, z_small = small.camera.project(points)
    np.testing.assert_allclose(z_small, z_big)
    np.testing.assert_allclose((uv_small + 0.5) * 2, uv_big + 0.5, atol=1e-9)  # the same spot, half the pixels
    # the painted block lands where it was, in image fractions
    ys, xs = np.nonzero(small.image[..., 0] > 128)
    assert abs(ys.min() / 1000 - 0.25) < 0.01 and abs(xs.min() / 1500 - 1 / 3) < 0.01
    assert downscale_reference(small, 1500) is small


def test_fit_references_follows_the_jobs_resolutions():
    from likeness3d.backend.pipelines.tire import TireConfig

    config = TireConfig(resolution=16)
    assert working_side(config) == MIN_KEPT_SIDE  # a 16 px job keeps 1024 px references (the bake reads them)
    big = _reference(4096, 2048)
    from likeness3d.backend.synthetic.example import example_case

    mesh = example_case(image_size=32, texture_size=32).initial
    asset = Asset(mesh, (big,), "thing")
    fitted = fit_references(asset, config)
    assert fitted.references[0].image.shape[:2] == (512, 1024)
    assert fit_references(fitted, config) is fitted


def test_pixel_budget(monkeypatch):
    from likeness3d.backend.synthetic.example import example_case

    mesh = example_case(image_size=32, texture_size=32).initial
    asset = Asset(mesh, (_reference(40, 30),), "thing")
    check_pixel_budget(asset)
    monkeypatch.setenv("LIKENESS3D_MAX_REFERENCE_PIXELS", "1000")
    with pytest.raises(TooLarge, match=r"references\[0\] \('r'\) is 40x30") as e:
        check_pixel_budget(asset)
    assert e.value.field == "references[0].image"


def test_server_refuses_a_reference_over_its_budget(server_factory, asset):
    server = server_factory(extra=["--max-reference-megapixels", "0.0001"])  # 100 pixels; the asset's are 16x16
    with Client(server.address, timeout=20) as c:
        with pytest.raises(TooLarge, match="over this backend's budget of 0.0 per image") as e:
            c.submit("inspect", asset)
        assert e.value.field == "references[0].image"
    assert not any((server.store / "jobs").glob("*"))  # nothing stored


def test_worker_memory_limit_is_applied_to_a_cpu_worker(server_factory):
    server = server_factory(extra=["--max-worker-memory-gb", "6"])
    with Client(server.address, timeout=20) as c:
        for _ in range(1200):  # until the worker says it is ready (it bounds itself before that)
            worker = c.status()["workers"][0]
            if worker["state"] == "idle":
                break
            time.sleep(0.1)
        assert worker["state"] == "idle"
        pid = worker["pid"]
    limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert str(6 * (1 << 30)) in line


def test_memory_limit_turns_a_huge_allocation_into_memory_error():
    code = ("import os; os.environ['LIKENESS3D_MAX_WORKER_MEMORY'] = str(2 << 30)\n"
            "from likeness3d.backend.limits import apply_worker_memory_limit\n"
            "assert apply_worker_memory_limit('cpu') == 2 << 30\n"
            "assert apply_worker_memory_limit('cuda:0') is None\n"
            "from likeness3d.backend.pipelines.peak_memory import PeakMemory\n"
            "assert PeakMemory('cpu').read()['cpu_address_space_limit_mb'] == 2048.0\n"
            "try:\n    bytearray(3 << 30)\nexcept MemoryError:\n    print('refused')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=dict(os.environ))
    assert out.returncode == 0 and out.stdout.strip() == "refused", out.stderr
