"""Bake views onto the mesh's own UV texture (TIRE step 5): visibility by depth test, cosine weights, seams.

Per texel: find its triangle in UV space (rays cast at the UV layout laid flat, by the job's ray backend), lift it to its
3D point and normal, and for each view project the point, keep it where the view's depth map agrees at
all four pixels of the bilinear footprint (so colour never comes across an occlusion edge or from the
background) and the view is not grazing, weight it by the view cosine to a power, blend. Texels inside the
UV islands that no view sees are reported (the TIRE pipeline fills them) and keep the base texture; the
gutters around the islands are then dilated from the island texels so bilinear and mip-mapped lookups at
the seams never reach background.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .config import BakeConfig
from ..views.cameras import Cameras
from ..views.mesh_passes import MeshPasses, Raycaster
from ..views.rays import RaySpec, ray_query
from ....protocol.assets import Mesh
from ..views.meshes import as_mesh, texture_float


@dataclass
class BakeResult:
    texture: Tensor
    """[Ht, Wt, 3] float32 in [0, 1], rows top-down (Blender: row 0 is v = 1)."""
    seen: Tensor
    """[Ht, Wt] bool: texels at least one view saw."""
    unseen: Tensor
    """[Ht, Wt] bool: texels inside the UV islands that no view saw (base texture or 0 there)."""
    covered: Tensor
    """[Ht, Wt] bool: texel centres inside a UV triangle."""
    weight: Tensor
    """[Ht, Wt] float32 summed blend weights."""


def texel_surface(mesh: Mesh, height: int, width: int, spec: RaySpec = RaySpec()) -> tuple[np.ndarray, np.ndarray]:
    """Triangle id [Ht, Wt] (-1 outside the islands) and barycentrics [Ht, Wt, 3] of every texel centre.

    The UV triangles are laid flat at z = 0 and hit by rays along -z from the texel centres, so the ray
    backend (`spec`) does the point-in-triangle search.
    """
    uvs = np.asarray(mesh.uvs, dtype=np.float64)  # [F, 3, 2]
    F_ = len(uvs)
    flat = np.concatenate([uvs.reshape(-1, 2), np.zeros((F_ * 3, 1))], axis=1)
    rows, cols = np.mgrid[0:height, 0:width]
    u = (cols.ravel() + 0.5) / width
    v = 1.0 - (rows.ravel() + 0.5) / height
    origins = torch.from_numpy(np.stack([u, v, np.ones_like(u)], axis=1))
    dirs = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64).expand_as(origins)
    hits = ray_query(flat, np.arange(F_ * 3).reshape(F_, 3), spec).cast(origins, dirs)
    tri = hits.tri.cpu().numpy()
    bary = np.where((tri >= 0)[:, None], hits.bary.cpu().numpy(), 0.0)
    return tri.reshape(height, width), bary.reshape(height, width, 3)


def _bilinear(img: Tensor, x: Tensor, y: Tensor) -> tuple[Tensor, list[tuple[Tensor, Tensor]]]:
    """Sample img [H, W, D] at pixel coordinates (x, y) [T] (centres at integers); also the 4 taps."""
    x0, y0 = torch.floor(x).long(), torch.floor(y).long()
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    taps = [(y0, x0), (y0, x0 + 1), (y0 + 1, x0), (y0 + 1, x0 + 1)]
    w = [(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy]
    out = sum(wi * img[yy, xx] for wi, (yy, xx) in zip(w, taps))
    return out, taps


def dilate(values: Tensor, valid: Tensor, iterations: int) -> tuple[Tensor, Tensor]:
    """Grow `values` [H, W, D] from `valid` [H, W] texels into their neighbours, one ring per iteration.

    Each new texel takes the mean of its valid 8-neighbours. Returns (values, valid after growing).
    """
    vals = (values * valid[..., None]).permute(2, 0, 1)[None]  # [1, D, H, W]
    mask = valid[None, None].float()
    kernel = torch.ones(1, 1, 3, 3)
    D = vals.shape[1]
    for _ in range(iterations):
        summed = F.conv2d(vals, kernel.expand(D, 1, 3, 3), padding=1, groups=D)
        count = F.conv2d(mask, kernel, padding=1)
        grow = (count > 0) & (mask == 0)
        if not grow.any():
            break
        vals = torch.where(grow, summed / count.clamp_min(1), vals)
        mask = torch.where(grow, torch.ones_like(mask), mask)
    return vals[0].permute(1, 2, 0), mask[0, 0] > 0


def bake(
    mesh: Mesh,
    images: Tensor,
    cameras: Cameras,
    config: BakeConfig = BakeConfig(),
    view_weights: Tensor | None = None,
    base_texture: np.ndarray | None = None,
    passes: MeshPasses | None = None,
    spec: RaySpec = RaySpec(),
) -> BakeResult:
    """Project `images` [C, H, W, 3|4] (straight alpha, [0, 1]) seen by `cameras` onto `mesh`'s UVs.

    view_weights: [C] >= 0 (source views can count more), default ones. base_texture: [Ht, Wt, 3|4] kept
    where no view sees (default: the mesh's texture when its size matches the bake's). passes: the mesh's
    passes for `cameras` when the caller already has them (only mask and depth are read), else cast here.
    spec: the ray backend and job device the texel lookup and the passes cast with.
    """
    # 1. Check inputs.
    mesh = as_mesh(mesh)
    if mesh.uvs is None:
        raise ValueError("mesh.uvs is None: baking needs UVs (unwrap the mesh first)")
    C, H, W = len(cameras), cameras.height, cameras.width
    if images.ndim != 4 or tuple(images.shape[:3]) != (C, H, W) or images.shape[3] not in (3, 4):
        raise ValueError(f"images must have shape [C, H, W, 3|4] = [{C}, {H}, {W}, 3|4], got {tuple(images.shape)}")
    if view_weights is None:
        view_weights = torch.ones(C)
    if tuple(view_weights.shape) != (C,) or (view_weights < 0).any():
        raise ValueError(f"view_weights must be [C] = [{C}] and >= 0, got {view_weights.tolist()}")
    if config.texture_size is not None:
        Ht, Wt = config.texture_size
    elif mesh.texture is not None:
        Ht, Wt = np.asarray(mesh.texture).shape[:2]
    else:
        Ht, Wt = 1024, 1024
    if base_texture is None and mesh.texture is not None and np.asarray(mesh.texture).shape[:2] == (Ht, Wt):
        base_texture = mesh.texture
    if base_texture is not None and np.asarray(base_texture).shape[:2] != (Ht, Wt):
        raise ValueError(f"base_texture must be {Ht} x {Wt}, got {np.asarray(base_texture).shape}")
    images = images.detach().float().cpu()

    # 2. Texels -> surface points and normals (on the device the rays are cast on: the projections run there).
    tri, bary = texel_surface(mesh, Ht, Wt, spec)
    covered = torch.as_tensor(tri >= 0)
    caster = Raycaster(mesh, spec)
    dev = caster.device
    ids = tri[tri >= 0]
    corners = caster.vertices[caster.faces[ids]]  # [T, 3, 3]
    points = torch.as_tensor((corners * bary[tri >= 0][..., None]).sum(1), dtype=torch.float32, device=dev)
    normals = torch.as_tensor(caster.face_normals[ids], dtype=torch.float32, device=dev)

    # 3. Each view: project, depth test on the footprint, weight.
    if passes is None:
        passes = caster.passes(cameras, device=dev)
    elif tuple(passes.mask.shape) != (C, H, W):
        raise ValueError(f"passes must be for the {C} cameras at {W} x {H}, got mask {tuple(passes.mask.shape)}")
    pmask, pdepth = passes.mask.to(dev), passes.depth.to(dev)
    view_weights = view_weights.to(dev, torch.float32)
    acc = torch.zeros(len(points), 3, device=dev)
    wsum = torch.zeros(len(points), device=dev)
    for c in range(C):
        vm, K = cameras.viewmats[c].to(dev, torch.float32), cameras.Ks[c].to(dev, torch.float32)
        R, t = vm[:3, :3], vm[:3, 3]
        cam = points @ R.T + t
        z = cam[:, 2]
        proj = cam @ K.T
        x, y = proj[:, 0] / z.clamp_min(1e-9), proj[:, 1] / z.clamp_min(1e-9)
        center = -(R.T @ t)
        to_cam = F.normalize(center - points, dim=-1)
        cos = (normals * to_cam).sum(-1)
        ok = (z > 1e-6) & (x >= 0) & (x <= W - 1) & (y >= 0) & (y <= H - 1) & (cos >= config.min_cosine)
        sel = ok.nonzero()[:, 0]
        if not len(sel):
            continue
        xs, ys, zs, cs = x[sel], y[sel], z[sel], cos[sel]
        xs, ys = xs.clamp(max=W - 1 - 1e-4), ys.clamp(max=H - 1 - 1e-4)
        colour, taps = _bilinear(images[c].to(dev), xs, ys)
        # A pixel spans z / f of surface across, more along a slope: tolerate depth_tolerance_px of those.
        tan = (1 - cs**2).clamp_min(0).sqrt() / cs
        tol = config.depth_tolerance_px * zs / K[0, 0] * (1 + tan)
        visible = torch.ones(len(sel), dtype=torch.bool, device=dev)
        for yy, xx in taps:
            visible &= pmask[c, yy, xx] & ((pdepth[c, yy, xx] - zs).abs() <= tol)
        weight = view_weights[c] * cs.clamp_min(0) ** config.cosine_power
        if images.shape[-1] == 4:
            visible &= colour[:, 3] >= config.min_alpha
        weight = weight * visible
        acc.index_add_(0, sel, weight[:, None] * colour[:, :3])
        wsum.index_add_(0, sel, weight)
    acc, wsum = acc.cpu(), wsum.cpu()

    # 4. Blend; unseen texels keep the base texture; dilate into the gutters.
    seen_t = wsum > 0
    values = torch.zeros(len(points), 3)
    values[seen_t] = acc[seen_t] / wsum[seen_t, None]
    tex = torch.zeros(Ht, Wt, 3)
    seen = torch.zeros(Ht, Wt, dtype=torch.bool)
    weight_map = torch.zeros(Ht, Wt)
    tex[covered] = values
    seen[covered] = seen_t
    weight_map[covered] = wsum
    unseen = covered & ~seen
    have = seen.clone()
    if base_texture is not None:
        base = torch.as_tensor(texture_float(base_texture))
        tex[unseen] = base[unseen]
        have |= unseen
    grown, _ = dilate(tex, have, config.dilate_px)
    tex = torch.where(covered[..., None], tex, grown)  # only the gutters grow
    return BakeResult(texture=tex.clamp(0, 1), seen=seen, unseen=unseen, covered=covered, weight=weight_map)
