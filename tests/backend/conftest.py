"""Fixtures for the backend's tests (torch is imported lazily: tests/addon shares the root conftest only)."""

import pytest


@pytest.fixture
def one_thread():
    """One intra-op torch thread for the test: tiny models gain nothing from a second one, and on a shared
    2-core machine it only contends (measured: a tiny LoRA step 0.03 s alone, several seconds contended)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
