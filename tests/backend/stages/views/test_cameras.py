"""Camera batches, look-at, orbits, and ordering of views by angular distance to sources."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.views.cameras import (
    Cameras,
    angular_distance,
    bounding_sphere,
    intrinsics,
    look_at,
    order_by_sources,
    orbit,
    rings,
    turntable,
)


def project(cams: Cameras, points: torch.Tensor) -> torch.Tensor:
    """[C, P, 3] pixel x, y and depth of world points [P, 3]."""
    cam = torch.einsum("cij,pj->cpi", cams.viewmats[:, :3, :3], points) + cams.viewmats[:, None, :3, 3]
    pix = torch.einsum("cij,cpj->cpi", cams.Ks, cam)
    return torch.cat([pix[..., :2] / pix[..., 2:], cam[..., 2:]], dim=-1)


def test_look_at_front_view_axes():
    # Camera on -Y looking at the origin: Blender's front view. World +X is image right, +Z image up.
    vm = look_at(torch.tensor([[0.0, -5.0, 0.0]]), torch.zeros(3))[0]
    R, t = vm[:3, :3], vm[:3, 3]
    assert torch.allclose(R @ torch.zeros(3) + t, torch.tensor([0.0, 0.0, 5.0]))
    assert torch.allclose(R @ torch.tensor([1.0, 0, 0]), torch.tensor([1.0, 0, 0]), atol=1e-6)
    assert torch.allclose(R @ torch.tensor([0, 0, 1.0]), torch.tensor([0, -1.0, 0]), atol=1e-6)  # y down
    assert torch.allclose(torch.det(R), torch.tensor(1.0))


def test_look_at_straight_down_is_well_defined():
    vm = look_at(torch.tensor([[0.0, 0.0, 3.0]]), torch.zeros(3))[0]
    R = vm[:3, :3]
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert torch.allclose(R[2], torch.tensor([0.0, 0.0, -1.0]))


def test_orbit_grid_order_and_framing():
    cams = orbit((0.5, -1.0, 2.0), 0.8, [0, 90, 180, 270], [0, 45], 64, 48)
    assert len(cams) == 8
    center = torch.tensor([0.5, -1.0, 2.0])
    # Every camera looks at the centre: it projects onto the principal point.
    pc = project(cams, center[None])[:, 0]
    assert torch.allclose(pc[:, 0], cams.Ks[:, 0, 2], atol=1e-3)
    assert torch.allclose(pc[:, 1], cams.Ks[:, 1, 2], atol=1e-3)
    # Azimuth 0 sits at -Y, azimuth 90 at +X (elevation 0 row first).
    offsets = cams.centers - center
    assert offsets[0, 1] < 0 and abs(offsets[0, 0]) < 1e-5
    assert offsets[1, 0] > 0 and abs(offsets[1, 1]) < 1e-5
    assert offsets[4, 2] > 0  # second row is raised
    # The whole bounding sphere is inside every image.
    dirs = torch.nn.functional.normalize(torch.randn(2000, 3, generator=torch.Generator().manual_seed(0)), dim=-1)
    p = project(cams, center + 0.8 * dirs)
    assert (p[..., 0] >= 0).all() and (p[..., 0] <= 63).all()
    assert (p[..., 1] >= 0).all() and (p[..., 1] <= 47).all()


def test_cameras_validation_names_the_argument():
    K = intrinsics(40, 32, 32)[None]
    vm = torch.eye(4)[None]
    with pytest.raises(ValueError, match="Ks"):
        Cameras(K[:, :2], vm, 32, 32)
    with pytest.raises(ValueError, match="viewmats"):
        Cameras(K, vm[:, :3], 32, 32)
    with pytest.raises(ValueError, match="width"):
        Cameras(K, vm, 0, 32)
    with pytest.raises(ValueError, match="2 cameras"):
        Cameras(K.repeat(2, 1, 1), vm, 32, 32)
    with pytest.raises(ValueError, match="radius"):
        orbit((0, 0, 0), -1.0, [0], [0], 8, 8)
    with pytest.raises(ValueError, match="fov_deg"):
        intrinsics(190, 8, 8)


def test_resized_keeps_the_pixel_centre_convention():
    cams = orbit((0, 0, 0), 1.0, [30], [20], 40, 30)
    big = cams.resized(80, 60)
    pts = torch.tensor([[0.1, 0.2, -0.3], [0.0, 0.0, 0.0]])
    a, b = project(cams, pts)[0], project(big, pts)[0]
    # Pixel centres at integers: x_big = (x + 0.5) * 2 - 0.5.
    assert torch.allclose(b[:, :2], (a[:, :2] + 0.5) * 2 - 0.5, atol=1e-4)


def test_indexing_centers_and_protocol_import():
    cams = orbit((0, 0, 0), 1.0, [0, 120, 240], [10], 16, 16)
    sub = cams[[0, 2]]
    assert len(sub) == 2 and torch.equal(sub.viewmats[1], cams.viewmats[2])
    assert len(cams[1]) == 1
    # centres invert the view matrices
    c = cams.centers
    homog = torch.cat([c, torch.ones(3, 1)], dim=1)
    assert torch.allclose((cams.viewmats @ homog[..., None])[:, :3, 0], torch.zeros(3, 3), atol=1e-5)
    proto = [SimpleNamespace(K=cams.Ks[i].double().numpy(), w2c=cams.viewmats[i].double().numpy(),
                             width=16, height=16) for i in range(3)]
    back = Cameras.from_protocol(proto)
    assert torch.allclose(back.viewmats, cams.viewmats) and back.width == 16
    proto[1] = SimpleNamespace(K=proto[1].K, w2c=proto[1].w2c, width=32, height=16)
    with pytest.raises(ValueError, match="one image size"):
        Cameras.from_protocol(proto)
    merged = Cameras.cat([cams, sub])
    assert len(merged) == 5


def test_bounding_sphere_contains_all_points():
    pts = np.random.default_rng(1).normal(size=(500, 3)) * [1, 2, 0.5] + [3, 0, -1]
    center, radius = bounding_sphere(pts)
    assert (np.linalg.norm(pts - center.numpy(), axis=1) <= radius + 1e-5).all()


def test_angular_distance_and_ordering():
    targets = turntable((0, 0, 0), 1.0, 12, 16, 16, elevation_deg=0)  # every 30 degrees
    sources = targets[[0]]
    d = angular_distance(targets, sources, center=(0, 0, 0))[:, 0]
    expected = torch.tensor([0, 30, 60, 90, 120, 150, 180, 150, 120, 90, 60, 30], dtype=torch.float32)
    assert torch.allclose(d, expected, atol=1e-2)
    # Optical axes give the same angles for cameras looking at the centre.
    assert torch.allclose(angular_distance(targets, sources)[:, 0], expected, atol=1e-2)
    order, nearest = order_by_sources(targets, sources, center=(0, 0, 0))
    assert order[0] == 0 and order[-1] == 6
    assert (nearest[1:] >= nearest[:-1]).all()


def test_rings_follow_the_nearest_source():
    targets = turntable((0, 0, 0), 1.0, 12, 16, 16, elevation_deg=0)
    sources = targets[[0, 6]]  # front and back: nothing is further than 90 degrees
    groups = rings(targets, sources, (20.0, 90.0, 180.0), center=(0, 0, 0))
    assert [len(g) for g in groups] == [2, 10, 0]
    assert set(groups[0].tolist()) == {0, 6}
    near = angular_distance(targets, sources, (0, 0, 0)).min(1).values
    assert (near[groups[1]][1:] >= near[groups[1]][:-1]).all()
    one = rings(targets, targets[[0]], center=(0, 0, 0))
    assert [len(g) for g in one] == [1, 6, 5]
    with pytest.raises(ValueError, match="bounds_deg"):
        rings(targets, sources, (90.0, 20.0))
