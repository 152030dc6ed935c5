"""The Gaussian set: quaternion maths, validation, and initialisation from a textured mesh."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from likeness3d.backend.stages.splats.gaussians import (
    Gaussians,
    from_mesh,
    quat_to_rotation,
    random_gaussians,
    rotation_to_quat,
    sample_surface,
)
from likeness3d.protocol.assets import Mesh
from likeness3d.protocol.errors import InvalidAsset
from likeness3d.backend.synthetic.shapes import uv_sphere


def test_quaternion_round_trip_including_half_turns():
    R = Rotation.random(200, random_state=3).as_matrix()
    half_turns = Rotation.from_rotvec(np.pi * np.eye(3)).as_matrix()  # trace -1: the hard branch
    R = torch.as_tensor(np.concatenate([R, half_turns]), dtype=torch.float32)
    q = rotation_to_quat(R)
    assert torch.allclose(q.norm(dim=-1), torch.ones(len(q)), atol=1e-5)
    assert torch.allclose(quat_to_rotation(q), R, atol=1e-5)
    # wxyz: a rotation of 90 degrees about Z is (cos 45, 0, 0, sin 45).
    rz = torch.as_tensor(Rotation.from_euler("z", 90, degrees=True).as_matrix(), dtype=torch.float32)[None]
    assert torch.allclose(rotation_to_quat(rz)[0], torch.tensor([2**-0.5, 0, 0, 2**-0.5]), atol=1e-6)


def test_gaussians_validation_names_the_field():
    g = random_gaussians(10)
    with pytest.raises(ValueError, match="quats"):
        Gaussians(g.means, g.quats[:, :3], g.log_scales, g.logit_opacities, g.sh)
    with pytest.raises(ValueError, match="sh"):
        Gaussians(g.means, g.quats, g.log_scales, g.logit_opacities, torch.zeros(10, 5, 3))
    assert g.with_sh_degree(2).sh.shape == (10, 9, 3)
    assert torch.equal(g.with_sh_degree(2).with_sh_degree(0).sh, g.sh)
    arrays = g.to_arrays()
    assert torch.equal(Gaussians.from_arrays(arrays).means, g.means)


def gradient_sphere(n_lon=64, n_lat=32) -> Mesh:
    """A UV sphere whose texture's red channel is 1 - v, so red = polar angle / pi on the surface."""
    s = uv_sphere(1.0, n_lon, n_lat, texture_size=64)
    rows = (np.arange(64) + 0.5) / 64  # row r has v = 1 - rows[r], so 1 - v = rows[r]
    tex = np.zeros((64, 64, 4), np.float32)
    tex[..., 0] = rows[:, None]
    tex[..., 3] = 1.0
    return Mesh(s.vertices, s.faces, s.uvs, tex)


def test_from_mesh_on_sphere_is_on_surface_flat_and_textured():
    mesh = gradient_sphere()
    g = from_mesh(mesh, count=3000, flatness=0.1, seed=1)
    assert len(g) == 3000
    p = g.means
    # On the (tessellated) unit sphere: within the sagitta of a 5.6 degree facet.
    assert ((p.norm(dim=-1) - 1).abs() < 4e-3).all()
    # Flat along the surface: the rotated local z axis is the radial direction, the thin scale is on z.
    R = quat_to_rotation(g.quats)
    cos = (R[:, :, 2] * torch.nn.functional.normalize(p, dim=-1)).sum(-1).abs()
    assert (cos > 0.99).all()
    s = g.scales
    assert torch.allclose(s[:, 2], 0.1 * s[:, 0]) and torch.allclose(s[:, 0], s[:, 1])
    # Colour through the UVs: red = polar angle / pi (bilinear texture, linear in rows).
    polar = torch.acos(p[:, 2].clamp(-1, 1) / p.norm(dim=-1)) / np.pi
    away_from_poles = (polar > 0.05) & (polar < 0.95)
    assert (g.rgb[away_from_poles, 0] - polar[away_from_poles]).abs().max() < 0.02
    assert torch.allclose(g.opacities, torch.full((3000,), 0.9))


def test_scales_follow_the_spacing():
    mesh = uv_sphere(1.0, 32, 16, texture_size=16)
    sparse, dense = from_mesh(mesh, count=500), from_mesh(mesh, count=4000)
    ratio = sparse.scales[:, 0].median() / dense.scales[:, 0].median()
    assert 2.0 < ratio < 4.0  # spacing ~ 1/sqrt(count): sqrt(8) = 2.8


def test_surface_samples_are_evenly_spaced():
    mesh = uv_sphere(1.0, 32, 16, texture_size=16)
    pts, faces, bary = sample_surface(mesh, 2000, seed=0)
    assert pts.shape == (2000, 3) and faces.shape == (2000,) and np.allclose(bary.sum(1), 1, atol=1e-5)
    nn = cKDTree(pts).query(pts, k=2)[0][:, 1]
    rng = np.random.default_rng(0)
    rand = rng.normal(size=(2000, 3))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    nn_rand = cKDTree(rand).query(rand, k=2)[0][:, 1]
    # Rejection sampling removes close pairs: far fewer near neighbours than uniform random points.
    assert (nn < 0.5 * np.median(nn)).mean() < 0.5 * (nn_rand < 0.5 * np.median(nn_rand)).mean()


def test_from_mesh_rejects_bad_input():
    mesh = uv_sphere(1.0, 8, 4, texture_size=8)
    with pytest.raises(ValueError, match="count"):
        from_mesh(mesh, count=0)
    with pytest.raises(ValueError, match="opacity"):
        from_mesh(mesh, count=10, opacity=1.5)
    with pytest.raises(InvalidAsset, match="mesh.faces references vertex 25 but the mesh has 10 vertices"):
        Mesh(mesh.vertices[:10], mesh.faces.copy())
    untextured = Mesh(mesh.vertices, mesh.faces)
    assert torch.allclose(from_mesh(untextured, count=50).rgb, torch.full((50, 3), 0.5), atol=1e-6)
