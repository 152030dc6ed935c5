"""CUDA-only fast paths of the Gaussian fit: L1 + D-SSIM and Adam as Triton kernels (`fused_loss`, `adam_kernel`),
the loss and the update replayed from CUDA graphs (`fit_graph`), and the steps that run them (`step`: the fast
`splats.step.FitStep`s, and `make_step`, which picks a fit's step once: the plain one on the CPU). Each is checked
against the plain torch step of `splats.step` (Triton interpreter on the CPU where Triton exists, the GPU tests on
CUDA)."""
