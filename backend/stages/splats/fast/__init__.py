"""CUDA-only fast paths of the Gaussian fit: L1 + D-SSIM and Adam as Triton kernels, the loss and the update
replayed from CUDA graphs. Each is checked against the plain torch path of `splats.fit` (Triton interpreter on
the CPU where Triton exists, the GPU tests on CUDA)."""
