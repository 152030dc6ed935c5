"""Geometry of the fidelity benchmark's subjects, built in code (numpy only): surfaces of revolution, boxes
with UV atlases (islands may be mirrored or shared), parts combined into one mesh; the UV rasteriser that
maps texels to surface points; pinhole cameras on a sphere; and ray casting (trimesh + Embree) for the
regions some reference observes.

Conventions are the product's public ones: Blender world frame (Z up, metres), triangles counter-clockwise
seen from outside, per-corner UVs in Blender's convention (v = 0 at the image's bottom row), cameras as
OpenCV K + world-to-camera (x right, y down, z forward), pixel (0, 0) = centre of the top-left pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Rect = tuple[float, float, float, float]
"""A UV island's rectangle (u0, v0, u1, v1); u0 > u1 mirrors the island horizontally."""


@dataclass
class Part:
    vertices: np.ndarray  # [V, 3] float64
    faces: np.ndarray  # [F, 3] int64
    uvs: np.ndarray  # [F, 3, 2] float64, per corner


def combine(parts: list[Part]) -> Part:
    verts, faces, uvs, offset = [], [], [], 0
    for p in parts:
        verts.append(p.vertices)
        faces.append(p.faces + offset)
        uvs.append(p.uvs)
        offset += len(p.vertices)
    return Part(np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs))


def signed_volume(p: Part) -> float:
    a, b, c = (p.vertices[p.faces[:, k]] for k in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def lathe(profile: list[tuple[float, float]], segments: int, rect: Rect, center=(0.0, 0.0, 0.0),
          scale_xy=(1.0, 1.0), angle0_deg: float = -90.0) -> Part:
    """A surface of revolution about Z of `profile` [(r, z), ...], walked from bottom to top along the outside
    (outward normals); r = 0 at an end closes it with a pole fan. u follows the angle (starting at
    `angle0_deg`, -90 = the -Y front), v the profile's arc length, both mapped into `rect`."""
    prof = np.asarray(profile, np.float64)
    n, S = len(prof), segments
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(prof, axis=0), axis=1))])
    s = arc / arc[-1]
    u0, v0, u1, v1 = rect
    phi = np.radians(angle0_deg) + 2 * np.pi * np.arange(S) / S
    verts, index = [], {}
    for i, (r, z) in enumerate(prof):
        if r == 0.0:
            index[i] = [len(verts)] * (S + 1)
            verts.append((0.0, 0.0, z))
        else:
            first = len(verts)
            verts += [(r * np.cos(a) * scale_xy[0], r * np.sin(a) * scale_xy[1], z) for a in phi]
            index[i] = [first + j for j in range(S)] + [first]
    faces, uvs = [], []
    for i in range(n - 1):
        for j in range(S):
            a, b, c, d = index[i][j], index[i][j + 1], index[i + 1][j + 1], index[i + 1][j]
            ua, ub, um = u0 + (u1 - u0) * j / S, u0 + (u1 - u0) * (j + 1) / S, u0 + (u1 - u0) * (j + 0.5) / S
            va, vb = v0 + (v1 - v0) * s[i], v0 + (v1 - v0) * s[i + 1]
            cuv = [(ua if prof[i, 0] else um, va), (ub if prof[i, 0] else um, va),
                   (ub if prof[i + 1, 0] else um, vb), (ua if prof[i + 1, 0] else um, vb)]
            if a != b:
                faces.append((a, b, c))
                uvs.append((cuv[0], cuv[1], cuv[2]))
            if c != d:
                faces.append((a, c, d))
                uvs.append((cuv[0], cuv[2], cuv[3]))
    v = np.asarray(verts, np.float64) + np.asarray(center)
    return Part(v, np.asarray(faces, np.int64), np.asarray(uvs, np.float64))


