"""The fidelity stage: what the references may change in the artist's texture, and what the infill starts from.

`prepare_fidelity` (before the target views): the artist's texture at its own size lifted onto the surface,
each reference's lighting removed and its agreement with the initial asset mapped, every used texel's
observation, and the colour regions' mappings (the region-mapped initial texture is what the infill starts
from: the diffusion inpainter's initial renders, or the classical fallback's infill itself).
`finish_fidelity` (after the inpainting): the refined texture (stages.texture.compose) from the observation
and an infill, whose texels no view saw filled on the surface.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..common.images import to_u8, unit_float
from ..views.meshes import sample_texture
from .compose import Composed, compose_texture, fill_on_surface
from .config import FidelityConfig
from .evidence import agreeing_beyond, counterpart_weight, nearer_photo
from .formation import beyond_texture, candidate_texture, confirmation
from .observe import Observation, PreparedReference, difference, observe_texels, prepare_reference
from .regions import RegionMap, cluster_colours, learn_regions
from .texels import TexelSurface, texel_geometry


@dataclass
class Fidelity:
    surface: TexelSurface
    references: list[PreparedReference]
    observation: Observation
    regions: RegionMap
    initial: np.ndarray
    """[Ht, Wt, 4] uint8: the artist's texture at the bake's size (the input itself when the sizes match)."""
    mapped: np.ndarray
    """[T, 3] float32: the used texels' initial colours through their regions' maps."""
    mapped_image: np.ndarray
    """[Ht, Wt, 3] float32: the initial texture with the used texels mapped (what the infill starts from)."""
    palette: dict
    """What `islands.island_palette` recoloured (islands, texels)."""
    continuation: dict
    """What `continuation.continue_colours` moved (its report)."""

    def mapped_colour(self, uv: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """[C, H, W, 3] unlit colour of the region-mapped initial asset at the passes' UVs (0 off the mask)."""
        out = torch.zeros(mask.shape + (3,))
        out[mask] = torch.as_tensor(sample_texture(self.mapped_image, uv[mask].double().numpy()))
        return out


