"""Customize-It-3D's stages (seed 003): the shading-aware coarse stage (score distillation on Gaussians), the
surface point cloud, point-cloud deferred rendering (splatted features + a gated-convolution decoder), its
refine loop and the img2img pseudo views."""
