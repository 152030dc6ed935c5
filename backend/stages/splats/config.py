"""Settings of the Gaussian fit (no torch: pipeline configs hold them and the server validates those)."""

from __future__ import annotations

from dataclasses import dataclass

from ...config import number, require, whole


@dataclass(frozen=True)
class FitConfig:
    """Gaussian fitting; learning rates and densification defaults are 3DGS's (gsplat simple_trainer)."""

    steps: int = 3000
    """Optimisation steps (3DGS trains 30k on scenes; an object initialised on its mesh settles sooner)."""
    batch_size: int = 1
    """Cameras per step."""
    ssim_weight: float = 0.2
    """lambda in (1 - lambda) L1 + lambda D-SSIM (3DGS)."""
    alpha_weight: float = 0.1
    """Weight of the L1 between rendered and target alpha, when the targets have an alpha channel."""
    random_background: bool = True
    """With RGBA targets, composite each step over a random colour so the fit cannot hide in the background."""
    lr_means: float = 1e-3
    """Times the scene scale, decayed exponentially to 1% over the fit. 3DGS uses 1.6e-4 over 30k steps;
    our fits start on the mesh surface and run a few thousand steps, and at 1.6e-4 the Gaussians on the
    silhouettes cannot move inward in time to undo the 0.3 px^2 blur's bloat (measured at 64 px: 21 dB
    after 300 steps, against 30 dB at 1e-3)."""
    lr_scales: float = 5e-3
    lr_quats: float = 1e-3
    lr_opacities: float = 5e-2
    lr_sh0: float = 2.5e-3
    lr_shN: float = 2.5e-3 / 20
    sh_degree_interval: int = 1000
    """One more SH band every this many steps, up to the Gaussians' degree (3DGS)."""
    strategy: str = "default"
    """"default" (3DGS densify/prune) or "mcmc" (Kheradmand et al. 2024; CUDA only)."""
    refine_start: int = 500
    refine_stop: int = 15_000
    refine_every: int = 100
    reset_every: int = 3000
    grow_grad2d: float = 0.0002
    grow_scale3d: float = 0.01
    prune_opa: float = 0.005
    prune_scale3d: float = 0.1
    cap_max: int = 1_000_000
    """Most Gaussians the set may grow to (MCMC's budget; also bounds the CPU strategy)."""
    fused_loss: bool = True
    """CUDA only, where Triton is installed (it comes with CUDA builds of torch): L1 + D-SSIM and its gradient
    in four Triton kernels (`fast.fused_loss`), the same loss to float32 rounding; otherwise the torch loss."""
    cuda_graph: bool = True
    """CUDA only: replay the loss and its gradient w.r.t. the render as one CUDA graph (`fast.fit_graph`). At
    512 px the loop is bound by host time per launched op, and the loss is most of the ops."""
    update: str = "graph"
    """How the parameters are updated on CUDA. "graph": the default strategy's per-step sums and Adam
    (`fast.adam_kernel`, a Triton kernel per parameter) on a second CUDA graph, captured again whenever the
    strategy replaces the set (`fast.fit_graph.GraphedUpdate`; needs `cuda_graph`); "fused": torch's fused
    Adam kernel per parameter, launched one by one; "foreach": torch's multi-tensor Adam maths (`adam_step`,
    what the CPU and MCMC use). A fit's loss and update paths are chosen once from these fields and the
    device (`fast.step.choose_paths`)."""
    compile_loss: bool = False
    """CUDA only, for the torch loss (not with `fused_loss`): fuse it with torch.compile (inside the graph
    when both are on); the price is a compile per image size."""
    mcmc_opacity_reg: float = 0.01
    mcmc_scale_reg: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        require(
            self,
            (whole(self.steps, 1), "steps", "must be an integer >= 1"),
            (whole(self.batch_size, 1), "batch_size", "must be an integer >= 1"),
            (number(self.ssim_weight, 0, 1), "ssim_weight", "must be in [0, 1]"),
            (number(self.alpha_weight, 0), "alpha_weight", "must be >= 0"),
            (self.strategy in ("default", "mcmc"), "strategy", "must be 'default' or 'mcmc'"),
            (self.update in ("graph", "fused", "foreach"), "update", "must be 'graph', 'fused' or 'foreach'"),
            (whole(self.sh_degree_interval, 1), "sh_degree_interval", "must be an integer >= 1"),
            (whole(self.refine_every, 1), "refine_every", "must be an integer >= 1"),
            (whole(self.reset_every, 1), "reset_every", "must be an integer >= 1"),
            (whole(self.cap_max, 1), "cap_max", "must be an integer >= 1"),
        )
