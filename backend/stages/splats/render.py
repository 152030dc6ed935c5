"""One renderer interface for Gaussians: RGB, alpha and expected depth for a batch of cameras.

On CUDA it calls gsplat's fused `rasterization`; on the CPU the plain-torch reference
(`render_ref.rasterization`, same arguments and maths). gsplat is imported only on the CUDA path: it has
no CPU implementation and compiles its kernels at first use.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass, field

import torch
from torch import Tensor

from . import render_ref
from ..views.cameras import Cameras
from .gaussians import Gaussians


@dataclass
class RenderOutput:
    """Renders of N Gaussians into C cameras."""

    rgb: Tensor
    """[C, H, W, 3] colour, composited over `background` (premultiplied by alpha when there is none)."""
    alpha: Tensor
    """[C, H, W] accumulated opacity."""
    depth: Tensor | None
    """[C, H, W] expected camera z-depth, sum(w z) / sum(w) (0 where alpha is 0); None if not asked for."""
    meta: dict = field(default_factory=dict)
    """The rasteriser's intermediate results (means2d [C, N, 2], radii [C, N, 2], ...) for densification."""


def gsplat_intrinsics(Ks: Tensor) -> Tensor:
    """[C, 3, 3] our K (pixel centres at integer coordinates) -> gsplat's (pixel corners at integers)."""
    return Ks + _half_pixel(Ks.device, Ks.dtype)  # one kernel (a clone and two in-place adds were three)


@functools.lru_cache(maxsize=8)
def _half_pixel(device: torch.device, dtype: torch.dtype) -> Tensor:
    return torch.tensor([[0, 0, 0.5], [0, 0, 0.5], [0, 0, 0]], dtype=dtype).to(device)


def pick_backend(device: torch.device, backend: str = "auto") -> str:
    if backend not in ("auto", "gsplat", "reference"):
        raise ValueError(f"backend must be 'auto', 'gsplat' or 'reference', got {backend!r}")
    if backend == "auto":
        return "gsplat" if device.type == "cuda" else "reference"
    if backend == "gsplat" and device.type != "cuda":
        raise ValueError(f"backend 'gsplat' needs CUDA tensors, the Gaussians are on {device}")
    return backend


def render(
    gaussians: Gaussians,
    cameras: Cameras,
    background: Tensor | tuple[float, float, float] | None = None,
    sh_degree: int | None = None,
    backend: str = "auto",
    near_plane: float = 0.01,
    absgrad: bool = False,
    with_depth: bool = True,
    intrinsics: Tensor | None = None,
) -> RenderOutput:
    """Render `gaussians` into every camera of `cameras` (on the Gaussians' device).

    background: [3], [C, 3] or None. sh_degree: bands used (default: all the Gaussians carry).
    backend: "auto" (gsplat on CUDA, reference elsewhere), "gsplat", "reference". with_depth=False skips
    the depth channel (a fit does not need it; it saves a sixth of the rasteriser's backward pass).
    intrinsics: `gsplat_intrinsics(cameras.Ks)` made once by a caller that renders the same cameras often.
    """
    device = gaussians.device
    chosen = pick_backend(device, backend)
    degree = gaussians.sh_degree if sh_degree is None else sh_degree
    if not 0 <= degree <= gaussians.sh_degree:
        raise ValueError(f"sh_degree must be in [0, {gaussians.sh_degree}], got {sh_degree}")
    cams = cameras if cameras.device == device else cameras.to(device)
    C = len(cams)
    bg = None
    if background is not None:
        bg = torch.as_tensor(background, dtype=torch.float32, device=device)
        if bg.shape == (3,):
            bg = bg.expand(C, 3)
        if bg.shape != (C, 3):
            raise ValueError(f"background must have shape [3] or [C, 3] = [{C}, 3], got {tuple(bg.shape)}")
    args = dict(
        means=gaussians.means,
        quats=gaussians.quats,
        scales=gaussians.scales,
        opacities=gaussians.opacities,
        colors=gaussians.sh,
        viewmats=cams.viewmats,
        Ks=gsplat_intrinsics(cams.Ks) if intrinsics is None else intrinsics,
        width=cams.width,
        height=cams.height,
        near_plane=near_plane,
        sh_degree=degree,
        backgrounds=bg,
        render_mode="RGB+ED" if with_depth else "RGB",
    )
    if chosen == "gsplat":
        from gsplat.rendering import rasterization

        colors, alphas, meta = rasterization(**args, packed=False, absgrad=absgrad)
    else:
        colors, alphas, meta = render_ref.rasterization(**args)
    depth = colors[..., 3] if with_depth else None
    return RenderOutput(rgb=colors[..., :3], alpha=alphas[..., 0], depth=depth, meta=meta)