def sized_texture(texture: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The mesh's texture as [Ht, Wt, 4] uint8 at `size` (the input itself when it already has that size)."""
    import cv2

    tex = np.asarray(texture)
    tex = to_u8(tex) if tex.dtype != np.uint8 else tex
    if tex.shape[-1] == 3:
        tex = np.concatenate([tex, np.full(tex.shape[:2] + (1,), 255, np.uint8)], -1)
    if tex.shape[:2] == tuple(size):
        return tex
    h, w = size
    shrink = h < tex.shape[0] or w < tex.shape[1]
    return cv2.resize(tex, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def _edges(image: np.ndarray) -> np.ndarray:
    import cv2

    grey = image[..., :3].mean(-1).astype(np.float32)
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 8
    return np.sqrt(gx * gx + gy * gy)


def prepare_fidelity(mesh, references, caster, config: FidelityConfig, size: tuple[int, int], posed=None) -> Fidelity:
    """`posed` (animated meshes): posed(i, surface) -> (the Raycaster of the mesh at reference i's frame, the used
    texels' points [T, 3] and normals [T, 3] at that frame), so each photo observes the surface where it was."""
    initial = sized_texture(mesh.texture, size)
    surface = texel_geometry(mesh, *size, caster.spec)
    init_f = unit_float(initial[..., :3])
    init_t = surface.gather(init_f)
    dev = caster.spec.device
    # the initial colours' k-means needs no photo: a host thread runs it while the photos are prepared
    with ThreadPoolExecutor(1) as pool:
        clusters = pool.submit(cluster_colours, init_t, config.regions, config.seed)
        poses = [posed(i, surface) for i in range(len(references))] if posed is not None else None
        prepared = [prepare_reference(ref, poses[i][0] if poses else caster, config) for i, ref in enumerate(references)]
        frames = [p[1:] for p in poses] if poses else None
        obs = observe_texels(surface, prepared, config, frames, dev)
        # the same photos down to grazing angles (what they show beyond min_cosine)
        wide = observe_texels(surface, prepared, replace(config, min_cosine=0.02, full_cosine=0.02), frames, dev)
        if config.confirm_reduction > 0 and float(obs.disagreement.max()) > 0 and all(r.formation for r in prepared):
            # analysis by synthesis: keep a disagreement only where the photos' colour, rendered back, explains them
            # (and not what the texels the photos show beyond min_cosine explain already)
            candidate = torch.as_tensor(candidate_texture(init_f, surface, obs))
            beyond = torch.as_tensor(beyond_texture(init_f, surface, obs, wide))
            blur = config.compare_blur_px
            prepared = [replace(r, disagree=r.disagree * confirmation(
                r, candidate, lambda im, rd, inn: difference(im, rd, inn, blur), config.confirm_reduction, beyond,
                torch.as_tensor(init_f), config.shading_chroma))
                for r in prepared]
            obs = observe_texels(surface, prepared, config, frames, dev)
        weight = (obs.confidence.numpy() ** 2).astype(np.float64)
        # where a photo agrees with the initial texel, its difference is within its noise: no evidence for a map
        agree = (obs.observed & (obs.disagreement <= 0)).numpy()
        target = np.where(agree[:, None], init_t, obs.colour.numpy()) if config.agreeing_identity else obs.colour.numpy()
        regions = learn_regions(init_t, target, weight, config.regions, config.region_min_texels,
                                edge=surface.gather(_edges(init_f)), seed=config.seed, device=dev,
                                clusters=clusters.result())
    mapped = regions.apply(init_t)
    # the maps move a texel only as far as the photos give evidence for (stages.texture.evidence)
    keep = nearer_photo(obs, init_t, mapped)
    if config.keep_agreeing_beyond:
        keep |= agreeing_beyond(obs, wide, init_t, mapped)
    w = counterpart_weight(init_t, obs.observed.numpy(), config.counterpart_de, seed=config.seed)
    w = np.where(keep, 0.0, w)[:, None]
    mapped = (init_t + w * (mapped - init_t)).astype(np.float32)
    palette = {"islands_recoloured": 0, "texels_recoloured": 0}
    if config.island_palette:
        from .islands import island_labels, island_palette

        mapped, palette = island_palette(init_t, mapped, obs.colour.numpy(), obs.confidence.numpy(),
                                         surface.gather(island_labels(surface.covered)))
    # mapped changes smaller than the photos' agreement floor are not evidence of anything: shrunk away (soft,
    # so no step), the initial colour kept exactly
    # a map learned from lit photos is no surer than their lighting correction: on lit references its changes
    # within the agreement floor are shrunk away too
    shrink = max(config.map_min_change, config.agree_floor if any(r.lighting.applied for r in prepared) else 0.0)
    if shrink > 0:
        delta = mapped - init_t
        size = np.abs(delta).max(1, keepdims=True)
        mapped = (init_t + delta * np.clip(1 - shrink / np.maximum(size, 1e-9), 0, 1)).astype(np.float32)
    continuation = {"method": "off", "texels_moved": 0}
    lit = [r.name for r in prepared if r.lighting.applied]
    if config.continuation and lit:
        continuation = {"method": "not applied: the references " + ", ".join(lit) + " are lit (their colours are only "
                        "as sure as the lighting correction)", "texels_moved": 0}
    elif config.continuation:
        from .continuation import continue_colours

        mapped, continuation = continue_colours(surface, init_t, mapped, obs.colour.numpy(), obs.observed.numpy(),
                                                edge_de=config.continuation_edge_de, shape_tol=config.continuation_shape)
        # what the photos confirm as it is stays so (the same evidence rule as for the maps)
        keep = nearer_photo(obs, init_t, mapped) | (agreeing_beyond(obs, wide, init_t, mapped)
                                                     if config.keep_agreeing_beyond else False)
        continuation["texels_kept_by_the_photos"] = int((keep & (np.abs(mapped - init_t).max(1) > 0)).sum())
        mapped = np.where(keep[:, None], init_t, mapped).astype(np.float32)
    mapped_image = init_f.copy()
    mapped_image[surface.rows, surface.cols] = mapped
    return Fidelity(surface, prepared, obs, regions, initial, mapped, mapped_image, palette, continuation)


def finish_fidelity(fid: Fidelity, config: FidelityConfig, dilate_px: int, infill_image: np.ndarray | None = None,
                    infill_seen: np.ndarray | None = None) -> tuple[Composed, dict]:
    """The refined texture. infill_image [Ht, Wt, 3] (baked inpainted views) with infill_seen [Ht, Wt] the texels
    they reached; without, the infill is the region-mapped initial texture (the classical fallback). Texels the
    views did not reach take their 3D neighbours' infill (across UV seams)."""
    s = fid.surface
    if infill_image is None:
        infill, filled, missing, source = fid.mapped, 0, 0, "the region-mapped initial texture"
    else:
        infill = s.gather(np.asarray(infill_image, np.float32)[..., :3]).astype(np.float32)
        have = s.gather(np.asarray(infill_seen, bool))
        infill, filled = fill_on_surface(s, infill, have)
        missing = int((~have).sum()) - filled
        source = "the inpainted target views, baked"
    composed = compose_texture(fid.initial, s, fid.observation, infill, config.feather_px, dilate_px,
                               keep_grazing=config.keep_grazing)
    # kept = the artist's bytes exactly (a grazing texel blended with an infill that equals it is kept too)
    same = (s.gather(composed.texture)[:, :3] == s.gather(fid.initial)[:, :3]).all(1)
    observed = ~composed.infilled
    composed = replace(composed, kept=observed & same, from_references=observed & ~same)
    return composed, {"infill_source": source, "texels_filled_on_surface": int(filled), "texels_unseen": missing}
