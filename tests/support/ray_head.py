"""A real Ray cluster for the Ray executor's tests and benchmark: `ray start --head --block` in its own process
group on 127.0.0.1, with a token of its own (token auth, as Ray's default) and a temp folder of its own, so
that stopping it ends exactly its processes."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RayHead:
    def __init__(self, *, cpus: int | None = 2, gpus: int | None = 0, timeout: float = 180.0):
        """`cpus`/`gpus`: the head's resources (None: what Ray detects)."""
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp = Path(tempfile.mkdtemp(prefix="l3ray_", dir="/tmp"))  # short: Ray's socket paths have a limit
        self.env = dict(os.environ, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32),
                        RAY_USAGE_STATS_ENABLED="0")
        beside = Path(sys.executable).with_name("ray")  # the venv's console script, else the one on PATH,
        found = str(beside) if beside.is_file() else shutil.which("ray")  # else Ray's CLI module itself
        ray_cli = [found] if found else [sys.executable, "-m", "ray.scripts.scripts"]
        cmd = [*ray_cli, "start", "--head", "--block", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
               *([f"--num-cpus={cpus}"] if cpus is not None else []), *([f"--num-gpus={gpus}"] if gpus is not None else []),
               "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={self.temp}"]
        self.log_path = self.temp / "head.log"
        t0 = time.monotonic()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        deadline = t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start failed (rc {self.proc.returncode}): {self.log_path.read_text()[-2000:]}")
            if b"Ray runtime started" in self.log_path.read_bytes():
                break
            time.sleep(0.2)
        else:
            self.stop()
            raise RuntimeError(f"ray start did not finish in {timeout} s: {self.log_path.read_text()[-2000:]}")
        self.start_seconds = time.monotonic() - t0

    def pids(self) -> list[int]:
        """Every process of this cluster (they name its temp folder, or are in its process group)."""
        out = []
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                args = (d / "cmdline").read_bytes()
                pgid = os.getpgid(int(d.name))
            except (OSError, ProcessLookupError):
                continue
            if str(self.temp).encode() in args or pgid == self.proc.pid:
                out.append(int(d.name))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            left = [p for p in self.pids() if p != os.getpid()]
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL if time.monotonic() > deadline - 5 else signal.SIGTERM)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        if self.proc.poll() is None:
            self.proc.kill()
        shutil.rmtree(self.temp, ignore_errors=True)
