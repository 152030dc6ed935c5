"""Point-cloud deferred rendering (Customize-It-3D refine stage, DESIGN.md 5.2.4).

Each point carries RGB plus D learned features. Points are rasterised as small isotropic splats carrying
those 3 + D channels (the Gaussian rasteriser with `colors=[N, 3 + D]`, `sh_degree=None`: gsplat on CUDA,
the plain-torch reference on CPU) at full, 1/2 and 1/4 resolution, each splat `radius_px` pixels at its
level whatever its depth; a gated-convolution UNet (16/32/64 filters) reads the three feature images and
decodes RGB. The splatted RGB (holes filled with grey) is the decoder's starting point: its last layer is
zero-initialised, so before training the output is the splatted colour.

Level 1 / s splats a fixed random 1 / s^2 of the points (ours). The authors composite the 8 nearest points
per pixel at every level; with alpha compositing, all 700k points at 128 x 128 pile ~40 points onto each
pixel, and that level cost three times the full-resolution one (28 vs 8.6 ms forward + backward on an
H200). The subset keeps the points per pixel, and so the look of the splat image, the same at each level.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..splats import render_ref
from ..views.cameras import Cameras
from ..splats.render import gsplat_intrinsics, pick_backend

LEVELS = (1, 2, 4)
"""Downsampling factors of the three splat images."""


def splat_features(
    points: Tensor,  # [N, 3] world
    features: Tensor,  # [N, D]
    cameras: Cameras,  # C cameras
    radius_px: float = 2.0,
    opacity: float = 0.9,
    backend: str = "auto",
) -> tuple[Tensor, Tensor]:  # [C, H, W, D] alpha-composited features, [C, H, W] alpha
    """Isotropic splats of standard deviation radius_px / 2 pixels at each point's position in each camera,
    alpha-composited front to back (features premultiplied by alpha, black background).

    The footprint is the rasteriser's own screen-space term: 3D scales of zero and `eps2d` = (radius_px / 2)^2,
    the variance gsplat (and the reference) add to every projected covariance. So the size in pixels does not
    depend on depth, and all cameras go through one rasteriser call (a per-camera world scale would need one
    call per camera).
    """
    if points.ndim != 2 or points.shape[1] != 3 or features.ndim != 2 or features.shape[0] != points.shape[0]:
        raise ValueError(f"points must be [N, 3] and features [N, D], got {tuple(points.shape)} and {tuple(features.shape)}")
    if not radius_px > 0:
        raise ValueError(f"radius_px must be > 0, got {radius_px!r}")
    if not 0 < opacity < 1:
        raise ValueError(f"opacity must be in (0, 1), got {opacity!r}")
    dev = points.device
    chosen = pick_backend(dev, backend)
    n = points.shape[0]
    quats = torch.zeros(n, 4, device=dev)
    quats[:, 0] = 1
    return _splat(points, quats, torch.zeros(n, 3, device=dev), torch.full((n,), float(opacity), device=dev),
                  features, cameras.to(dev), radius_px, chosen)


def _splat(points: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, features: Tensor, cams: Cameras,
           radius_px: float, chosen: str) -> tuple[Tensor, Tensor]:
    args = dict(means=points, quats=quats, scales=scales, opacities=opacities, colors=features,
                viewmats=cams.viewmats, Ks=gsplat_intrinsics(cams.Ks), width=cams.width, height=cams.height,
                eps2d=(0.5 * radius_px) ** 2, sh_degree=None, render_mode="RGB")
    if chosen == "gsplat":
        from gsplat.rendering import rasterization

        f, a, _ = rasterization(**args, packed=False)
    else:
        f, a, _ = render_ref.rasterization(**args)
    return f, a[..., 0]


class GatedConv(nn.Module):
    """3x3 gated convolution (Yu et al., free-form inpainting): ELU(conv_f(x)) * sigmoid(conv_g(x))."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, 2 * cout, 3, stride=stride, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        f, g = self.conv(x).chunk(2, dim=1)
        return F.elu(f) * torch.sigmoid(g)


