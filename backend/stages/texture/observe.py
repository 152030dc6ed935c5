"""What the references say about each texel (item "what is right stays right").

Per reference photo, at the photo's own resolution: the initial asset is rendered (unlit, antialiased) from
the photo's camera, the photo's lighting is removed (`lighting`), and the two are compared after a slight
blur: where they differ by less than the photo's noise allows, the initial asset agrees with the reference.
Per texel: project its surface point into every photo that sees it (depth test on the footprint, view angle),
sample the corrected photo there (bilinear, the photo's own pixels, never a resampled target view) and the
agreement map. The texel's observation blends the photos by their resolution on the surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..common.images import float_tensor
from ..views.cameras import Cameras
from ..views.mesh_passes import Raycaster, mesh_rgba
from ..views.visibility import sample_bilinear, seen_by
from .agreement import formed_render, local_tolerance, persistent, persistent_area
from .formation import Formation, cast_formation, estimate_formation
from .config import FidelityConfig
from .lighting import Lighting, estimate_lighting, remove_lighting
from .texels import TexelSurface


@dataclass
class PreparedReference:
    """A reference photo made comparable with the texture: lighting removed, agreement with the asset mapped."""

    name: str
    image: Tensor
    """[H, W, 4] the photo with its lighting removed (straight alpha)."""
    camera: Cameras
    depth: Tensor
    """[H, W] the asset's depth from the photo's camera (0 = background)."""
    mask: Tensor
    """[H, W] bool: the asset covers the pixel."""
    normals: Tensor
    """[H, W, 3] the asset's smooth normals seen from the photo."""
    inner: Tensor
    """[H, W] bool: photo and render both show the subject, a pixel away from its silhouette (where the
    difference is known; texels whose footprint leaves it are not observed by this photo)."""
    difference: Tensor
    """[H, W] mean absolute RGB difference of the corrected photo and the initial asset's render (blurred)."""
    noise: float
    """The photo's noise sigma, measured on the difference's high frequencies."""
    threshold: float
    """Differences below this are agreement (max(agree_floor, agree_sigmas x noise))."""
    lighting: Lighting
    disagree: Tensor
    """[H, W] in [0, 1]: how far the difference exceeds the local tolerance, kept only where it persists over
    an area (`persistent`): 0 = the initial asset agrees with the photo there."""
    formation: Formation | None = None
    """The initial asset's rays through the photo's pixels and the pixel filter the photo was found formed with
    (None: the mesh has no texture, or a fixed filter other than these was asked for)."""

    def report(self) -> dict:
        out = {"name": self.name, "lighting": self.lighting.report(), "noise": round(self.noise, 5),
               "agree_threshold": round(self.threshold, 5)}
        if self.formation is not None:
            out["pixel_filter"] = self.formation.report()
        return out


def _blur(img: Tensor, weight: Tensor, sigma: float) -> Tensor:
    """Normalised Gaussian blur of [H, W, D] over the pixels where weight [H, W] > 0."""
    if sigma <= 0:
        return img
    r = max(1, int(round(3 * sigma)))
    # on a GPU in float64: cuDNN would convolve float32 in TF32 (10-bit mantissa), and the agreement thresholds
    # these blurs feed must decide as on the CPU
    dtype = torch.float64 if img.device.type == "cuda" else torch.float32
    x = torch.arange(-r, r + 1, dtype=torch.float32).to(img.device, dtype)
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    D = img.shape[-1]
    v = (img * weight[..., None]).permute(2, 0, 1)[None].to(dtype)
    w = weight[None, None].to(dtype)
    kx, ky = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def sep(t: Tensor, ch: int) -> Tensor:
        t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="constant"), kx.expand(ch, 1, 1, -1), groups=ch)
        return F.conv2d(F.pad(t, (0, 0, r, r), mode="constant"), ky.expand(ch, 1, -1, 1), groups=ch)

    out = sep(v, D) / sep(w, 1).clamp_min(1e-6)
    return out[0].permute(1, 2, 0).to(img.dtype)


