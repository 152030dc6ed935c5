"""Wan's 3D rotary embedding with explicit temporal indices, so conditioning views get frame indices of their own.

`WanRotaryPosEmbed` indexes frames internally (0 .. F-1 for the F latent frames it is shown). 3Dapter's
conditioning tokens join the generated ones in self-attention, and conditioning view k must carry a temporal
index distinct from every generated frame's (3DreamBooth: "distinct, sequential temporal indices"), as
diffusers' FramePack HunyuanVideo gives its clean latents positions of their own. `FrameIndexedRope` replaces
the transformer's rotary module (`install`): shown a plain latent it computes exactly what Wan's module does;
asked for `frames(indices, h, w)` it computes the embedding of tokens at those temporal indices."""

from __future__ import annotations

import torch
from torch import nn


class FrameIndexedRope(nn.Module):
    """Drop-in for `WanRotaryPosEmbed`, sharing its frequency tables (no new parameters, nothing persistent)."""

    def __init__(self, rope: nn.Module):
        super().__init__()
        self.attention_head_dim = rope.attention_head_dim
        self.patch_size = rope.patch_size
        self.max_seq_len = rope.max_seq_len
        self.t_dim, self.h_dim, self.w_dim = rope.t_dim, rope.h_dim, rope.w_dim
        self.register_buffer("freqs_cos", rope.freqs_cos, persistent=False)
        self.register_buffer("freqs_sin", rope.freqs_sin, persistent=False)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Wan's own behaviour: [B, C, F, H, W] latents -> (cos, sin), each [1, F' h' w', 1, head_dim]."""
        _, _, f, h, w = hidden_states.shape
        p_t, p_h, p_w = self.patch_size
        return self.frames(torch.arange(f // p_t), h // p_h, w // p_w)

    def frames(self, frame_indices: torch.Tensor, pph: int, ppw: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) for tokens on a pph x ppw patch grid at each temporal index of `frame_indices` ([F] ints),
        in the token order of the transformer (frame, row, column); each [1, F pph ppw, 1, head_dim]."""
        idx = torch.as_tensor(frame_indices, dtype=torch.long, device=self.freqs_cos.device).reshape(-1)
        if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= self.max_seq_len):
            raise ValueError(f"temporal indices must lie in [0, {self.max_seq_len}) (the model's rope_max_seq_len), "
                             f"got {idx.tolist()}")
        if max(pph, ppw) > self.max_seq_len:
            raise ValueError(f"a {pph} x {ppw} patch grid exceeds the model's rope_max_seq_len {self.max_seq_len}")
        out = []
        for table in (self.freqs_cos, self.freqs_sin):
            t, hh, ww = table.split([self.t_dim, self.h_dim, self.w_dim], dim=1)
            nf = len(idx)
            ft = t[idx].view(nf, 1, 1, -1).expand(nf, pph, ppw, -1)
            fh = hh[:pph].view(1, pph, 1, -1).expand(nf, pph, ppw, -1)
            fw = ww[:ppw].view(1, 1, ppw, -1).expand(nf, pph, ppw, -1)
            out.append(torch.cat([ft, fh, fw], dim=-1).reshape(1, nf * pph * ppw, 1, -1))
        return out[0], out[1]


def install(transformer) -> FrameIndexedRope:
    """Replace `transformer.rope` by a `FrameIndexedRope` over the same tables (idempotent); returns it."""
    if not isinstance(transformer.rope, FrameIndexedRope):
        transformer.rope = FrameIndexedRope(transformer.rope)
    return transformer.rope


def conditioning_indices(num_generated: int, num_views: int) -> torch.Tensor:
    """Temporal indices of the conditioning views: sequential after the generated latent frames (view k at
    F + k), so every view differs from every other and from every generated frame."""
    return torch.arange(num_generated, num_generated + num_views)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Wan's `apply_rotary_emb` (interleaved pairs) on [B, L, heads, head_dim]."""
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x1 * s + x2 * c
    return out.type_as(x)