class DeferredDecoder(nn.Module):
    """Gated-convolution UNet over the splat images at full, 1/2 and 1/4 resolution -> RGB residual."""

    def __init__(self, in_channels: int, filters: tuple[int, int, int] = (16, 32, 64)):
        super().__init__()
        if len(filters) != 3 or not all(isinstance(f, int) and f > 0 for f in filters):
            raise ValueError(f"filters must be 3 positive integers, got {filters!r}")
        f0, f1, f2 = filters
        self.enc0 = nn.Sequential(GatedConv(in_channels, f0), GatedConv(f0, f0))
        self.enc1 = nn.Sequential(GatedConv(f0 + in_channels, f1), GatedConv(f1, f1))
        self.enc2 = nn.Sequential(GatedConv(f1 + in_channels, f2), GatedConv(f2, f2))
        self.dec1 = GatedConv(f2 + f1, f1)
        self.dec0 = GatedConv(f1 + f0, f0)
        self.out = nn.Conv2d(f0, 3, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, levels: list[Tensor]) -> Tensor:
        """levels: [C, in_channels, H / s, W / s] for s = 1, 2, 4 -> [C, 3, H, W]."""
        x0, x1, x2 = levels
        e0 = self.enc0(x0)
        e1 = self.enc1(torch.cat([F.interpolate(e0, size=x1.shape[-2:], mode="bilinear", align_corners=False), x1], 1))
        e2 = self.enc2(torch.cat([F.interpolate(e1, size=x2.shape[-2:], mode="bilinear", align_corners=False), x2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(e2, size=e1.shape[-2:], mode="bilinear", align_corners=False), e1], 1))
        d0 = self.dec0(torch.cat([F.interpolate(d1, size=e0.shape[-2:], mode="bilinear", align_corners=False), e0], 1))
        return self.out(d0)


class DeferredPoints(nn.Module):
    """Fixed points with learned RGB [N, 3] and features [N, D], and the decoder; `forward(cameras)` renders."""

    def __init__(self, points: Tensor, rgb: Tensor, features: int = 16, filters=(16, 32, 64),
                 radius_px: float = 2.0, opacity: float = 0.9, seed: int = 0, mixed_precision: bool = False):
        super().__init__()
        if not (isinstance(features, int) and features >= 0):
            raise ValueError(f"features must be an integer >= 0, got {features!r}")
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("points", points.float().contiguous())
        self.register_buffer("rgb_init", rgb.float().clone())
        self.rgb = nn.Parameter(rgb.float().clone())
        self.features = nn.Parameter(0.1 * torch.randn(points.shape[0], features, generator=g))
        self.decoder = DeferredDecoder(3 + features + 1, filters)
        self.radius_px, self.opacity = float(radius_px), float(opacity)
        if not 0 < self.opacity < 1:
            raise ValueError(f"opacity must be in (0, 1), got {opacity!r}")
        if not self.radius_px > 0:
            raise ValueError(f"radius_px must be > 0, got {radius_px!r}")
        self.mixed_precision = bool(mixed_precision)
        """On CUDA, run the decoder under bfloat16 autocast (the splats and the parameters stay fp32)."""
        n = points.shape[0]
        quats = torch.zeros(n, 4)
        quats[:, 0] = 1
        # the splats' fixed attributes, made once (not saved: they follow from the points and settings)
        self.register_buffer("_quats", quats, persistent=False)
        self.register_buffer("_scales", torch.zeros(n, 3), persistent=False)
        self.register_buffer("_opacities", torch.full((n,), self.opacity), persistent=False)
        # level 1 / s splats a fixed random 1 / s^2 of the points: the same points per pixel at every level
        order = torch.randperm(n, generator=g)
        for s in LEVELS[1:]:
            idx = order[: max(1, n // (s * s))].sort().values
            self.register_buffer(f"_subset{s}", idx, persistent=False)
            self.register_buffer(f"_points{s}", self.points[idx].clone(), persistent=False)

    def forward(self, cameras: Cameras, backend: str = "auto") -> tuple[Tensor, Tensor]:
        """-> (rgb [C, H, W, 3] decoded, unclamped; alpha [C, H, W] of the full-resolution splats)."""
        feats = torch.cat([self.rgb, self.features], dim=1)
        chosen = pick_backend(self.points.device, backend)
        cameras = cameras.to(self.points.device)
        levels, base, alpha0 = [], None, None
        for s in LEVELS:
            if s == 1:
                cams, pts, fs, quats, scales, opac = cameras, self.points, feats, self._quats, self._scales, self._opacities
            else:
                cams = cameras.resized(max(1, cameras.width // s), max(1, cameras.height // s))
                idx = getattr(self, f"_subset{s}")
                pts, fs, k = getattr(self, f"_points{s}"), feats[idx], len(idx)
                quats, scales, opac = self._quats[:k], self._scales[:k], self._opacities[:k]
            f, a = _splat(pts, quats, scales, opac, fs, cams, self.radius_px, chosen)
            if s == 1:
                base = f[..., :3] + 0.5 * (1 - a[..., None])  # splatted colour, holes grey
                alpha0 = a
            levels.append(torch.cat([f, a[..., None]], -1).permute(0, 3, 1, 2))
        if self.mixed_precision and chosen == "gsplat":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                residual = self.decoder(levels)
            residual = residual.float()
        else:
            residual = self.decoder(levels)
        return base + residual.permute(0, 2, 3, 1), alpha0

    def drift(self) -> Tensor:
        """[] mean squared change of the point colours from their projected values (colour-drift regulariser)."""
        return ((self.rgb - self.rgb_init) ** 2).mean()
