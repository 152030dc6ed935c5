"""The bundled example subject, generated in code: a textured ellipsoid "pebble" with painted markings, its
true texture, reference photos rendered exactly (analytic ray casting, no renderer needed) and their cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...protocol.assets import Asset, Camera, Mesh, Reference
from ..stages.common.images import to_u8

RADII = np.array([0.45, 0.35, 0.55])
"""Semi-axes in metres (x, y, z); the pebble stands on the Blender ground plane's origin, Z up."""


def true_texture(size: int = 256) -> np.ndarray:
    """[size, size, 4] uint8 RGBA: the subject's real markings (lat-long layout, row 0 = north pole)."""
    v, u = np.meshgrid(np.linspace(1, 0, size), np.linspace(0, 1, size, endpoint=False), indexing="ij")
    lon, lat = (u - 0.5) * 2 * np.pi, (v - 0.5) * np.pi
    base = np.stack([0.55 + 0.1 * np.sin(3 * lon), 0.45 + 0.1 * np.cos(2 * lat), 0.35 + 0.05 * np.sin(5 * lon)], -1)
    stripes = (np.sin(8 * lat + 2 * np.sin(2 * lon)) > 0.6)[..., None]
    spot = (((lon - 0.0) / 0.5) ** 2 + ((lat - 0.2) / 0.35) ** 2 < 1.0)[..., None]  # a blue eye-spot facing -Y
    rgb = np.where(stripes, [0.15, 0.1, 0.08], base)
    rgb = np.where(spot, [0.1, 0.35, 0.8], rgb)
    rgba = np.concatenate([rgb, np.ones_like(rgb[..., :1])], -1)
    return to_u8(rgba)


def ellipsoid_mesh(texture: np.ndarray, rings: int = 32, segments: int = 64) -> Mesh:
    """A UV ellipsoid with lat-long per-corner UVs (Blender convention: v = 0 at the bottom of the image)."""
    theta = np.linspace(0, np.pi, rings + 1)  # polar angle from +Z
    phi = np.linspace(-np.pi, np.pi, segments + 1)  # longitude, 0 facing -Y
    t, p = np.meshgrid(theta, phi[:-1], indexing="ij")
    dirs = np.stack([np.sin(t) * np.sin(p), -np.sin(t) * np.cos(p), np.cos(t)], -1)
    verts = (dirs * RADII + [0, 0, RADII[2]]).reshape(-1, 3).astype(np.float32)
    faces, uvs = [], []
    for r in range(rings):
        for s in range(segments):
            s1 = (s + 1) % segments
            a, b, c, d = r * segments + s, r * segments + s1, (r + 1) * segments + s1, (r + 1) * segments + s
            ua, ub = s / segments, (s + 1) / segments
            va, vb = 1 - r / rings, 1 - (r + 1) / rings
            # counter-clockwise seen from outside
            faces += [(a, d, c), (a, c, b)]
            uvs += [((ua, va), (ua, vb), (ub, vb)), ((ua, va), (ub, vb), (ub, va))]
    return Mesh(verts, np.array(faces, np.int32), np.array(uvs, np.float32), texture)


def look_at(eye: np.ndarray, target: np.ndarray, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """[4, 4] world-to-camera in OpenCV axes (x right, y down, z toward the target)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, up)
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])
    w2c = np.eye(4)
    w2c[:3, :3] = R
    w2c[:3, 3] = -R @ eye
    return w2c


def orbit_camera(azimuth_deg: float, elevation_deg: float, size: int, distance: float = 2.4, fov_deg: float = 40.0) -> Camera:
    """A camera on a sphere around the pebble's centre; azimuth 0 looks from -Y (the front)."""
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    centre = np.array([0.0, 0.0, RADII[2]])
    eye = centre + distance * np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])
    f = 0.5 * size / np.tan(np.radians(fov_deg) / 2)
    K = np.array([[f, 0, (size - 1) / 2], [0, f, (size - 1) / 2], [0, 0, 1]])
    return Camera(K, look_at(eye, centre), size, size)


def render_truth(camera: Camera, texture: np.ndarray) -> np.ndarray:
    """[H, W, 4] uint8: the true subject seen by `camera`, by exact ray-ellipsoid intersection."""
    H, W = camera.height, camera.width
    j, i = np.meshgrid(np.arange(W), np.arange(H))
    pix = np.stack([j, i, np.ones_like(j)], -1).reshape(-1, 3).astype(np.float64)
    c2w = camera.c2w
    d = (pix @ np.linalg.inv(camera.K).T) @ c2w[:3, :3].T
    o = np.broadcast_to(c2w[:3, 3] - [0, 0, RADII[2]], d.shape)
    # in the ellipsoid's scaled frame the surface is the unit sphere
    os_, ds = o / RADII, d / RADII
    a, b, c = (ds * ds).sum(1), 2 * (os_ * ds).sum(1), (os_ * os_).sum(1) - 1
    disc = b * b - 4 * a * c
    hit = disc > 0
    t = (-b - np.sqrt(np.where(hit, disc, 0))) / (2 * a)
    hit &= t > 0
    n = os_ + t[:, None] * ds  # unit-sphere point = direction in lat-long terms
    lon = np.arctan2(n[:, 0], -n[:, 1])
    lat = np.arcsin(np.clip(n[:, 2], -1, 1))
    u, v = lon / (2 * np.pi) + 0.5, lat / np.pi + 0.5
    th, tw = texture.shape[:2]
    col = np.clip((u * tw - 0.5).round().astype(int) % tw, 0, tw - 1)
    row = np.clip(((1 - v) * th - 0.5).round().astype(int), 0, th - 1)
    rgba = np.zeros((H * W, 4), np.uint8)
    rgba[hit] = texture[row[hit], col[hit]]
    rgba[hit, 3] = 255
    return rgba.reshape(H, W, 4)


