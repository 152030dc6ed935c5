"""The 3D Gaussian set (3DGS parameterisation) and its initialisation from a textured mesh surface.

Parameters are stored as the optimiser sees them (3DGS / gsplat): quaternions wxyz (not necessarily
normalised), log-scales, logit-opacities, and colour as real spherical-harmonic coefficients whose band 0
holds (rgb - 0.5) / C0, so degree 0 renders `rgb`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ....protocol.assets import Mesh
from ..views.meshes import as_mesh, face_normals, sample_texture, texture_float, to_trimesh

SH_C0 = 0.28209479177387814
"""Band-0 real spherical harmonic, 1 / (2 sqrt(pi))."""


def rgb_to_sh(rgb: Tensor) -> Tensor:
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    return sh0 * SH_C0 + 0.5


@dataclass(eq=False)
class Gaussians:
    """N anisotropic 3D Gaussians in the Blender world frame."""

    means: Tensor
    """[N, 3] centres, world space."""
    quats: Tensor
    """[N, 4] rotations, wxyz (normalised when used)."""
    log_scales: Tensor
    """[N, 3] log of the standard deviations along the rotated axes."""
    logit_opacities: Tensor
    """[N] logit of the opacity."""
    sh: Tensor
    """[N, K, 3] SH coefficients, K = (degree + 1)^2 in {1, 4, 9, 16} (degree <= 3, as 3DGS)."""

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        expected = {"means": (n, 3), "quats": (n, 4), "log_scales": (n, 3), "logit_opacities": (n,)}
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"{name} must have shape {shape} (N from means), got {got}")
        k = self.sh.shape[1] if self.sh.ndim == 3 else -1
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3 or k not in (1, 4, 9, 16):
            raise ValueError(f"sh must have shape [N, K, 3] with K in (1, 4, 9, 16), got {tuple(self.sh.shape)}")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round(self.sh.shape[1] ** 0.5)) - 1

    @property
    def scales(self) -> Tensor:
        """[N, 3] standard deviations."""
        return self.log_scales.exp()

    @property
    def opacities(self) -> Tensor:
        """[N] opacities in (0, 1)."""
        return torch.sigmoid(self.logit_opacities)

    @property
    def rgb(self) -> Tensor:
        """[N, 3] view-independent colour (band 0 only), unclamped."""
        return sh_to_rgb(self.sh[:, 0])

    @property
    def device(self) -> torch.device:
        return self.means.device

    def fields(self) -> dict[str, Tensor]:
        return {
            "means": self.means,
            "quats": self.quats,
            "log_scales": self.log_scales,
            "logit_opacities": self.logit_opacities,
            "sh": self.sh,
        }

    def map(self, fn) -> "Gaussians":
        return Gaussians(**{k: fn(v) for k, v in self.fields().items()})

    def to(self, device) -> "Gaussians":
        return self.map(lambda t: t.to(device))

    def detach(self) -> "Gaussians":
        return self.map(lambda t: t.detach().clone())

    def __getitem__(self, index) -> "Gaussians":
        return self.map(lambda t: t[index])

    def with_sh_degree(self, degree: int) -> "Gaussians":
        """Truncate or zero-pad the SH coefficients to `degree`."""
        if not 0 <= degree <= 3:
            raise ValueError(f"degree must be in [0, 3], got {degree}")
        k = (degree + 1) ** 2
        sh = self.sh[:, :k]
        if sh.shape[1] < k:
            sh = torch.cat([sh, sh.new_zeros(len(self), k - sh.shape[1], 3)], dim=1)
        return Gaussians(self.means, self.quats, self.log_scales, self.logit_opacities, sh)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """float32 numpy arrays keyed as `backend.export.ply.write_ply` takes them."""
        return {k: v.detach().cpu().float().numpy() for k, v in self.fields().items()}

    @staticmethod
    def from_arrays(arrays: dict, device="cpu") -> "Gaussians":
        keys = ("means", "quats", "log_scales", "logit_opacities", "sh")
        return Gaussians(**{k: torch.as_tensor(np.asarray(arrays[k]), dtype=torch.float32, device=device)
                            for k in keys})


def rotation_to_quat(R: Tensor) -> Tensor:
    """[N, 3, 3] rotation matrices -> [N, 4] unit quaternions wxyz (Shepperd's method, branch-free)."""
    m = R
    t = torch.stack(
        [
            1 + m[:, 0, 0] + m[:, 1, 1] + m[:, 2, 2],
            1 + m[:, 0, 0] - m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] + m[:, 1, 1] - m[:, 2, 2],
            1 - m[:, 0, 0] - m[:, 1, 1] + m[:, 2, 2],
        ],
        dim=1,
    )
    best = t.argmax(dim=1)
    s = 0.5 / t.gather(1, best[:, None]).clamp_min(1e-12).sqrt()[:, 0]
    cand = torch.stack(
        [
            torch.stack([t[:, 0], m[:, 2, 1] - m[:, 1, 2], m[:, 0, 2] - m[:, 2, 0], m[:, 1, 0] - m[:, 0, 1]], 1),
            torch.stack([m[:, 2, 1] - m[:, 1, 2], t[:, 1], m[:, 0, 1] + m[:, 1, 0], m[:, 0, 2] + m[:, 2, 0]], 1),
            torch.stack([m[:, 0, 2] - m[:, 2, 0], m[:, 0, 1] + m[:, 1, 0], t[:, 2], m[:, 1, 2] + m[:, 2, 1]], 1),
            torch.stack([m[:, 1, 0] - m[:, 0, 1], m[:, 0, 2] + m[:, 2, 0], m[:, 1, 2] + m[:, 2, 1], t[:, 3]], 1),
        ],
        dim=1,
    )  # [N, 4 branches, 4]
    q = cand[torch.arange(len(R)), best] * s[:, None]
    q = q * torch.where(q[:, :1] < 0, -1.0, 1.0)  # w >= 0
    return torch.nn.functional.normalize(q, dim=-1)