def ellipsoid(radii, center, rect: Rect, rings: int = 24, segments: int = 48) -> Part:
    """A UV ellipsoid (lat-long island), poles on Z."""
    t = np.linspace(np.pi, 0.0, rings + 1)  # from the south pole up
    profile = [(0.0 if k in (0, rings) else float(np.sin(a)), float(np.cos(a)) * radii[2]) for k, a in enumerate(t)]
    return lathe(profile, segments, rect, center, scale_xy=(radii[0], radii[1]))


# (outward normal, in-plane axis for u, in-plane axis for v), counter-clockwise from outside
SIDES = {
    "+x": ((1, 0, 0), (0, 1, 0), (0, 0, 1)), "-x": ((-1, 0, 0), (0, -1, 0), (0, 0, 1)),
    "+y": ((0, 1, 0), (-1, 0, 0), (0, 0, 1)), "-y": ((0, -1, 0), (1, 0, 0), (0, 0, 1)),
    "+z": ((0, 0, 1), (1, 0, 0), (0, 1, 0)), "-z": ((0, 0, -1), (1, 0, 0), (0, -1, 0)),
}


def box(size, center, rects: dict[str, Rect], subdivisions: int = 4) -> Part:
    """An axis-aligned box; side name -> its UV rectangle (several sides may share one, u0 > u1 mirrors)."""
    n = subdivisions
    t = np.linspace(-0.5, 0.5, n + 1)
    verts, faces, uvs = [], [], []
    for side, (normal, eu, ev) in SIDES.items():
        normal, eu, ev = (np.asarray(a, np.float64) for a in (normal, eu, ev))
        u0, v0, u1, v1 = rects[side]
        base = len(verts)
        for b in t:
            for a in t:
                verts.append((0.5 * normal + a * eu + b * ev) * np.asarray(size) + np.asarray(center))
        def g(ia, ib):  # noqa: E306
            return (u0 + (u1 - u0) * ia / n, v0 + (v1 - v0) * ib / n)
        for ib in range(n):
            for ia in range(n):
                i00 = base + ib * (n + 1) + ia
                faces += [(i00, i00 + 1, i00 + n + 2), (i00, i00 + n + 2, i00 + n + 1)]
                uvs += [(g(ia, ib), g(ia + 1, ib), g(ia + 1, ib + 1)), (g(ia, ib), g(ia + 1, ib + 1), g(ia, ib + 1))]
    return Part(np.asarray(verts), np.asarray(faces, np.int64), np.asarray(uvs, np.float64))


def texel_samples(part: Part, height: int, width: int):
    """Texels covered by the UVs: (flat texel index [M], face [M], barycentrics [M, 3]); a texel under several
    triangles (shared or mirrored islands) appears once for each."""
    px = np.stack([part.uvs[..., 0] * width - 0.5, (1.0 - part.uvs[..., 1]) * height - 0.5], -1)  # [F, 3, 2]
    out_i, out_f, out_b = [], [], []
    for f, tri in enumerate(px):
        lo = np.floor(tri.min(0)).astype(int)
        hi = np.ceil(tri.max(0)).astype(int)
        lo, hi = np.maximum(lo, 0), np.minimum(hi, [width - 1, height - 1])
        if (hi < lo).any():
            continue
        xs, ys = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1))
        p = np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64)
        a, b, c = tri
        m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
        det = np.linalg.det(m)
        if abs(det) < 1e-12:
            continue
        l12 = np.linalg.solve(m, (p - a).T).T
        bary = np.column_stack([1 - l12.sum(1), l12])
        inside = (bary >= -1e-6).all(1)
        out_i.append((p[inside, 1] * width + p[inside, 0]).astype(np.int64))
        out_f.append(np.full(int(inside.sum()), f))
        out_b.append(bary[inside])
    return np.concatenate(out_i), np.concatenate(out_f), np.concatenate(out_b)


# --- cameras ----------------------------------------------------------------------------------------