def example_asset(image_size: int = 128, texture_size: int = 256) -> Asset:
    """The demo case: the pebble mesh with its texture and three reference photos from the front half."""
    tex = true_texture(texture_size)
    mesh = ellipsoid_mesh(tex)
    refs = []
    for name, az, el in (("front", 0.0, 10.0), ("front_left", -50.0, 20.0), ("front_right", 45.0, 5.0)):
        cam = orbit_camera(az, el, image_size)
        refs.append(Reference(name, render_truth(cam, tex), cam))
    return Asset(mesh, tuple(refs), class_word="pebble", name="example_pebble")


# --- the demo case with a ground truth (needs the backend's torch stages) -------------------------------


def damaged_texture(texture: np.ndarray, hue_shift_deg: float = 120.0, blur_sigma: float = 5.0,
                    hidden_from_deg: float = 60.0, hidden_to_deg: float = 100.0) -> np.ndarray:
    """What an image-to-3D model might produce: the side facing away from the photos (longitudes beyond
    about 80 degrees from the front) hue-shifted and blurred, blended in smoothly."""
    import cv2

    h, w = texture.shape[:2]
    lon = np.abs((np.arange(w) + 0.5) / w - 0.5) * 360.0  # degrees from the front meridian
    t = np.clip((lon - hidden_from_deg) / (hidden_to_deg - hidden_from_deg), 0.0, 1.0)
    weight = (t * t * (3 - 2 * t))[None, :, None]  # smoothstep
    hsv = cv2.cvtColor(np.ascontiguousarray(texture[..., :3]), cv2.COLOR_RGB2HSV_FULL).astype(np.int32)
    hsv[..., 0] = (hsv[..., 0] + int(round(hue_shift_deg / 360.0 * 256))) % 256
    wrong = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL)
    wrong = cv2.GaussianBlur(wrong, (0, 0), blur_sigma, borderType=cv2.BORDER_WRAP if hasattr(cv2, "BORDER_WRAP") else cv2.BORDER_REFLECT)
    rgb = texture[..., :3] * (1 - weight) + wrong * weight
    out = texture.copy()
    out[..., :3] = np.clip(rgb + 0.5, 0, 255).astype(np.uint8)
    return out


@dataclass(frozen=True)
class ExampleCase:
    """The demo's subject: the initial asset (hidden side wrong), the truth, photos and held-out views."""

    initial: Mesh
    truth: Mesh
    references: tuple[Reference, ...]
    eval_views: tuple[Reference, ...]
    class_word: str = "pebble"


def render_references(mesh: Mesh, cameras: list[Camera], names: list[str]) -> tuple[Reference, ...]:
    """Antialiased renders of `mesh` (its texture, unlit) as RGBA uint8 references."""
    from ..stages.views.cameras import Cameras
    from ..stages.views.mesh_passes import Raycaster, mesh_rgba

    caster = Raycaster(mesh)
    refs = []
    for name, cam in zip(names, cameras):
        rgba = mesh_rgba(caster, Cameras.from_protocol([cam]), supersample=3)[0].numpy()
        refs.append(Reference(name, to_u8(rgba), cam))
    return tuple(refs)


def example_case(image_size: int = 128, texture_size: int = 256) -> ExampleCase:
    """Photos from the front half (azimuths -45, 0, 50); held-out views all around, between the orbit's."""
    tex = true_texture(texture_size)
    truth = ellipsoid_mesh(tex)
    initial = Mesh(truth.vertices, truth.faces, truth.uvs, damaged_texture(tex))
    ref_views = [("front", 0.0, 10.0), ("front_left", -45.0, 20.0), ("front_right", 50.0, 0.0)]
    refs = render_references(truth, [orbit_camera(a, e, image_size) for _, a, e in ref_views], [n for n, _, _ in ref_views])
    eval_az = [22.5 + 45.0 * i for i in range(8)]
    evals = render_references(truth, [orbit_camera(a, 25.0, image_size) for a in eval_az], [f"eval_{int(a)}" for a in eval_az])
    return ExampleCase(initial, truth, refs, evals)
