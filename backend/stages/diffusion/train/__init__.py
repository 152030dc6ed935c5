"""Personalising a diffusion model on the subject: the one training loop (LoRA and full fine-tune), the
subject LoRA, multi-modal DreamBooth, prior preservation, augmentation, masks, the CUDA-graphed UNet."""
