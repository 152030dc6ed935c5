"""Sampling from a (personalised) diffusion model: mask-respecting inpainting at a given strength and the
personalised inpainter TIRE calls."""
