"""Prompts to CLIP hidden states, the way diffusers' Stable Diffusion pipelines encode them."""

from __future__ import annotations

from typing import Sequence

import torch


def prompt_list(prompts: str | Sequence[str], n: int, name: str = "prompts") -> list[str]:
    """One prompt per item: a single string is repeated `n` times; a sequence must have length `n`."""
    if isinstance(prompts, str):
        return [prompts] * n
    prompts = list(prompts)
    if len(prompts) != n or not all(isinstance(p, str) for p in prompts):
        raise ValueError(f"{name} must be a string or {n} strings (one per image), got {prompts!r}")
    return prompts


def tokenize(components, prompts: Sequence[str]) -> torch.Tensor:
    """[B] strings -> [B, L] token ids on the components' device (L = tokenizer.model_max_length, 77), padded
    with EOS to L and truncated, as the SD pipelines do."""
    tok = components.tokenizer
    return tok(
        list(prompts), padding="max_length", max_length=tok.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(components.device)


@torch.no_grad()
def encode_prompts(components, prompts: Sequence[str]) -> torch.Tensor:
    """[B] strings -> [B, L, D] text-encoder hidden states (L = tokenizer.model_max_length, 77), in the
    components' dtype on their device. Always `components.text_encoder`, so after a full fine-tune that
    trained it (multimodal.train_full) every caller gets the fine-tuned embeddings."""
    return components.text_encoder(tokenize(components, prompts))[0].to(components.dtype)
