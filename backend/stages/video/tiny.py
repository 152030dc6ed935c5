"""Wan text-to-video parts built in code: tiny ones for tests and `--models tiny` (diffusers' own Wan test
configs as the guide), Wan-2.1-1.3B-sized ones (random weights, the real cost) for bench/gpu_video.py. The
T5-family tokenizer is a real `T5Tokenizer` (Unigram, Metaspace) over a small in-code vocabulary. Nothing is
read from disk or the network."""

from __future__ import annotations

import string

import torch

TINY_LABEL = "tiny random-weight Wan models built in code: the video is noise"
WAN_1_3B_LABEL = "Wan-2.1-1.3B-sized random-weight models built in code: the real cost, but the video is noise"

TINY_TEXT_DIM = 32
TINY_MAX_TOKENS = 32
"""Prompt length of the tiny text encoder (Wan's is 512)."""


def tiny_vocab() -> list[tuple[str, float]]:
    """A character-level Unigram vocabulary: <pad> 0, </s> 1, <unk> 2, the word boundary, then every printable
    ASCII character alone and after the word boundary. Any ASCII prompt tokenizes (no <unk>)."""
    chars = [c for c in string.printable if not c.isspace()]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [(c, -3.0) for c in chars] + [("\u2581" + c, -2.5) for c in chars]
    return vocab


def tiny_tokenizer(model_max_length: int = TINY_MAX_TOKENS):
    """transformers' `T5Tokenizer` (the tokenizers backend) over `tiny_vocab`, passed as an object (no files)."""
    from transformers import T5Tokenizer

    return T5Tokenizer(vocab=tiny_vocab(), extra_ids=0, model_max_length=model_max_length)


def transformer_config(scale: str) -> dict:
    if scale == "tiny":  # diffusers tests/pipelines/wan/test_wan.py
        return dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
                    text_dim=TINY_TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
                    qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    # Wan-AI/Wan2.1-T2V-1.3B-Diffusers transformer/config.json
    return dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16, out_channels=16,
                text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


def vae_config(scale: str) -> dict:
    if scale == "tiny":  # diffusers tests: 8x spatial, 4x temporal, 16 latent channels like Wan's
        return dict(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    return dict(base_dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                temperal_downsample=[False, True, True])  # Wan2.1 vae/config.json (latents mean/std: the defaults)


def text_encoder_config(vocab_size: int):
    from transformers import UMT5Config

    return UMT5Config(vocab_size=vocab_size, d_model=TINY_TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                      relative_attention_num_buckets=8, relative_attention_max_distance=16, dropout_rate=0.0,
                      feed_forward_proj="gated-gelu", pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def build(scale: str, device: torch.device, dtype: torch.dtype, seed: int = 0) -> dict:
    """The parts by name (transformer, vae, text_encoder, tokenizer, scheduler), eval mode, frozen. `scale`
    "tiny" or "wan-1.3b"; the 1.3B-sized build has no text encoder (None): the benchmark feeds random prompt
    embeddings of UMT5-XXL's shape ([B, 512, 4096]), which only the one-off prompt encoding would change."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanTransformer3DModel

    if scale not in ("tiny", "wan-1.3b"):
        raise ValueError(f"scale must be 'tiny' or 'wan-1.3b', got {scale!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = WanTransformer3DModel(**transformer_config(scale))
        vae = AutoencoderKLWan(**vae_config(scale))
        text_encoder = tokenizer = None
        if scale == "tiny":
            from transformers import UMT5EncoderModel

            tokenizer = tiny_tokenizer()
            text_encoder = UMT5EncoderModel(text_encoder_config(len(tokenizer)))
    if scale == "tiny":
        scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    else:  # Wan 2.1's diffusers scheduler
        scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=3.0,
                                            num_train_timesteps=1000)
    for m in (transformer, vae, text_encoder):
        if m is not None:
            m.to(device=device).eval().requires_grad_(False)
            if dtype != torch.float32:
                m.to(dtype=dtype)
    return dict(transformer=transformer, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)
