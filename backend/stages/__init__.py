"""Stages: the steps the pipelines call, one package a concept. Nothing here imports a pipeline, the job
machinery or the server; torch is imported by the modules that need it, not by these packages.

- views/      cameras, meshes, mesh passes (ray casting), backward tracking (TIRE "Track"), reference alignment
- splats/     3D Gaussians, rendering (gsplat and the pure-torch reference), densification, the fit loop
  fast/       the CUDA-only fast paths of the fit (Triton loss and Adam, CUDA graphs), tested against splats/
- tire/       TIRE "Inpaint" (progressive rings, the classical fallback) and "Resplat" (consistency + fit)
- customize/  Customize-It-3D: coarse score distillation, point cloud, deferred rendering, refine, pseudo views
- texture/    baking views onto the artist's UVs
- quality/    metrics (one PSNR, one SSIM) and held-out evaluation
- diffusion/  Stable Diffusion components, prompts, score distillation; train/ (LoRA, full fine-tune,
              prior preservation), sample/ (inpainting, the personalised inpainter)
- common/     what several packages share: image conversion and resizing, the asynchronous loss log
"""
