"""A real Likeness3D backend in a child process (`likeness3d serve` on a free localhost port, CPU worker)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import ProtocolError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Backend:
    def __init__(self, store: Path, port: int | None = None):
        self.store = store
        self.port = port or free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log = store.parent / f"backend-{self.port}.log"

    def start(self, timeout: float = 60.0) -> "Backend":
        python = os.environ.get("LIKENESS3D_TEST_SERVER_PYTHON", sys.executable)
        cmd = [python, "-m", "likeness3d.backend.cli", "serve", "--listen", self.address,
               "--store", str(self.store), "--gpus", "cpu"]
        self.proc = subprocess.Popen(cmd, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with Client(self.address, timeout=2.0) as client:
            while True:
                try:
                    client.hello()
                    return self
                except ProtocolError:
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"backend did not start: {self.log.read_text()[-2000:]}") from None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def pause(self) -> None:
        """Freeze the server process (SIGSTOP): it stops answering, as a hung or unreachable backend does."""
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)
