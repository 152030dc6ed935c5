"""Shared fixtures: real backend processes on loopback ports, example assets."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from likeness3d.backend.demo import start_server
from likeness3d.protocol.assets import Asset, Camera, Mesh, Reference


class ServerProcess:
    """A `likeness3d serve` child process; stop() ends it like an operator would (SIGTERM)."""

    def __init__(self, store: Path, gpus: str = "cpu", extra: list[str] | None = None, listen: str = "tcp://127.0.0.1:*"):
        self.store, self.gpus, self.extra, self.listen = store, gpus, extra or [], listen
        self.proc, self.address = start_server(store, gpus, self.extra, listen=listen)

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def alive(self) -> bool:
        return self.proc.poll() is None


@pytest.fixture
def server_factory(tmp_path):
    started: list[ServerProcess] = []

    def make(**kw) -> ServerProcess:
        kw.setdefault("store", tmp_path / "store")
        s = ServerProcess(**kw)
        started.append(s)
        return s

    yield make
    for s in started:
        if s.alive():
            s.stop()


@pytest.fixture
def server(server_factory) -> ServerProcess:
    return server_factory()


def tiny_asset(n_refs: int = 2, size: int = 16) -> Asset:
    """A tetrahedron with UVs, a 4x4 texture and references looking at it from -Y."""
    v = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    f = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)
    uv = np.random.default_rng(0).random((4, 3, 2)).astype(np.float32)
    tex = np.full((4, 4, 4), 200, np.uint8)
    refs = []
    for i in range(n_refs):
        K = np.array([[size, 0, (size - 1) / 2], [0, size, (size - 1) / 2], [0, 0, 1.0]])
        w2c = np.array([[1, 0, 0, -0.3], [0, 0, -1, 0.3], [0, 1, 0, 3.0 + i], [0, 0, 0, 1]], np.float64)
        img = np.zeros((size, size, 4), np.uint8)
        img[4:12, 4:12] = 255
        refs.append(Reference(f"ref{i}", img, Camera(K, w2c, size, size)))
    return Asset(Mesh(v, f, uv, tex), tuple(refs), class_word="thing")


@pytest.fixture
def asset() -> Asset:
    return tiny_asset()
