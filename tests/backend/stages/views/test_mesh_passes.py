"""Mesh passes against analytic shapes: exact ray-sphere and ray-box depth, normals, UVs and colour."""

import math

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.views.cameras import Cameras, intrinsics, look_at, orbit
from likeness3d.backend.stages.views.mesh_passes import Raycaster, mesh_passes, mesh_rgba
from likeness3d.protocol.assets import Mesh
from likeness3d.backend.stages.views.meshes import sample_texture, texture_float
from likeness3d.backend.synthetic.shapes import uv_cube, uv_sphere


def pixel_rays(cams: Cameras, c: int):
    """World origin [3] and directions [H, W, 3] scaled so that camera z = 1 (ray parameter = depth)."""
    K, vm = cams.Ks[c].double(), cams.viewmats[c].double()
    ys, xs = torch.meshgrid(torch.arange(cams.height, dtype=torch.float64),
                            torch.arange(cams.width, dtype=torch.float64), indexing="ij")
    pix = torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)
    d_cam = pix @ torch.linalg.inv(K).T
    R, t = vm[:3, :3], vm[:3, 3]
    return -(R.T @ t), d_cam @ R


def test_sphere_depth_normals_mask_against_the_exact_sphere():
    center = torch.tensor([0.2, -0.1, 0.3], dtype=torch.float64)
    mesh = uv_sphere(1.0, 128, 64, texture_size=32, center=tuple(center.tolist()))
    cams = orbit(center.tolist(), 1.0, [30.0, 200.0], [20.0, -50.0], 48, 40)
    p = mesh_passes(mesh, cams, normals="smooth")
    pf = Raycaster(mesh).passes(cams, normals="face")
    assert p.depth.shape == (4, 40, 48) and p.normal.shape == (4, 40, 48, 3) and p.tri.dtype == torch.int64
    for c in range(len(cams)):
        o, d = pixel_rays(cams, c)
        oc = o - center
        a, b, cc = (d * d).sum(-1), 2 * (d * oc).sum(-1), (oc * oc).sum() - 1.0
        disc = b * b - 4 * a * cc
        s = (-b - disc.clamp_min(0).sqrt()) / (2 * a)  # nearest root = camera z-depth
        closest = ((oc + d * (-b / (2 * a))[..., None]).norm(dim=-1))  # ray's distance to the centre
        assert not p.mask[c][closest > 1.0].any()  # the polyhedron is inside the sphere
        inner = closest < 0.97
        assert p.mask[c][inner].all()
        hit = oc + d * s[..., None]
        exact_n = hit / hit.norm(dim=-1, keepdim=True)
        cos_view = (-(d / d.norm(dim=-1, keepdim=True)) * exact_n).sum(-1)
        frontal = inner & (cos_view > 0.3)
        # Depth: within the facet sagitta (6e-4 m) divided by the view cosine.
        assert (p.depth[c][frontal].double() - s[frontal]).abs().max() < 3e-3
        n_smooth = (p.normal[c][frontal].double() * exact_n[frontal]).sum(-1)
        n_face = (pf.normal[c][frontal].double() * exact_n[frontal]).sum(-1)
        assert n_smooth.min() > math.cos(math.radians(0.5))
        assert n_face.min() > math.cos(math.radians(2.5))  # half a 2.8 degree facet
        assert torch.allclose(p.points[c][frontal].double(), (o + d * s[..., None])[frontal], atol=3e-3)
    assert (p.tri[~p.mask] == -1).all() and (p.tri[p.mask] >= 0).all()
    assert (p.depth[~p.mask] == 0).all()


def ray_box(o, d, half):
    """Slab intersection with the box [-half, half]^3: nearest t [H, W] (inf on miss) and face normal."""
    inv = 1.0 / torch.where(d.abs() > 1e-12, d, torch.full_like(d, 1e-12))
    t1, t2 = (-half - o) * inv, (half - o) * inv
    tmin, tmax = torch.minimum(t1, t2), torch.maximum(t1, t2)
    t_near, axis = tmin.max(dim=-1)
    t_far = tmax.min(dim=-1).values
    hit = (t_near <= t_far) & (t_near > 0)
    normal = torch.zeros_like(d)
    sign = -torch.sign(d.gather(-1, axis[..., None]))[..., 0]
    normal.scatter_(-1, axis[..., None], sign[..., None])
    return torch.where(hit, t_near, torch.full_like(t_near, float("inf"))), normal