def quat_to_rotation(quats: Tensor) -> Tensor:
    """[N, 4] wxyz (any norm) -> [N, 3, 3] rotation matrices."""
    w, x, y, z = torch.nn.functional.normalize(quats, dim=-1).unbind(-1)
    return torch.stack(
        [
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ],
        dim=-1,
    ).reshape(-1, 3, 3)


def sample_surface(mesh: Mesh, count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """About evenly spaced points on the surface: exactly `count` of them.

    trimesh's rejection sampler (`sample_surface_even`) spaces the points; where it returns fewer than
    `count`, area-weighted random samples make up the rest. Returns (points [N, 3], face ids [N],
    barycentric coordinates [N, 3]).
    """
    import trimesh

    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    tm = to_trimesh(mesh)
    if tm.area <= 0:
        raise ValueError("mesh has zero surface area")
    points, face_ids = trimesh.sample.sample_surface_even(tm, count, seed=seed)
    if len(points) < count:
        extra, extra_ids = trimesh.sample.sample_surface(tm, count - len(points), seed=seed + 1)
        points, face_ids = np.concatenate([points, extra]), np.concatenate([face_ids, extra_ids])
    points, face_ids = points[:count], face_ids[:count]
    bary = trimesh.triangles.points_to_barycentric(tm.triangles[face_ids], points)
    return points.astype(np.float32), face_ids.astype(np.int64), np.clip(bary, 0, 1).astype(np.float32)


def from_mesh(
    mesh: Mesh,
    count: int = 100_000,
    sh_degree: int = 0,
    opacity: float = 0.9,
    flatness: float = 0.1,
    scale_factor: float = 0.7,
    seed: int = 0,
    color: tuple[float, float, float] | None = None,
) -> Gaussians:
    """Gaussians on the mesh surface, coloured from its texture through the UVs, flat along the surface.

    Each Gaussian's in-plane standard deviation is `scale_factor` times the mean distance to its 3 nearest
    neighbours (the local spacing); along the face normal it is `flatness` times that. Colour comes from
    the texture (bilinear, through the per-corner UVs), or `color` when given, or mid grey when the mesh
    has no texture or UVs.
    """
    from scipy.spatial import cKDTree

    mesh = as_mesh(mesh)
    if not 0 < opacity < 1:
        raise ValueError(f"opacity must be in (0, 1), got {opacity}")
    if flatness <= 0 or scale_factor <= 0:
        raise ValueError(f"flatness and scale_factor must be > 0, got {flatness}, {scale_factor}")
    points, face_ids, bary = sample_surface(mesh, count, seed)
    n = len(points)

    # 1. Colour through the UVs.
    if color is not None:
        rgb = np.broadcast_to(np.asarray(color, dtype=np.float32), (n, 3))
    elif mesh.uvs is not None and mesh.texture is not None:
        uv = (np.asarray(mesh.uvs)[face_ids] * bary[..., None]).sum(axis=1)
        rgb = sample_texture(texture_float(mesh.texture), uv)
    else:
        rgb = np.full((n, 3), 0.5, dtype=np.float32)

    # 2. Scales from the local spacing (3 nearest neighbours).
    k = min(4, n)
    dist, _ = cKDTree(points).query(points, k=k)
    spacing = dist[:, 1:].mean(axis=1) if k > 1 else np.full(n, np.sqrt(to_trimesh(mesh).area))
    spacing = np.maximum(spacing, 1e-6 + 1e-3 * np.median(spacing))
    scales = np.stack([spacing, spacing, flatness * spacing], axis=1) * scale_factor

    # 3. Orientation: the local z axis along the face normal.
    normals = face_normals(np.asarray(mesh.vertices), np.asarray(mesh.faces))[face_ids]
    helper = np.where(np.abs(normals[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    t1 = np.cross(normals, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(normals, t1)
    R = torch.as_tensor(np.stack([t1, t2, normals], axis=2), dtype=torch.float32)  # columns = local axes

    sh = torch.zeros(n, (sh_degree + 1) ** 2, 3)
    sh[:, 0] = rgb_to_sh(torch.as_tensor(np.ascontiguousarray(rgb), dtype=torch.float32))
    return Gaussians(
        means=torch.as_tensor(points),
        quats=rotation_to_quat(R),
        log_scales=torch.as_tensor(np.log(scales), dtype=torch.float32),
        logit_opacities=torch.full((n,), float(np.log(opacity / (1 - opacity)))),
        sh=sh,
    )


def random_gaussians(n: int, center=(0.0, 0.0, 0.0), extent: float = 1.0, scale: float = 0.03,
                     sh_degree: int = 0, seed: int = 0) -> Gaussians:
    """`n` Gaussians uniformly in a cube of half-size `extent`, random rotations, colours and opacities."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) * 2 - 1) * extent + torch.as_tensor(center, dtype=torch.float32)
    sh = torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g) * 0.2
    sh[:, 0] = rgb_to_sh(torch.rand(n, 3, generator=g))
    return Gaussians(
        means=means,
        quats=torch.randn(n, 4, generator=g),
        log_scales=torch.log(scale * (0.5 + torch.rand(n, 3, generator=g))),
        logit_opacities=torch.logit(0.2 + 0.75 * torch.rand(n, generator=g)),
        sh=sh,
    )
