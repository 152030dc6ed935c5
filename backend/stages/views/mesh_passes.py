"""Per-pixel passes of a textured mesh from any camera: depth, normal, mask, triangle id, UV, colour.

Why ray casting rather than a rasteriser: it is exact per pixel centre (the OpenCV camera model, no near/far
clipping, no depth-buffer quantisation), so the analytic tests hold to float precision; it needs no OpenGL/EGL
context, which headless servers and CI machines often lack; and the same ray queries answer point-visibility
questions elsewhere. The rays are cast by a `rays.RayQuery`: Embree on the CPU (the backend must work without
a GPU, DESIGN.md section 7), NVIDIA Warp's BVH on a CUDA job device, all views in one launch, the passes then
assembled in torch on that device.

One ray per pixel through the pixel centre (integer coordinates of K), so passes are point-sampled;
`mesh_rgba` supersamples for an antialiased picture.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .cameras import Cameras
from ....protocol.assets import Mesh
from .meshes import as_mesh, face_normals, texture_float, to_trimesh
from .rays import RaySpec, camera_directions, describe, ray_query
from .rays.embree import barycentric  # noqa: F401  (re-exported: the bake's UV lookup uses it)

PIXELS_PER_CHUNK = {"cpu": 1 << 20, "cuda": 1 << 23}
"""Pixels cast in one launch and assembled at once (bounds the temporaries, about 300 bytes a pixel: 2.5 GB for
32 views at 512 px on a GPU)."""


@dataclass
class MeshPasses:
    """Point-sampled passes of one mesh seen by C cameras (background: mask False, zeros, tri -1)."""

    mask: Tensor
    """[C, H, W] bool, the pixel's ray hits the mesh."""
    depth: Tensor
    """[C, H, W] float32 camera z-depth (OpenCV +z), 0 on background."""
    points: Tensor
    """[C, H, W, 3] float32 world position of the hit."""
    normal: Tensor
    """[C, H, W, 3] float32 unit world normal (face normal, or smooth with normals="smooth")."""
    tri: Tensor
    """[C, H, W] int64 index of the hit triangle, -1 on background."""
    bary: Tensor
    """[C, H, W, 3] float32 barycentric coordinates of the hit in its triangle."""
    uv: Tensor
    """[C, H, W, 2] float32 UV at the hit (Blender convention), 0 without UVs."""
    rgb: Tensor
    """[C, H, W, 3] float32 unlit texture colour; without a texture, grey shaded by the view cosine."""


