"""The refine stage's point cloud (Customize-It-3D, DESIGN.md 5.2.4): evenly spaced surface samples,
coloured from the reference photos where a z-buffer test says the photo sees them, else from the mesh.

Visibility is a depth test against the mesh passes at each reference camera: a point is seen when it
projects inside the photo's foreground and its camera depth is within `depth_tol` of the ray-cast depth
of that pixel (the first surface along the ray), so points on the far side get no colour from the photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..views.cameras import Cameras
from ..splats.gaussians import sample_surface
from ..views.mesh_passes import MeshPasses
from ....protocol.assets import Mesh
from ..views.meshes import as_mesh, face_normals, sample_texture, texture_float, to_trimesh
from ..views.track import project, sample_image


@dataclass
class PointCloud:
    """N surface points with colours."""

    points: Tensor
    """[N, 3] float32 world positions."""
    normals: Tensor
    """[N, 3] float32 unit face normals."""
    rgb: Tensor
    """[N, 3] float32 in [0, 1]: the reference colour where seen, the mesh texture's elsewhere."""
    seen: Tensor
    """[N] bool, some reference photo sees the point (its colour comes from a photo)."""
    spacing: float
    """Mean distance between neighbouring points (world units)."""

    def __len__(self) -> int:
        return int(self.points.shape[0])


def surface_points(mesh: Mesh, count: int, seed: int = 0) -> PointCloud:
    """`count` Poisson-disk-like samples (trimesh's rejection sampler, topped up at random) with the mesh's
    texture colour (mid grey without texture/UVs); `seen` all False until `project_colors`."""
    mesh = as_mesh(mesh)
    if not (isinstance(count, int) and count >= 4):
        raise ValueError(f"count must be an integer >= 4, got {count!r}")
    points, face_ids, bary = sample_surface(mesh, count, seed)
    if mesh.uvs is not None and mesh.texture is not None:
        uv = (np.asarray(mesh.uvs)[face_ids] * bary[..., None]).sum(axis=1)
        rgb = sample_texture(texture_float(mesh.texture), uv)[..., :3]
    else:
        rgb = np.full((len(points), 3), 0.5, np.float32)
    normals = face_normals(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces))[face_ids]
    area = float(to_trimesh(mesh).area)
    return PointCloud(
        points=torch.as_tensor(points, dtype=torch.float32),
        normals=torch.as_tensor(normals, dtype=torch.float32),
        rgb=torch.as_tensor(np.ascontiguousarray(rgb), dtype=torch.float32),
        seen=torch.zeros(len(points), dtype=torch.bool),
        spacing=float(np.sqrt(area / len(points))),
    )


def project_colors(
    cloud: PointCloud,
    images: Tensor,  # [C, H, W, 3] reference photos in [0, 1]
    masks: Tensor,  # [C, H, W] bool photo foreground
    cameras: Cameras,  # C reference cameras
    passes: MeshPasses,  # the mesh passes at those cameras
    depth_tol: float | None = None,  # world units; default 1.5 x the point spacing
) -> PointCloud:
    """A copy of `cloud` with each seen point coloured from the photo that sees it most head-on (largest
    cos between its normal and the direction to the camera), `seen` set for those points."""
    C, H, W = masks.shape
    if images.shape != (C, H, W, 3) or len(cameras) != C or tuple(passes.depth.shape) != (C, H, W):
        raise ValueError(f"images [C, H, W, 3], masks [C, H, W], cameras and passes must agree, got "
                         f"{tuple(images.shape)}, {tuple(masks.shape)}, {len(cameras)} cameras, {tuple(passes.depth.shape)}")
    tol = 1.5 * cloud.spacing if depth_tol is None else float(depth_tol)
    uv, z = project(cloud.points, cameras)  # [C, N, 2], [C, N]
    px = uv.round().long()
    inside = (px[..., 0] >= 0) & (px[..., 0] < W) & (px[..., 1] >= 0) & (px[..., 1] < H) & (z > 0)
    pxc = px[..., 0].clamp(0, W - 1)
    pyc = px[..., 1].clamp(0, H - 1)
    ci = torch.arange(C)[:, None]
    zbuf = passes.depth[ci, pyc, pxc]
    visible = inside & masks[ci, pyc, pxc] & passes.mask[ci, pyc, pxc] & ((z - zbuf).abs() <= tol)
    to_cam = cameras.centers[:, None, :] - cloud.points[None]  # [C, N, 3]
    cos = (torch.nn.functional.normalize(to_cam, dim=-1) * cloud.normals[None]).sum(-1)
    score = torch.where(visible, cos, torch.full_like(cos, -2.0))
    best = score.argmax(0)  # [N]
    seen = visible.any(0)
    rgb = cloud.rgb.clone()
    for c in range(C):
        pick = seen & (best == c)
        if pick.any():
            rgb[pick] = sample_image(images[c], uv[c, pick], "bilinear")
    return PointCloud(cloud.points, cloud.normals, rgb.clamp(0, 1), seen, cloud.spacing)


def coloured_points(
    mesh: Mesh,
    count: int,
    gaussians,  # splats.gaussians.Gaussians: the coarse stage's result
    images: Tensor,  # [C, H, W, 3] reference photos in [0, 1]
    masks: Tensor,  # [C, H, W] bool photo foreground
    cameras: Cameras,
    passes: MeshPasses,
    seed: int = 0,
) -> PointCloud:
    """The refine stage's point cloud (Customize-It-3D step 4): `count` surface points, each coloured from the
    photo that sees it (z-buffer, `project_colors`), elsewhere by its nearest coarse Gaussian."""
    from scipy.spatial import cKDTree

    cloud = surface_points(mesh, count, seed=seed)
    _, nearest = cKDTree(gaussians.means.detach().cpu().numpy()).query(cloud.points.numpy())
    cloud.rgb = gaussians.rgb.detach().clamp(0, 1).cpu()[torch.as_tensor(nearest)]
    return project_colors(cloud, images, masks, cameras, passes)
