"""The UNet's forward and backward of a training step as CUDA graphs (CUDA only): `GraphedDenoiser` over
`common.cuda_graphs` (why graphs, how the capture is made and what it differs in from
`torch.cuda.make_graphed_callables`: see there). Autocast must not cache its casts inside a graph: the caller
runs the step under `torch.autocast(..., cache_enabled=False)`."""

from __future__ import annotations

import torch

from ...common.cuda_graphs import CapturedCall, GraphedCall, GraphedForward


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
    first call and run eagerly otherwise (`GraphedCall`). With `vae`, also `encode_moments(images)`: the frozen
    VAE encoder's posterior mean and std ([2, B, 4, h, w]) of each step's images, without gradients, replayed
    from one more graph where the VAE is on CUDA (its ~300 launches a step are otherwise host time too)."""

    what = "the UNet"

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module | None = None):
        super().__init__(lambda s, t, h: unet(s, t, encoder_hidden_states=h).sample, unet.parameters)
        self.unet = unet
        self.encoder = None
        if vae is not None and next(vae.parameters()).device.type == "cuda":
            def moments(x):
                dist = vae.encode(x).latent_dist
                return torch.stack([dist.mean, dist.std])

            self.encoder = GraphedForward(moments, "the VAE encoder")

    def encode_moments(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder(images)

    def outcome(self) -> tuple[bool, str]:
        ok, why = super().outcome()
        if self.encoder is None:
            return ok, why
        ok_e, why_e = self.encoder.outcome()
        return ok and ok_e, "; ".join(w for w in (why, f"VAE encoder: {why_e}" if why_e else "") if w)

    def capture(self, sample, timestep, hidden) -> CapturedCall:
        return _capture(self.unet, sample, timestep, hidden)