class Raycaster:
    """One mesh behind a ray query (`spec`: backend and job device); cast camera rays or arbitrary rays."""

    def __init__(self, mesh: Mesh, spec: RaySpec = RaySpec()):
        mesh = as_mesh(mesh)
        self.mesh = mesh
        self.spec = spec
        self.vertices = np.asarray(mesh.vertices, dtype=np.float64)
        self.faces = np.asarray(mesh.faces, dtype=np.int64)
        self.rays = ray_query(self.vertices, self.faces, spec)
        self.face_normals = face_normals(self.vertices, self.faces)
        self.texture = texture_float(mesh.texture) if mesh.texture is not None else None
        self._on_device: dict[str, Tensor] | None = None

    @property
    def backend(self) -> dict:
        """What ran: {"backend": "embree" | "warp", "device": ..., "why": ...} (for report.json)."""
        return describe(self.rays)

    @property
    def device(self) -> torch.device:
        """Where the rays are cast and the passes assembled (the CPU for Embree)."""
        return self.rays.device

    def like(self, mesh: Mesh) -> "Raycaster":
        """A Raycaster of another mesh on the same backend and device."""
        return Raycaster(mesh, self.spec)

    def first_hits(self, origins: np.ndarray, directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Nearest hit of each ray [R, 3]: (triangle id [R] with -1 for a miss, location [R, 3])."""
        o = np.asarray(origins, dtype=np.float64).reshape(-1, 3)
        d = np.asarray(directions, dtype=np.float64).reshape(-1, 3)
        if len(o) == 0:
            return np.full(0, -1, dtype=np.int64), np.zeros((0, 3))
        hits = self.rays.cast(torch.from_numpy(o), torch.from_numpy(d))
        tri, t = hits.tri.cpu().numpy(), hits.t.cpu().numpy()
        loc = np.where((tri >= 0)[:, None], o + t[:, None] * d, 0.0)
        return tri, loc

    def _tables(self) -> dict[str, Tensor]:
        """The mesh's per-face tables on the ray query's device (made once)."""
        if self._on_device is None:
            dev = self.rays.device
            vn = np.array(to_trimesh(self.mesh).vertex_normals, dtype=np.float32)
            t = {"faces": torch.as_tensor(self.faces, device=dev),
                 "face_normals": torch.as_tensor(self.face_normals, dtype=torch.float32, device=dev),
                 "vertex_normals": torch.as_tensor(vn, dtype=torch.float32, device=dev)}
            if self.mesh.uvs is not None:
                t["uvs"] = torch.as_tensor(np.asarray(self.mesh.uvs), dtype=torch.float32, device=dev)
            if self.texture is not None:
                t["texture"] = torch.as_tensor(self.texture, dtype=torch.float32, device=dev)
            self._on_device = t
        return self._on_device

    def passes(self, cameras: Cameras, normals: str = "face", device: str | torch.device = "cpu") -> MeshPasses:
        """All passes for every camera (rays through pixel centres); tensors on `device` (the CPU by default;
        `self.device` keeps them where the rays were cast)."""
        if normals not in ("face", "smooth"):
            raise ValueError(f"normals must be 'face' or 'smooth', got {normals!r}")
        C, H, W = len(cameras), cameras.height, cameras.width
        dev = self.rays.device
        vm = cameras.viewmats.double().to(dev)
        rot_t = vm[:, :3, :3].transpose(1, 2)
        eye = -(rot_t @ vm[:, :3, 3:])[..., 0]
        Kinv = torch.linalg.inv(cameras.Ks.double().to(dev))
        per = max(1, PIXELS_PER_CHUNK.get(dev.type, 1 << 20) // (H * W))
        parts = []
        for s in range(0, C, per):
            e = min(s + per, C)
            hits = self.rays.cast_cameras(Kinv[s:e], rot_t[s:e], eye[s:e], H, W)
            dirs = camera_directions(Kinv[s:e], rot_t[s:e], H, W).reshape(-1, 3).float()
            origins = eye[s:e].float().repeat_interleave(H * W, dim=0)
            parts.append(self._assemble(hits, origins, dirs, normals, (e - s, H, W), device))
        return MeshPasses(**{k: torch.cat([p[k] for p in parts]) for k in parts[0]})

    def _assemble(self, hits, origins: Tensor, dirs: Tensor, mode: str, shape: tuple[int, int, int], device) -> dict:
        """Passes [c, H, W, ...] on `device` from the hits of their camera rays (assembled on the query's device)."""
        tab = self._tables()
        tri, t, bary = hits.tri, hits.t.float(), hits.bary.float()  # float32 from here: the passes' own precision
        hit = tri >= 0
        k = tri.clamp_min(0)
        hitf = hit[:, None].float()
        if mode == "face":
            nrm = tab["face_normals"][k]
        else:
            n = (tab["vertex_normals"][tab["faces"][k]] * bary[..., None]).sum(1)
            nrm = n / n.norm(dim=1, keepdim=True).clamp_min(1e-12)
        nrm = nrm * hitf
        uv = (tab["uvs"][k] * bary[..., None]).sum(1) * hitf if "uvs" in tab else torch.zeros_like(dirs[:, :2])
        if "texture" in tab and "uvs" in tab:
            rgb = sample_texture_torch(tab["texture"], uv)
        else:  # grey, shaded by the view cosine
            cos = (nrm * dirs / dirs.norm(dim=1, keepdim=True)).sum(1, keepdim=True).abs()
            rgb = (0.8 * (0.25 + 0.75 * cos)).expand(-1, 3)
        out = {"mask": hit, "depth": torch.where(hit, t, 0.0), "points": (origins + t[:, None] * dirs) * hitf,
               "normal": nrm, "tri": torch.where(hit, tri, -1), "bary": bary * hitf, "uv": uv, "rgb": rgb * hitf}
        dtypes = {"mask": torch.bool, "tri": torch.int64}
        return {key: v.reshape(shape + v.shape[1:]).to(device, dtypes.get(key, torch.float32)) for key, v in out.items()}


def sample_texture_torch(texture: Tensor, uv: Tensor) -> Tensor:
    """`meshes.sample_texture` in torch (any device): texture [Ht, Wt, D] float32, uv [R, 2] -> [R, D] float32."""
    h, w = texture.shape[:2]
    col = uv[:, 0] * w - 0.5
    row = (1.0 - uv[:, 1]) * h - 0.5
    c0, r0 = torch.floor(col), torch.floor(row)
    fc, fr = (col - c0)[:, None].float(), (row - r0)[:, None].float()
    c0, r0 = c0.long(), r0.long()
    c1, r1 = (c0 + 1) % w, (r0 + 1) % h
    c0, r0 = c0 % w, r0 % h
    top = texture[r0, c0] * (1 - fc) + texture[r0, c1] * fc
    bottom = texture[r1, c0] * (1 - fc) + texture[r1, c1] * fc
    return top * (1 - fr) + bottom * fr


def mesh_passes(mesh: Mesh, cameras: Cameras, normals: str = "face", spec: RaySpec = RaySpec()) -> MeshPasses:
    """Depth, normal, mask, triangle id, barycentrics, UV and colour of `mesh` for every camera."""
    return Raycaster(mesh, spec).passes(cameras, normals)


def mesh_rgba(
    mesh: Mesh | Raycaster,
    cameras: Cameras,
    supersample: int = 2,
    background: tuple[float, float, float] | None = None,
) -> Tensor:
    """[C, H, W, 4] antialiased straight-alpha RGBA renders (supersample^2 rays per pixel, box filter).

    With `background`, RGB is composited over it and alpha is still the coverage.
    """
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    caster = mesh if isinstance(mesh, Raycaster) else Raycaster(mesh)
    s = supersample
    # filtered where the rays were cast (a CUDA job's supersampled passes never travel to the host)
    hi = caster.passes(cameras.resized(cameras.width * s, cameras.height * s), device=caster.device)
    C, H, W = len(cameras), cameras.height, cameras.width
    cover = hi.mask.float().reshape(C, H, s, W, s).mean(dim=(2, 4))
    premult = (hi.rgb * hi.mask[..., None]).reshape(C, H, s, W, s, 3).mean(dim=(2, 4))
    rgb = premult / cover.clamp_min(1e-8)[..., None]
    if background is not None:
        bg = torch.as_tensor(background, dtype=torch.float32, device=premult.device)
        rgb = premult + bg * (1 - cover[..., None])
    return torch.cat([rgb, cover[..., None]], dim=-1).cpu()
