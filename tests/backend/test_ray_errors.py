"""A bad Ray configuration is a clear error at `serve` start, naming what to install or fix (never a traceback)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ray_head import free_port  # noqa: E402

pytest.importorskip("ray")


def serve(tmp_path, *flags: str, pre: str = "pass", timeout: float = 300) -> subprocess.CompletedProcess:
    code = (f"import sys; {pre}; from likeness3d.backend.cli import main; "
            f"sys.exit(main(['serve', '--listen', 'tcp://127.0.0.1:*', '--store', {str(tmp_path / 'store')!r}, *sys.argv[1:]]))")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
    env.pop("RAY_ADDRESS", None)
    return subprocess.run([sys.executable, "-c", code, *flags], capture_output=True, text=True, timeout=timeout, env=env)


def one_error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if line.startswith("likeness3d: error")]
    assert len(errors) == 1, r.stderr[-2000:]
    return errors[0]


def test_no_ray_installed_names_the_extra(tmp_path):
    line = one_error_line(serve(tmp_path, "--executor", "ray", pre="sys.modules['ray'] = None"))
    assert "[bad_message]" in line and "pip install 'likeness3d[ray]'" in line and "--executor local" in line


def test_unreachable_address_is_named_with_the_fix(tmp_path):
    port = free_port()  # nothing listens there
    line = one_error_line(serve(tmp_path, "--executor", "ray", "--ray-address", f"127.0.0.1:{port}", timeout=60))
    assert f"--ray-address 127.0.0.1:{port}: nothing answers at 127.0.0.1:{port}" in line
    assert "ray start --head" in line
    line = one_error_line(serve(tmp_path, "--executor", "ray", "--ray-address", "127.0.0.1", timeout=60))
    assert "is not auto, HOST:PORT or ray://HOST:PORT" in line


def test_gpu_indices_and_sizing_flags_are_refused_before_a_cluster_starts(tmp_path):
    line = one_error_line(serve(tmp_path, "--executor", "ray", "--gpus", "0,1"))
    assert "--gpus '0,1' with --executor ray" in line and "--ray-slots" in line
    line = one_error_line(serve(tmp_path, "--executor", "ray", "--ray-address", "auto", "--ray-num-gpus", "2"))
    assert "--ray-num-gpus sizes a cluster started here" in line
    line = one_error_line(serve(tmp_path, "--executor", "ray", "--ray-retries", "-1"))
    assert "--ray-retries must be >= 0, got -1" in line


@pytest.mark.slow
def test_a_cluster_without_gpus_for_gpu_jobs_is_refused_at_start(tmp_path):
    # a real cluster started by serve itself, with no GPUs; --gpus cuda asks for them
    r = serve(tmp_path, "--executor", "ray", "--ray-num-cpus", "1", "--ray-num-gpus", "0", "--gpus", "cuda")
    line = one_error_line(r)
    assert "--gpus cuda: the Ray cluster (local, 1 node(s)) has no GPUs" in line and "--gpus cpu" in line
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").glob("jobs/*"))