def prepare_reference(ref, caster: Raycaster, config: FidelityConfig = FidelityConfig()) -> PreparedReference:
    """One protocol `Reference` against the initial asset (`caster`'s mesh, with its texture). The lighting fit
    runs on the host (numpy); the comparison of photo and render (blurs, shifts, tolerances, noise, the
    disagreement's opening) on the job's device (`caster.spec.device`). The fields are on the CPU."""
    dev = torch.device(caster.spec.device)
    cam = Cameras.from_protocol([ref.camera])
    passes = caster.passes(cam, normals="smooth")
    photo = float_tensor(ref.image)
    formation, texture = None, None
    if caster.texture is not None:
        # the initial asset formed as the photo was: its rays cast once, 4 x 4 a pixel, filtered per candidate
        formation, texture = cast_formation(caster, cam, 4), torch.as_tensor(caster.texture, dtype=torch.float32)
        formation.filter_px = max(0.0, config.render_filter_px)
        render = formation.render(texture, 0.0 if config.render_filter_px < 0 else None)
    else:
        render = formed_render(caster, cam, 4, config.render_filter_px) if config.render_filter_px > 0 else mesh_rgba(caster, cam, supersample=2)[0]
    mask, normals = passes.mask[0], passes.normal[0]
    # both show the subject, away from its silhouette (mixed pixels there)
    inner = (-F.max_pool2d(-(mask & (photo[..., 3] >= 0.5) & (render[..., 3] >= 0.99)).float()[None, None], 3, 1, 1))[0, 0] > 0
    light = estimate_lighting(photo[..., :3], render[..., :3], inner, normals, config.lighting_min_change,
                              seed=config.seed) if config.lighting else Lighting(np.ones(3), np.zeros(9), 0, 0.0, False)
    image = remove_lighting(photo, normals, mask, light)
    if formation is not None and config.render_filter_px < 0:
        render = estimate_formation(formation, texture, image[..., :3], inner)
    diff, noise, threshold, disagree = _compare(image.to(dev), render.to(dev), inner.to(dev), config)
    return PreparedReference(ref.name, image, cam, passes.depth[0], mask, normals, inner, diff, noise, threshold, light,
                             disagree, formation)


def _compare(image: Tensor, render: Tensor, inner: Tensor, config: FidelityConfig) -> tuple[Tensor, float, float, Tensor]:
    """The lit-corrected photo [H, W, 4] against the render [H, W, 4] where `inner` [H, W] (one device) ->
    (difference [H, W], noise, threshold, disagreement [H, W]); the maps on the CPU."""
    weight = inner.float()
    diff = difference(image, render, inner, config.compare_blur_px)
    tolerance = local_tolerance(_blur(render[..., :3], weight, config.compare_blur_px), inner,
                                config.agree_edge).to(diff.device)
    # noise: the high frequencies of the signed difference, robustly (edges and disagreements are outliers)
    signed = (image[..., :3] - render[..., :3]).mean(-1, keepdim=True)
    high = (signed - _blur(signed, weight, 2.0))[..., 0][inner]
    noise = float(1.4826 * (high - high.median()).abs().median()) if len(high) > 10 else 0.0
    threshold = max(config.agree_floor, config.agree_sigmas * noise)
    opened = persistent(((diff - threshold - tolerance) / threshold).clamp(0, 1), config.agree_area_px)
    disagree = persistent_area(opened.cpu(), config.agree_min_pixels)
    return diff.cpu(), noise, threshold, disagree


def difference(image: Tensor, render: Tensor, inner: Tensor, blur_px: float) -> Tensor:
    """[H, W] mean absolute RGB difference of a (corrected) photo and a render [H, W, 3|4], both blurred by
    `blur_px` over the `inner` pixels [H, W]; near the silhouette (mixed pixels) the nearest measured pixels'
    difference, and 1 where none is near (the photo's colour is taken there)."""
    weight = inner.float()
    a = _blur(image[..., :3], weight, blur_px)
    b = _blur(render[..., :3], weight, blur_px)
    # the smallest difference over one-pixel shifts: a renderer's half-pixel offset or another antialiasing
    # at a sharp edge is not a disagreement; a wrong patch wider than a pixel still is
    bp = F.pad(b.permute(2, 0, 1)[None], (1, 1, 1, 1), mode="replicate")[0].permute(1, 2, 0)
    H, W = a.shape[:2]
    diff = torch.stack([(a - bp[dy:dy + H, dx:dx + W]).abs().mean(-1) for dy in range(3) for dx in range(3)]).min(0).values
    diff = diff * inner
    reach = _blur(weight[..., None], torch.ones_like(weight), 2.0)[..., 0]
    spread = _blur(diff[..., None], weight, 2.0)[..., 0]
    return torch.where(inner, diff, torch.where(reach > 0.05, spread, torch.ones_like(diff)))


