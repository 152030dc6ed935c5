"""The UNet's forward and backward of a training step as CUDA graphs (CUDA only): `GraphedDenoiser` over
`common.cuda_graphs` (why graphs, how the capture is made and what it differs in from
`torch.cuda.make_graphed_callables`: see there). Autocast must not cache its casts inside a graph: the caller
runs the step under `torch.autocast(..., cache_enabled=False)`."""

from __future__ import annotations

import warnings

import torch

from ...common.cuda_graphs import CapturedCall, replay


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


class GraphedDenoiser:
    """`denoiser(sample, timestep, hidden) -> unet(...).sample`, replayed from CUDA graphs for the shapes of its
    first call (captured then, after warm-up passes) and run eagerly for any other shapes. A UNet that cannot
    be captured (a module that synchronises with the host, say) runs eagerly, with a warning that says why:
    slower, the same result. `outcome()` says afterwards whether every call was replayed, for the training
    result and report.json."""

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet
        self.captured: _Captured | None = None
        self.key = None
        self.failed: str | None = None
        """Why the capture failed, if it did."""
        self.replays = 0
        """Calls replayed from the graphs."""
        self.eager_calls = 0
        """Calls run eagerly (capture failed, or shapes other than the captured ones)."""

    @staticmethod
    def _key(*tensors: torch.Tensor) -> tuple:
        return tuple((t.shape, t.dtype, t.requires_grad) for t in tensors) + (torch.is_autocast_enabled("cuda"),)

    def __call__(self, sample: torch.Tensor, timestep: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        key = self._key(sample, timestep, hidden)
        if self.captured is None and self.failed is None:
            try:
                self.captured = _capture(self.unet, sample, timestep, hidden)
                self.key = key
            except RuntimeError as e:
                self.failed = f"{type(e).__name__}: {e}"
                warnings.warn(f"the UNet could not be captured in a CUDA graph, training it eagerly: {self.failed}",
                              RuntimeWarning, stacklevel=2)
        if self.captured is None or key != self.key:
            self.eager_calls += 1
            return self.unet(sample, timestep, encoder_hidden_states=hidden).sample
        self.replays += 1
        return replay(self.captured, sample, timestep, hidden)

    def outcome(self) -> tuple[bool, str]:
        """(every call was replayed from the graphs, why not: "" when they were)."""
        if self.failed is not None:
            return False, f"capture failed, trained eagerly: {self.failed}"
        if self.replays == 0:
            return False, "never called"
        if self.eager_calls:
            return False, (f"{self.eager_calls} of {self.eager_calls + self.replays} UNet calls ran eagerly "
                           "(shapes other than the captured ones)")
        return True, ""
