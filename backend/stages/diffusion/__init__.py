"""Diffusion toolkit shared by the pipelines: Stable Diffusion components by role from local folders (or tiny
ones built in code), prompt encoding, step callbacks, host-to-device uploads, score distillation (`sds`).

Subpackages: `train/` personalises a model on the subject (the one training loop for LoRA and full
fine-tune, multi-modal DreamBooth, prior preservation), `sample/` draws from it (inpainting, the personalised
inpainter). diffusers, transformers and peft are imported by the functions that need them.
"""
