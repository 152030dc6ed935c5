"""Stable Diffusion components built in code: tiny ones for tests and `--models tiny`, SD-2-sized ones
(random weights, the real cost per step) for the GPU benchmarks. Nothing is read from disk or the network."""

from __future__ import annotations

from pathlib import Path

import torch

# Roles the factory knows: `inpaint` gets a 9-channel UNet (noisy latents 4 + mask 1 + masked-image latents
# 4, as SD inpainting models take them), `base` a plain 4-channel text-to-image UNet.
UNET_IN_CHANNELS = {"inpaint": 9, "base": 4}

TINY_LABEL = "tiny random-weight models built in code: the diffusion output is noise"
SD2_SIZED_LABEL = "SD-2-sized random-weight models built in code: the real cost, but the output is noise"

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def byte_symbols() -> list[str]:
    """The 256 printable characters that stand for the 256 byte values in byte-level BPE (GPT-2/CLIP).

    Printable Latin-1 bytes stand for themselves; the others (controls, space, ...) are mapped in order to
    code points from 256 upwards, so every byte has a visible, whitespace-free symbol.
    """
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    symbols, shifted = [], 0
    for b in range(256):
        if b in printable:
            symbols.append(chr(b))
        else:
            symbols.append(chr(256 + shifted))
            shifted += 1
    return symbols


def tiny_vocab() -> tuple[dict[str, int], list[str]]:
    """A byte-level CLIP vocabulary with no merges: every byte, every byte ending a word (`</w>`), BOS, EOS.

    Returns (vocab, merges) for `CLIPTokenizer(vocab=..., merges=...)`; 514 tokens, BOS 512, EOS 513.
    Any text tokenizes (one token per byte), so prompts like "a photo of sks cat" work unchanged.
    """
    symbols = byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": 256 + i for i, s in enumerate(symbols)})
    vocab[BOS] = 512
    vocab[EOS] = 513
    return vocab, []


def tiny_tokenizer(model_max_length: int = 77):
    """A real `CLIPTokenizer` over the in-code byte vocabulary (transformers 5: `vocab=`/`merges=`, not files)."""
    from transformers import CLIPTokenizer

    vocab, merges = tiny_vocab()
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)


def _unet_config(role: str, scale: str) -> dict:
    if role not in UNET_IN_CHANNELS:
        raise ValueError(f"role must be one of {sorted(UNET_IN_CHANNELS)}, got {role!r}")
    if scale == "tiny":
        # DESIGN.md section 8: block_out_channels (32, 64), one cross-attention level.
        return dict(
            sample_size=32,
            in_channels=UNET_IN_CHANNELS[role],
            out_channels=4,
            block_out_channels=(32, 64),
            layers_per_block=1,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=(2, 4),
            norm_num_groups=32,
            use_linear_projection=True,
        )
    # stabilityai/stable-diffusion-2-inpainting (and -2-base with 4 input channels): unet/config.json.
    return dict(
        sample_size=64,
        in_channels=UNET_IN_CHANNELS[role],
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        norm_num_groups=32,
        use_linear_projection=True,
        flip_sin_to_cos=True,
        freq_shift=0,
        downsample_padding=1,
        act_fn="silu",
        norm_eps=1e-5,
    )


def _vae_config(scale: str) -> dict:
    if scale == "tiny":
        # Two levels: latents at 1/2 resolution (SD's are at 1/8), 4 latent channels like SD.
        return dict(
            in_channels=3,
            out_channels=3,
            block_out_channels=(32, 64),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            layers_per_block=1,
            norm_num_groups=32,
            sample_size=64,
        )
    # stable-diffusion-2-inpainting vae/config.json
    return dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )


def _text_config(scale: str, vocab_size: int, bos: int, eos: int):
    from transformers import CLIPTextConfig

    common = dict(vocab_size=vocab_size, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos, max_position_embeddings=77)
    if scale == "tiny":
        return CLIPTextConfig(hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2, **common)
    # OpenCLIP ViT-H/14 text tower as SD 2 ships it (23 layers: SD 2 uses the penultimate layer).
    # The vocabulary is CLIP's (49408) so the embedding table has the real size; the byte tokenizer uses
    # only its first 514 rows.
    return CLIPTextConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_attention_heads=16,
        num_hidden_layers=23,
        hidden_act="gelu",
        projection_dim=512,
        **{**common, "vocab_size": max(vocab_size, 49408)},
    )


def _scheduler(kind: str):
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

    # SD 2's training schedule: scaled-linear betas 0.00085 -> 0.012 over 1000 steps, epsilon prediction.
    common = dict(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
        prediction_type="epsilon", steps_offset=1,
    )
    if kind == "ddim":
        return DDIMScheduler(clip_sample=False, set_alpha_to_one=False, **common)
    if kind == "dpm":
        return DPMSolverMultistepScheduler(**common)
    raise ValueError(f"scheduler must be 'ddim' or 'dpm', got {kind!r}")


def build_modules(role: str = "inpaint", *, scale: str = "tiny", scheduler: str = "ddim", seed: int = 0) -> dict:
    """The five SD components with random weights: {unet, vae, text_encoder, tokenizer, scheduler}.

    role: `inpaint` (9-channel UNet) or `base` (4-channel). scale: `tiny` (DESIGN.md section 8, ~1 M
    parameters, 32-64 px) or `sd2` (SD 2 inpainting/base sizes: UNet 866 M, VAE 84 M, text encoder 340 M).
    Modules are fp32 on the current default device (use `with torch.device("cuda"):` to build on a GPU).
    """
    if scale not in ("tiny", "sd2"):
        raise ValueError(f"scale must be 'tiny' or 'sd2', got {scale!r}")
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    tokenizer = tiny_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**_unet_config(role, scale))
    vae = AutoencoderKL(**_vae_config(scale))
    text_encoder = CLIPTextModel(
        _text_config(scale, len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    )
    for m in (unet, vae, text_encoder):
        m.eval().requires_grad_(False)
    return dict(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=_scheduler(scheduler))


def save_tiny(folder: str | Path, role: str = "inpaint", *, seed: int = 0, scale: str = "tiny") -> Path:
    """Write random-weight models (`build_modules` at `scale`) in diffusers layout (model_index.json, unet/,
    vae/, text_encoder/, tokenizer/, scheduler/), so tests and benchmarks exercise the real local-folder
    loader. Returns the folder."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    folder = Path(folder)
    cls = StableDiffusionInpaintPipeline if role == "inpaint" else StableDiffusionPipeline
    pipe = cls(**build_modules(role, scale=scale, seed=seed), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder
