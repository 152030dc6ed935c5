"""Tiny Wan parts built in code (real diffusers / transformers classes), fresh for each test that needs them."""

import pytest


@pytest.fixture
def comps(one_thread):
    import torch

    from likeness3d.backend.stages.video.components import load_video_components

    return load_video_components("tiny", device="cpu", dtype=torch.float32)


@pytest.fixture
def randomise_lora():
    """Give an adapter's B matrices random values (fresh ones are zero), so the adapter acts."""
    import torch

    def apply(transformer, name, seed):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for n, p in transformer.named_parameters():
                if "lora_B" in n and f".{name}." in n:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    return apply
