"""Diffusion toolkit shared by the pipelines: SD models by role from local folders (or tiny ones built in
code), subject LoRA training in diffusers' format, and mask-respecting inpainting at a given strength.

Modules: models (loading by role), tiny (models built in code), text (prompt encoding), images (array
checks), augment (flips and rotations), masks (random inpainting masks, masked loss), lora (training, save,
remove), inpaint (the pipeline and the batch call). Importing this package imports torch; diffusers,
transformers and peft are imported by the functions that need them.
"""
