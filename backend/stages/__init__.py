"""Stages shared by pipelines: cameras, rendering, tracking, inpainting, fitting, baking."""
