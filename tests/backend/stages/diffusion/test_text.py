"""The in-code byte-level tokenizer and prompt encoding shapes."""

from __future__ import annotations

import pytest
import torch

from likeness3d.backend.stages.diffusion.text import encode_prompts, prompt_list
from likeness3d.backend.stages.diffusion.tiny import byte_symbols, tiny_tokenizer, tiny_vocab


def test_byte_symbols_cover_every_byte_once():
    symbols = byte_symbols()
    assert len(symbols) == len(set(symbols)) == 256
    assert symbols[ord("a")] == "a" and not any(s.isspace() for s in symbols)


def test_vocab_and_tokenizer():
    vocab, merges = tiny_vocab()
    tok = tiny_tokenizer()
    assert len(vocab) == len(tok) == 514 and merges == []
    assert tok.model_max_length == 77
    enc = tok(["a photo of sks dog", "ü"], padding="max_length", max_length=77, truncation=True, return_tensors="pt")
    ids = enc.input_ids
    assert ids.shape == (2, 77) and ids.max() < 514
    assert (ids[:, 0] == tok.bos_token_id).all()
    # padded with EOS, as SD's CLIP tokenizers are
    assert (ids[0, 17:] == tok.eos_token_id).all()
    assert tok.decode(ids[0], skip_special_tokens=True) == "a photo of sks dog"
    assert tok.decode(ids[1], skip_special_tokens=True) == "ü"  # two UTF-8 bytes, two tokens
    assert ids[1, 3] == tok.eos_token_id


def test_encode_prompts_shape(inpaint_components):
    c = inpaint_components
    h = encode_prompts(c, ["a photo of sks cat", ""])
    assert h.shape == (2, 77, c.text_encoder.config.hidden_size) and h.dtype == torch.float32
    assert torch.isfinite(h).all() and not torch.allclose(h[0], h[1])
    # the same prompt gives the same states, whatever else is in the batch (to float rounding: CPU kernels may
    # block a batch of 1 and of 2 differently); another prompt gives other states
    one, two = encode_prompts(c, ["x"])[0], encode_prompts(c, ["x", "y"])
    torch.testing.assert_close(one, two[0], rtol=1e-5, atol=1e-5)
    assert (two[0] - two[1]).abs().max() > 1e-2


def test_prompt_list():
    assert prompt_list("p", 3) == ["p", "p", "p"]
    assert prompt_list(["a", "b"], 2) == ["a", "b"]
    with pytest.raises(ValueError, match=r"prompts must be a string or 3 strings"):
        prompt_list(["a", "b"], 3)
