"""Fixtures for the diffusion toolkit: tiny SD models built in code, saved in diffusers layout once."""

from __future__ import annotations

import numpy as np
import pytest

from likeness3d.backend.stages.diffusion.components import load_components
from likeness3d.backend.stages.diffusion.tiny import save_tiny


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every diffusion test runs on one torch thread (see tests/backend/conftest.py)."""
    yield


@pytest.fixture(scope="session")
def models_root(tmp_path_factory):
    """A models folder with `inpaint/` (9-channel) and `base/` (4-channel) tiny models in diffusers layout."""
    root = tmp_path_factory.mktemp("models")
    save_tiny(root / "inpaint", "inpaint", seed=0)
    save_tiny(root / "base", "base", seed=1)
    return root


@pytest.fixture
def inpaint_components():
    """Fresh tiny inpainting components (LoRA training changes the UNet in place)."""
    return load_components("inpaint", "tiny")


def _subject_views(n: int = 2, h: int = 32, w: int = 32, seed: int = 0):
    """[n, h, w, 3] float32 images in [0, 1] and [n, h, w] bool masks (a centred disc)."""
    rng = np.random.default_rng(seed)
    images = rng.random((n, h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2 <= (min(h, w) * 0.3) ** 2
    return images, np.repeat(disc[None], n, axis=0)


@pytest.fixture
def views():
    """views(n, h, w, seed) -> (images [n, h, w, 3] float32 in [0, 1], masks [n, h, w] bool centred discs)."""
    return _subject_views
