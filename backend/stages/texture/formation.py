"""How a photo's pixels were formed from the texture: the pixel filter found per photo, and analysis by synthesis.

A photo's pixel is the texture integrated under the camera's (or the renderer's) pixel filter: our own box,
Cycles' Blackman-Harris 1.5 px, a lens and sensor a little wider. Comparing the photo with a render of the
initial asset formed by another filter than the photo's makes every right fine stroke look wrong along its
outline. `Formation` casts the initial asset's rays once at `supersample`^2 a pixel and forms the render under
any filter (and for any texture: the rays' UVs are kept). `estimate_formation` picks, per photo, the filter
whose render is nearest the photo (a trimmed mean of the absolute residual on pixels both show, after the
photo's lighting is removed), so each photo is compared with the initial asset formed as it was.

`synthesis_confirmation`: a disagreement is taken from the photos only where re-rendering the candidate
texture (the initial texture with the disagreeing texels moved to the photos' colour) through the same
formation explains the photo clearly better than the initial texture did; where it does not (a residual of
the pixel filter, a colour the photo only shows blurred), the texel keeps its initial value.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from ..views.mesh_passes import sample_texture_torch
from .agreement import filter_samples

CANDIDATES_PX = (0.0, 1.5, 2.0, 2.5, 3.0, 4.0)
"""Pixel filters tried per photo: 0 = a one-pixel box (the product's own renders), else Blackman-Harris this wide."""

SHADING_CHROMA_FLOOR = 0.08
"""On a lit photo, a colour imbalance below this (8 % between channels, in log) is within what a white balance and
a low-order light leave: brightness-and-slight-tint areas are the light's residual, not a wrong colour."""


@dataclass
class Formation:
    """The initial asset's rays through one photo's pixels, `supersample`^2 a pixel."""

    uv: Tensor
    """[Hs, Ws, 2] texture coordinates of each ray's hit (0 on a miss)."""
    cover: Tensor
    """[Hs, Ws] bool: the ray hits the mesh."""
    supersample: int
    height: int
    width: int
    filter_px: float = 0.0
    """The pixel filter this photo was found to be formed with (see CANDIDATES_PX)."""
    scores: dict = field(default_factory=dict)
    """Trimmed mean absolute residual of the photo against the render under each candidate filter."""

    def render(self, texture: Tensor, filter_px: float | None = None) -> Tensor:
        """[H, W, 4] straight-alpha RGBA of the mesh painted with `texture` [Ht, Wt, 3] float, under this photo's
        filter (or `filter_px`)."""
        rgb = torch.zeros(self.cover.shape + (3,))
        rgb[self.cover] = sample_texture_torch(texture[..., :3].float(), self.uv[self.cover])
        cov = self.cover.float()
        premult = torch.cat([rgb * cov[..., None], cov[..., None]], -1).permute(2, 0, 1)[None]
        f = self.filter_px if filter_px is None else filter_px
        return filter_samples(premult, self.supersample, f, self.height, self.width)

    def report(self) -> dict:
        return {"filter_px": self.filter_px, "filter_residual": {str(k): round(v, 5) for k, v in self.scores.items()}}


def cast_formation(caster, camera, supersample: int = 4) -> Formation:
    """The rays of one camera (`Cameras` of length 1) through `caster`'s mesh."""
    hi = caster.passes(camera.resized(camera.width * supersample, camera.height * supersample))
    return Formation(hi.uv[0], hi.mask[0], supersample, camera.height, camera.width)


def trimmed_residual(image: Tensor, render: Tensor, valid: Tensor, keep: float = 0.9) -> float:
    """Mean absolute RGB residual of image and render [H, W, 3] over the `keep` fraction of `valid` pixels that
    differ least (a wrong patch of the initial asset weighs the same under every filter: it is trimmed)."""
    r = (image[..., :3] - render[..., :3]).abs().mean(-1)[valid]
    if len(r) == 0:
        return 0.0
    r, _ = torch.sort(r)
    return float(r[: max(1, int(keep * len(r)))].mean())


def estimate_formation(formation: Formation, texture: Tensor, image: Tensor, valid: Tensor,
                       candidates=CANDIDATES_PX, prefer: float = 0.005) -> Tensor:
    """Choose the candidate filter whose render of `texture` is nearest `image` [H, W, 3|4] on `valid` [H, W];
    a wider filter must beat the narrower ones by `prefer` (relative) to be chosen. Sets formation.filter_px and
    .scores; returns the chosen render [H, W, 4]."""
    best, best_render, best_score = None, None, np.inf
    for f in candidates:
        render = formation.render(texture, f)
        score = trimmed_residual(image, render, valid & (render[..., 3] >= 0.99))
        formation.scores[f] = score
        if best is None or score < best_score * (1 - prefer):
            best, best_render, best_score = f, render, score
    formation.filter_px = float(best)
    return best_render


def candidate_texture(initial: np.ndarray, surface, obs) -> np.ndarray:
    """[Ht, Wt, 3] float: the initial texture with each disagreeing observed texel moved to the photos' colour (the
    hypothesis under test: what the references would make of the texture if every disagreement were right)."""
    init_t = surface.gather(initial)
    a = ((obs.disagreement.numpy() > 0) & (obs.confidence.numpy() > 0))[:, None]
    out = initial.astype(np.float32).copy()
    out[surface.rows, surface.cols] = init_t + a * (obs.colour.numpy() - init_t)
    return out


def beyond_texture(initial: np.ndarray, surface, obs, wide) -> np.ndarray:
    """[Ht, Wt, 3] float: the initial texture with the texels `wide` (an Observation down to grazing angles) sees
    and `obs` does not moved to the photos' colour."""
    m = wide.observed.numpy() & ~obs.observed.numpy()
    out = initial.astype(np.float32).copy()
    out[surface.rows[m], surface.cols[m]] = wide.colour.numpy()[m]
    return out


def confirmation(ref, candidate: Tensor, compare, reduction: float, beyond: Tensor | None = None,
                 initial: Tensor | None = None, shading_chroma: float = 0.0) -> Tensor:
    """[H, W] in [0, 1] for one prepared reference: per connected area of disagreement (8-connected photo pixels),
    1 where the candidate texture's render explains the photo better than the initial asset's by at least
    `reduction` (the area's summed residual, relative), 0 where by less than half of it. `compare(image, render,
    inner)` is the residual the agreement decision uses.

    `beyond` [Ht, Wt, 3]: the initial texture with the texels the photo shows but no reference observes (seen
    beyond min_cosine) moved to the photos' colour. The simplest explanation wins: an area that changing those
    texels already explains (a pixel mixing right observed texels with wrong ones just beyond the photos' reach)
    is not confirmed unless changing the observed ones explains clearly more (by `reduction` of what is left).

    `initial` [Ht, Wt, 3] with `shading_chroma` > 0, on a photo whose lighting was removed: an area where the photo
    differs from the initial asset's render by a brightness only (the per-channel log ratios' spread is at most
    `shading_chroma` of their mean, or SHADING_CHROMA_FLOOR) is the lighting's residual (a clamped or local light the low-order fit left),
    not a colour the texture has wrong, and is not confirmed either; nor is an unmeasured pixel of such a photo.

    The asset's pixels whose residual was not measured (near the silhouette, nothing measured near) keep their
    disagreement; the background's (no texel is seen there) is dropped, so a texel on the silhouette does not
    sample it."""
    from scipy import ndimage

    before = ref.difference
    unmeasured = (before >= 1.0) & ref.mask
    area = (ref.disagree > 0) & ref.mask & ~unmeasured
    labels, n = ndimage.label(area.numpy(), structure=np.ones((3, 3), bool))
    lit = initial is not None and shading_chroma > 0 and ref.lighting.applied
    # on a lit photo an unmeasured difference may as well be the light's: not evidence either
    out = unmeasured.float() * (not lit)
    if n == 0:
        return out
    idx = np.arange(1, n + 1)

    def summed(texture: Tensor) -> np.ndarray:
        return ndimage.sum(compare(ref.image, ref.formation.render(texture), ref.inner).numpy(), labels, idx)

    def ramp(rel: np.ndarray) -> np.ndarray:
        lo = 0.5 * reduction
        c = np.clip((rel - lo) / max(reduction - lo, 1e-6), 0, 1)
        return c * c * (3 - 2 * c)

    b = ndimage.sum(before.numpy(), labels, idx)
    a = summed(candidate)
    c = ramp((b - a) / np.maximum(b, 1e-9))
    if beyond is not None:
        a0 = summed(beyond)
        c = c * ramp((a0 - a) / np.maximum(a0, 1e-9))
    if lit:
        own, img = ref.formation.render(initial)[..., :3].numpy(), ref.image[..., :3].numpy()
        # per channel, the log of the area's summed photo over its summed render (dark pixels weigh less)
        per = np.log(np.stack([np.maximum(ndimage.sum(img[..., k], labels, idx), 1e-6)
                               / np.maximum(ndimage.sum(own[..., k], labels, idx), 1e-6) for k in range(3)], 1))
        lum = per.mean(1)
        chroma = np.abs(per - lum[:, None]).max(1)
        c = c * (chroma > np.maximum(shading_chroma * np.abs(lum), SHADING_CHROMA_FLOOR))
    c = np.concatenate([[0.0], c]).astype(np.float32)
    return torch.maximum(out, torch.as_tensor(c[labels]))
