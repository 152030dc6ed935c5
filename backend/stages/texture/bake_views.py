"""Bake groups of views of different resolutions (target orbit, reference photos at their own size) onto
one UV texture: each group is baked alone, the groups blend by their summed weights, unseen texels keep the
base texture, and the gutters are dilated last."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch
from torch import Tensor

from .bake import BakeConfig, bake, dilate
from ..views.cameras import Cameras
from ..views.mesh_passes import MeshPasses
from ..views.rays import RaySpec
from ....protocol.assets import Mesh
from ..views.meshes import texture_float


def bake_views(
    mesh: Mesh,
    groups: list[tuple[Tensor, Cameras, float, MeshPasses | None]],
    config: BakeConfig = BakeConfig(),
    base_texture: np.ndarray | None = None,
    spec: RaySpec = RaySpec(),
) -> tuple[Tensor, Tensor]:
    """groups: (images [C, H, W, 3|4] in [0, 1], their cameras, weight of each view of the group, the mesh
    passes of those cameras when already computed, else None).
    spec: the ray backend and job device of the bake's ray casts.
    Returns ([Ht, Wt, 3] texture in [0, 1], [Ht, Wt] bool texels no view saw, inside the UV islands)."""
    if not groups:
        raise ValueError("bake_views needs at least one group of views")
    if config.texture_size is None:
        size = np.asarray(base_texture).shape[:2] if base_texture is not None else (
            np.asarray(mesh.texture).shape[:2] if mesh.texture is not None else (1024, 1024))
        config = replace(config, texture_size=tuple(int(s) for s in size))
    bare = Mesh(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32), np.asarray(mesh.uvs, np.float32))
    per_group = replace(config, dilate_px=0)
    acc, wsum, covered = None, None, None
    for images, cameras, weight, passes in groups:
        r = bake(bare, images, cameras, per_group, view_weights=torch.full((len(cameras),), float(weight)), passes=passes,
                 spec=spec)
        acc = r.texture * r.weight[..., None] if acc is None else acc + r.texture * r.weight[..., None]
        wsum = r.weight.clone() if wsum is None else wsum + r.weight
        covered = r.covered
    seen = wsum > 0
    tex = torch.zeros_like(acc)
    tex[seen] = acc[seen] / wsum[seen, None]
    unseen = covered & ~seen
    have = seen.clone()
    if base_texture is not None:
        base = torch.as_tensor(texture_float(base_texture))[..., :3]
        if base.shape[:2] != tex.shape[:2]:
            base = torch.nn.functional.interpolate(base.permute(2, 0, 1)[None], size=tex.shape[:2], mode="bilinear",
                                                   align_corners=False)[0].permute(1, 2, 0)
        tex[unseen] = base[unseen]
        have |= unseen
    grown, _ = dilate(tex, have, config.dilate_px)
    tex = torch.where(covered[..., None], tex, grown)
    return tex.clamp(0, 1), unseen