def test_cube_depth_and_normals_are_exact():
    mesh = uv_cube(1.0, subdivisions=3, texture_size=32)
    cams = orbit((0, 0, 0), 0.87, [35.0, 160.0, 290.0], [25.0, -30.0], 40, 32)
    p = mesh_passes(mesh, cams)
    for c in range(len(cams)):
        o, d = pixel_rays(cams, c)
        t, normal = ray_box(o, d, 0.5)
        hit = torch.isfinite(t)
        assert torch.equal(p.mask[c], hit) or (p.mask[c] != hit).float().mean() < 0.002  # edge-grazing rays
        both = hit & p.mask[c]
        assert (p.depth[c][both].double() - t[both]).abs().max() < 1e-5
        assert (p.normal[c][both].double() - normal[both]).abs().max() < 1e-6


def test_cube_uv_and_colour_from_above():
    margin, size = 0.04, 2.0
    mesh = uv_cube(size, subdivisions=2, texture_size=64, margin=margin)
    eye = torch.tensor([[0.1, -0.2, 4.0]])
    cams = Cameras(intrinsics(30, 32, 32)[None], look_at(eye, torch.zeros(3)), 32, 32)
    p = mesh_passes(mesh, cams)
    top = p.mask[0] & (p.normal[0, ..., 2] > 0.99)
    assert top.sum() > 300
    pts = p.points[0][top].double()
    # The +Z side (the fifth) owns atlas cell (1, 1): u in [1/3 + m, 2/3 - m], v in [1/2 + m, 1 - m],
    # u along +X, v along +Y.
    u = 1 / 3 + margin + (pts[:, 0] / size + 0.5) * (1 / 3 - 2 * margin)
    v = 1 / 2 + margin + (pts[:, 1] / size + 0.5) * (1 / 2 - 2 * margin)
    assert torch.allclose(p.uv[0][top].double(), torch.stack([u, v], -1), atol=1e-5)
    colour = sample_texture(texture_float(mesh.texture), np.stack([u.numpy(), v.numpy()], -1))
    assert np.abs(p.rgb[0][top].numpy() - colour).max() < 1e-4


def test_rgba_coverage_matches_the_projected_disc():
    mesh = uv_sphere(1.0, 96, 48, texture_size=32)
    cams = orbit((0, 0, 0), 1.0, [0.0], [0.0], 64, 64, fov_deg=40.0, margin=1.2)
    rgba = mesh_rgba(mesh, cams, supersample=4, background=(1.0, 1.0, 1.0))
    assert rgba.shape == (1, 64, 64, 4)
    dist = cams.centers[0].norm().item()
    f = cams.Ks[0, 0, 0].item()
    r_px = f * math.tan(math.asin(1.0 / dist))
    area = rgba[0, ..., 3].sum().item()
    # Polyhedron slightly inside the sphere; coverage is exact to the 1/16 sub-sample grid.
    assert abs(area - math.pi * r_px**2) < 0.5 * 2 * math.pi * r_px
    partial = ((rgba[..., 3] > 0.05) & (rgba[..., 3] < 0.95)).sum()
    assert partial > 0.5 * 2 * math.pi * r_px  # the silhouette is antialiased
    untextured = Mesh(mesh.vertices, mesh.faces)
    grey = mesh_rgba(untextured, cams, supersample=1)
    assert grey[..., :3][grey[..., 3] > 0].min() > 0.15  # shaded, never black


def test_bad_normals_mode():
    with pytest.raises(ValueError, match="normals"):
        mesh_passes(uv_cube(1.0), orbit((0, 0, 0), 1.0, [0], [0], 8, 8), normals="vertex")
    with pytest.raises(ValueError, match="supersample"):
        mesh_rgba(uv_cube(1.0), orbit((0, 0, 0), 1.0, [0], [0], 8, 8), supersample=0)
