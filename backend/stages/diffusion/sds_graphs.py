"""Score distillation on CUDA graphs: the two big calls of an SDS step replayed instead of launched.

An SDS step at 512 px with an SD-2-sized model is bound by the host on an H200: the UNet's guided forward at
batch 2 (18 ms) and the VAE encoder's forward and backward (24 ms) launch about a thousand kernels each from
Python, and the GPU waits. The shapes never change during a stage (one novel view a step), so both are
captured once, at the first step, and replayed: the encoder as a differentiable call (`GraphedCall`: forward
and backward graphs, the rendered image's gradient from the backward one), the UNet as a no-grad forward
(`GraphedForward`). Everything else of the step (noise, timestep, guidance, weighting) stays eager; the
timestep enters the UNet's graph as a tensor, so one graph serves every timestep.
"""

from __future__ import annotations

import torch

from ..common.cuda_graphs import GraphedCall, GraphedForward
from .config import SDSConfig
from .sds import encode_latents


class SDSGraphs:
    """The captured calls of one stage's SDS (one components object, one config, one image shape)."""

    def __init__(self, components, config: SDSConfig):
        self.components, self.config = components, config
        dev = torch.device(components.device)
        self.enabled = bool(config.cuda_graph and dev.type == "cuda" and torch.cuda.is_available())
        self.encoder = GraphedCall(lambda x: encode_latents(components, x, config), params=lambda: ())
        self.encoder.what = "the SDS encoder"
        unet = components.unet
        self.unet = GraphedForward(lambda x, t, e: unet(x, t, encoder_hidden_states=e).sample, "the SDS UNet")

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """encode_latents(images), from the graphs where an image's gradient is wanted."""
        if not self.enabled or not images.requires_grad:
            return encode_latents(self.components, images, self.config)
        return self.encoder(images)

    def denoise(self, model_in: torch.Tensor, timesteps: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
        """The UNet's noise prediction for the guided batch, without gradients."""
        if not self.enabled:
            with torch.no_grad():
                return self.components.unet(model_in, timesteps, encoder_hidden_states=embeds).sample
        return self.unet(model_in, timesteps, embeds)

    def report(self) -> dict:
        """report.json's `cuda_graphs` (every step replayed) and `graph_note` (why not)."""
        if not self.config.cuda_graph:
            return {"cuda_graphs": False, "graph_note": "off (sds.cuda_graph = false)"}
        if not self.enabled:
            return {"cuda_graphs": False, "graph_note": "not on CUDA: eager"}
        (ok_e, why_e), (ok_u, why_u) = self.encoder.outcome(), self.unet.outcome()
        notes = [f"{what}: {why}" for what, why in (("encoder", why_e), ("UNet", why_u)) if why]
        return {"cuda_graphs": ok_e and ok_u, "graph_note": "; ".join(notes)}
