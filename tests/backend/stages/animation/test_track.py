"""Tracking across frames: a photo at frame t observes the target pixels whose surface points it sees at t."""

import numpy as np
import torch

from likeness3d.backend.stages.animation.poses import Animation
from likeness3d.backend.stages.animation.track import track_over_frames
from likeness3d.backend.stages.views.cameras import Cameras, bounding_sphere, orbit
from likeness3d.backend.stages.views.track import KnownView, track_backward
from likeness3d.backend.synthetic.animated import animate
from likeness3d.backend.synthetic.example import ellipsoid_mesh, orbit_camera, true_texture


def test_a_photo_at_frame_t_is_tracked_against_the_mesh_posed_at_t():
    tex = true_texture(32)
    mesh = animate(ellipsoid_mesh(tex, rings=12, segments=24), tex)
    anim = Animation(mesh)
    cam = Cameras.from_protocol([orbit_camera(30.0, 10.0, 48)])
    posed = anim.caster(5)
    photo = KnownView(torch.rand(48, 48, 4).clamp_min(0.9), posed.passes(cam).depth[0], cam)
    center, radius = bounding_sphere(mesh.vertices)
    targets = orbit(center, radius, [0.0, 90.0, 200.0], [10.0], 40, 40, 40.0)
    tp = anim.caster(None).passes(targets, normals="smooth")
    got = track_over_frames(tp.tri, tp.bary, tp.mask, [photo], [5], anim)
    # the same pixels, by hand: their surface points moved to frame 5 and tracked as a static view would be
    idx = tp.mask.nonzero(as_tuple=True)
    pts, nrm = torch.zeros_like(tp.points), torch.zeros_like(tp.normal)
    pts[idx] = torch.as_tensor(anim.points(5, tp.tri[idx].numpy(), tp.bary[idx].double().numpy()), dtype=torch.float32)
    nrm[idx] = torch.as_tensor(anim.smooth_normals(5, tp.tri[idx].numpy(), tp.bary[idx].double().numpy()), dtype=torch.float32)
    want = track_backward(pts, nrm, tp.mask, [photo])
    assert torch.equal(got.observed, want.observed) and got.observed.sum() > 50
    assert torch.equal(got.infill, tp.mask & ~want.observed)
    # and it differs from pretending the photo saw the rest pose (the subject moved)
    static = track_backward(tp.points, tp.normal, tp.mask, [photo])
    assert int((static.observed != got.observed).sum()) > 0
    # two photos at two frames: each pixel takes the one that faces it best, with its global index
    photo2 = KnownView(photo.image, anim.caster(1).passes(cam).depth[0], cam)
    both = track_over_frames(tp.tri, tp.bary, tp.mask, [photo2, photo], [1, 5], anim)
    assert set(both.source[both.observed].unique().tolist()) <= {0, 1} and both.observed.sum() >= got.observed.sum()
    np.testing.assert_array_equal((both.source == 1).numpy() <= got.observed.numpy(), True)