@dataclass
class PinCam:
    name: str
    K: np.ndarray  # [3, 3]
    w2c: np.ndarray  # [4, 4] OpenCV axes
    width: int
    height: int

    @property
    def centre(self) -> np.ndarray:
        return np.linalg.inv(self.w2c)[:3, 3]


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    z = np.asarray(target, np.float64) - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-6:  # looking straight up or down
        x = np.cross(z, (0.0, 1.0, 0.0))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    w2c = np.eye(4)
    w2c[:3, :3] = np.stack([x, y, z])
    w2c[:3, 3] = -w2c[:3, :3] @ eye
    return w2c


def orbit_camera(name: str, center, distance: float, azimuth_deg: float, elevation_deg: float, size: int,
                 fov_deg: float = 40.0) -> PinCam:
    """A square camera on a sphere around `center`; azimuth 0 looks from -Y (the front), 90 from +X."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    eye = np.asarray(center) + distance * np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])
    f = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1.0]])
    return PinCam(name, K, look_at(eye, center), size, size)


# --- ray casting ------------------------------------------------------------------------------------


class Caster:
    """First hits of rays on a mesh (trimesh with Embree), and what reference cameras see."""

    def __init__(self, part: Part):
        import trimesh
        from trimesh.ray.ray_pyembree import RayMeshIntersector

        self.mesh = trimesh.Trimesh(part.vertices, part.faces, process=False, validate=False)
        self.normals = np.asarray(self.mesh.face_normals)
        self.rays = RayMeshIntersector(self.mesh)
        self.scale = float(np.linalg.norm(part.vertices.max(0) - part.vertices.min(0)))

    def first_hit(self, origins, dirs):
        """(hit [N] bool, point [N, 3], face [N]) of the first surface each ray meets."""
        n = len(origins)
        point, face, hit = np.zeros((n, 3)), np.full(n, -1), np.zeros(n, bool)
        if n == 0:
            return hit, point, face
        loc, ray, tri = self.rays.intersects_location(origins, dirs, multiple_hits=False)
        hit[ray], point[ray], face[ray] = True, loc, tri
        return hit, point, face

    def pixels(self, cam: PinCam):
        """(hit [H, W], point [H, W, 3], face normal [H, W, 3]) through the pixel centres of `cam`."""
        j, i = np.meshgrid(np.arange(cam.width), np.arange(cam.height))
        pix = np.stack([j, i, np.ones_like(j)], -1).reshape(-1, 3).astype(np.float64)
        c2w = np.linalg.inv(cam.w2c)
        d = (pix @ np.linalg.inv(cam.K).T) @ c2w[:3, :3].T
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        hit, point, face = self.first_hit(np.broadcast_to(c2w[:3, 3], d.shape).copy(), d)
        normal = np.where(hit[:, None], self.normals[np.maximum(face, 0)], 0.0)
        shape = (cam.height, cam.width)
        return hit.reshape(shape), point.reshape(shape + (3,)), normal.reshape(shape + (3,))

    def seen_by(self, points, normals, cams: list[PinCam], min_cosine: float) -> np.ndarray:
        """[N] bool: some camera sees the point, unoccluded, inside its frame, within acos(min_cosine) of
        the normal."""
        seen = np.zeros(len(points), bool)
        tol = 1e-3 * self.scale
        for cam in cams:
            c = cam.centre
            d = points - c
            dist = np.linalg.norm(d, axis=1)
            d = d / np.maximum(dist, 1e-12)[:, None]
            facing = -(d * normals).sum(1) > min_cosine
            cam_pts = points @ cam.w2c[:3, :3].T + cam.w2c[:3, 3]
            uvw = cam_pts @ cam.K.T
            z = cam_pts[:, 2]
            uv = uvw[:, :2] / np.maximum(z, 1e-9)[:, None]
            inside = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] <= cam.width - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] <= cam.height - 0.5)
            todo = np.flatnonzero(facing & inside & ~seen)
            hit, point, _ = self.first_hit(np.broadcast_to(c, (len(todo), 3)).copy(), d[todo])
            reach = np.linalg.norm(point - c, axis=1)
            seen[todo[hit & (reach >= dist[todo] - tol)]] = True
        return seen
