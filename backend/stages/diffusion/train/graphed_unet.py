"""The UNet's forward and backward of a training step as CUDA graphs (CUDA only): `GraphedDenoiser` over
`common.cuda_graphs` (why graphs, how the capture is made and what it differs in from
`torch.cuda.make_graphed_callables`: see there). Autocast must not cache its casts inside a graph: the caller
runs the step under `torch.autocast(..., cache_enabled=False)`."""

from __future__ import annotations

import torch

from ...common.cuda_graphs import CapturedCall, GraphedCall


class _Captured(CapturedCall):
    """The graphs of `unet(sample, timestep, hidden).sample` for fixed shapes; the embeddings keep whether they
    require grad (a trained text encoder learns through the backward graph)."""

    def __init__(self, unet, sample: torch.Tensor, timestep: torch.Tensor, hidden: torch.Tensor):
        def run(s, t, h):
            return unet(s, t, encoder_hidden_states=h).sample

        super().__init__(run, (sample, timestep, hidden), unet.parameters())


def _capture(unet, sample, timestep, hidden) -> _Captured:
    """The graphs for these shapes (a seam for tests, which cannot capture on the CPU)."""
    return _Captured(unet, sample, timestep, hidden)


class GraphedDenoiser(GraphedCall):
    """`denoiser(sample, timestep, hidden) -> unet(...).sample`, replayed from CUDA graphs for the shapes of its
    first call and run eagerly otherwise (`GraphedCall`)."""

    what = "the UNet"

    def __init__(self, unet: torch.nn.Module):
        super().__init__(lambda s, t, h: unet(s, t, encoder_hidden_states=h).sample, unet.parameters)
        self.unet = unet

    def capture(self, sample, timestep, hidden) -> CapturedCall:
        return _capture(self.unet, sample, timestep, hidden)
