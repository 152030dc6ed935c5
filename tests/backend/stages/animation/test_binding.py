"""Splats bound to a surface reproduce their centres and rotations at rest and follow any deformation."""

import numpy as np

from likeness3d.backend.stages.animation.binding import bind, matrix_to_quat, quat_to_matrix, triangle_frames
from likeness3d.backend.synthetic.animated import FRAMES, deform
from likeness3d.backend.synthetic.example import ellipsoid_mesh, true_texture


def _mesh():
    return ellipsoid_mesh(true_texture(16), rings=8, segments=16)


def test_quaternion_round_trip():
    q = np.random.default_rng(1).normal(size=(64, 4))
    R = quat_to_matrix(q)
    np.testing.assert_allclose(quat_to_matrix(matrix_to_quat(R)), R, atol=1e-9)
    np.testing.assert_allclose(R @ np.transpose(R, (0, 2, 1)), np.broadcast_to(np.eye(3), R.shape), atol=1e-9)


def test_binding_reproduces_the_rest_pose_and_follows_the_mesh():
    mesh = _mesh()
    rng = np.random.default_rng(0)
    v, f = mesh.vertices.astype(np.float64), mesh.faces.astype(np.int64)
    # splats near the surface: a point on a random triangle, pushed off it a little
    tri = rng.integers(0, len(f), 200)
    w = rng.dirichlet([1, 1, 1], 200)
    means = (v[f[tri]] * w[..., None]).sum(1) + rng.normal(scale=0.01, size=(200, 3))
    quats, scales = rng.normal(size=(200, 4)), rng.normal(-4, 0.3, size=(200, 3))
    b = bind(means, quats, scales, v, f)
    centre, rot, log_scale = b.pose(v, f)
    np.testing.assert_allclose(centre, means, atol=1e-5)
    np.testing.assert_allclose(quat_to_matrix(rot), quat_to_matrix(quats), atol=1e-5)
    np.testing.assert_array_equal(log_scale, scales.astype(np.float32))
    extra = b.to_extra()
    assert extra["bind_face"].dtype == np.int32 and extra["bind_u"].dtype == np.float32 and len(extra) == 11
    # posed: the centre is the triangle's barycentric point plus the offset along its normal at that frame,
    # and the rotation turns with the triangle's frame
    for frame in (FRAMES[2], FRAMES[5]):
        p = deform(v, frame).astype(np.float64)
        c, r, _ = b.pose(p, f)
        corners = p[f[b.face]]
        n = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
        n /= np.linalg.norm(n, axis=1, keepdims=True)
        want = (1 - b.u - b.v)[:, None] * corners[:, 0] + b.u[:, None] * corners[:, 1] + b.v[:, None] * corners[:, 2]
        extent = float(np.linalg.norm(p.max(0) - p.min(0)))
        assert np.abs(c - (want + b.offset[:, None] * n)).max() <= 1e-4 * extent
        frames = triangle_frames(p, f)[b.face]
        np.testing.assert_allclose(quat_to_matrix(r), frames @ quat_to_matrix(b.rot), atol=1e-5)
    # nearest triangle: the offsets stay the size of the push off the surface
    assert np.abs(b.offset).max() < 0.05
