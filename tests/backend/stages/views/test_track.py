"""Backward tracking on an analytic scene: a sphere seen by one source; IoU against exact visibility."""

import math

import torch

from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.views.mesh_passes import mesh_passes, mesh_rgba
from likeness3d.backend.synthetic.shapes import uv_sphere
from likeness3d.backend.stages.views.track import KnownView, TrackConfig, track_backward


def test_sphere_observed_mask_matches_exact_visibility():
    sphere = uv_sphere(radius=1.0, n_lon=128, n_lat=64)
    source = orbit((0, 0, 0), 1.0, [0.0], [10.0], 96, 96)
    targets = orbit((0, 0, 0), 1.0, [30.0, 60.0, 100.0, 150.0], [0.0, 25.0], 64, 64)
    src_pass = mesh_passes(sphere, source)
    src_img = mesh_rgba(sphere, source, supersample=2)
    tp = mesh_passes(sphere, targets, normals="smooth")
    cfg = TrackConfig(max_angle_deg=75.0)
    known = [KnownView(src_img[0], src_pass.depth[0], source)]
    res = track_backward(tp.points, tp.normal, tp.mask, known, cfg)
    # exact: a point of a convex sphere is visible from the source when it faces the source's centre within
    # the grazing limit (and projects into the image, which holds here: the whole sphere is in frame)
    c = torch.linalg.inv(source.viewmats[0])[:3, 3]
    p = tp.points
    n = p / p.norm(dim=-1, keepdim=True).clamp_min(1e-9)  # exact sphere normals
    cos = ((c - p) / (c - p).norm(dim=-1, keepdim=True) * n).sum(-1)
    exact = tp.mask & (cos > math.cos(math.radians(cfg.max_angle_deg)))
    for i in range(len(targets)):
        inter = (exact[i] & res.observed[i]).sum().item()
        union = (exact[i] | res.observed[i]).sum().item()
        if union == 0:
            continue  # the back views see nothing the source sees, and neither says otherwise
        print(f"view {i}: IoU {inter / union:.3f} over {union} px")
        assert inter / union >= 0.95, (i, inter / union)
    # infill is the rest of the foreground; the back-most views are almost all infill
    assert torch.equal(res.infill, tp.mask & ~res.observed)
    assert res.infill[3].sum() > 0.9 * tp.mask[3].sum()
    # observed pixels carry the source's colours: compare with the target's own true texture colour
    err = (res.colour[res.observed] - tp.rgb[res.observed]).abs().mean().item()
    assert err < 0.05, err


def test_occluded_points_are_not_observed():
    """A small sphere hidden behind a big one: its front faces the source, but the big one occludes it."""
    import numpy as np

    from likeness3d.protocol.assets import Mesh

    big = uv_sphere(radius=1.0, n_lon=64, n_lat=32)
    small = uv_sphere(radius=0.3, n_lon=32, n_lat=16, center=(0.0, 2.0, 0.0))
    mesh = Mesh(np.concatenate([big.vertices, small.vertices]).astype(np.float32),
                        np.concatenate([big.faces, small.faces + len(big.vertices)]).astype(np.int32))
    source = orbit((0, 0, 0), 1.0, [0.0], [0.0], 64, 64)  # from -Y: the small sphere is behind the big one
    top = orbit((0, 1.0, 0), 2.0, [0.0], [89.0], 64, 64)
    sp, tp = mesh_passes(mesh, source), mesh_passes(mesh, top)
    rgba = torch.ones(64, 64, 4)
    res = track_backward(tp.points, tp.normal, tp.mask, [KnownView(rgba, sp.depth[0], source)])
    on_small = tp.mask[0] & (tp.points[0, ..., 1] > 1.6)
    assert on_small.sum() > 20
    assert not res.observed[0][on_small].any()