@dataclass
class Observation:
    """What the references say about every used texel (the order of the TexelSurface)."""

    colour: Tensor
    """[T, 3] the references' colour (lighting removed), blended by resolution; 0 where unobserved."""
    confidence: Tensor
    """[T] in [0, 1]: 1 where some photo sees the texel within FidelityConfig.full_cosine, ramping to 0 at
    min_cosine; 0 = no reference observes it."""
    disagreement: Tensor
    """[T] in [0, 1]: 0 where the initial asset agrees with the references (within their noise), 1 where it
    differs by twice the threshold or more."""
    per_reference: list[int]
    """Texels each reference observes."""

    @property
    def observed(self) -> Tensor:
        return self.confidence > 0


def observe_texels(surface: TexelSurface, references: list[PreparedReference],
                   config: FidelityConfig = FidelityConfig(), posed: list | None = None,
                   device: str | torch.device = "cpu") -> Observation:
    """posed (animated meshes): per reference, the texels' (points [T, 3], normals [T, 3]) at its frame.
    Computed on `device` (the job's: a million texels' projections, depth tests and lookups per photo); the
    Observation's tensors are on the CPU."""
    dev = torch.device(device)
    T = len(surface)
    acc, wsum = torch.zeros(T, 3, device=dev), torch.zeros(T, device=dev)
    dis, dsum, conf = torch.zeros(T, device=dev), torch.zeros(T, device=dev), torch.zeros(T, device=dev)
    counts = []
    span = max(config.full_cosine - config.min_cosine, 1e-6)
    for i, ref in enumerate(references):
        points, normals = posed[i] if posed is not None else (surface.points, surface.normals)
        points, normals = torch.as_tensor(points).to(dev), torch.as_tensor(normals).to(dev)
        image, disagree = ref.image.to(dev), ref.disagree.to(dev)
        seen = seen_by(points, normals, ref.camera, ref.depth.to(dev), ref.mask.to(dev), config.min_cosine,
                       config.depth_tolerance_px, alpha=image[..., 3])
        counts.append(len(seen.index))
        if not len(seen.index):
            continue
        colour = sample_bilinear(image[..., :3], seen)
        a = sample_bilinear(disagree, seen).clamp(0, 1)
        c = ((seen.cos - config.min_cosine) / span).clamp(0, 1)
        c = c * c * (3 - 2 * c)
        # resolution on the surface: photo pixels per metre, squared (foreshortened by the cosine)
        f = float(ref.camera.Ks[0, 0, 0])
        w = (f * seen.cos / seen.z) ** 2 * c.clamp_min(1e-3)
        acc.index_add_(0, seen.index, w[:, None] * colour)
        wsum.index_add_(0, seen.index, w)
        # the disagreement is the sharpest views' (weights squared): a photo seeing the texel at a grazing angle
        # mixes it with its neighbours beyond, and must not overrule a frontal photo that agrees
        dis.index_add_(0, seen.index, w * w * a)
        dsum.index_add_(0, seen.index, w * w)
        conf[seen.index] = torch.maximum(conf[seen.index], c.clamp_min(1e-3))
    have = wsum > 0
    colour = torch.zeros(T, 3, device=dev)
    colour[have] = acc[have] / wsum[have, None]
    disagreement = torch.zeros(T, device=dev)
    disagreement[have] = dis[have] / dsum[have].clamp_min(1e-30)
    return Observation(colour.cpu(), (conf * have).cpu(), disagreement.cpu(), counts)
