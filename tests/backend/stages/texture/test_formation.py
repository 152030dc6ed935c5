"""How the photos' pixels were formed (stages.texture.formation) and what the maps may move
(stages.texture.evidence): the pixel filter of a photo is found from the photo itself, texels that agree are kept
bit for bit when the photos come from another renderer's filter, a wrong patch is still taken from them."""

import numpy as np
import pytest
import torch

from likeness3d.backend.stages.common.images import to_u8
from likeness3d.backend.stages.texture.agreement import formed_render
from likeness3d.backend.stages.texture.config import FidelityConfig
from likeness3d.backend.stages.texture.evidence import counterpart_weight
from likeness3d.backend.stages.texture.fidelity import finish_fidelity, prepare_fidelity
from likeness3d.backend.stages.texture.formation import cast_formation, estimate_formation
from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.views.mesh_passes import Raycaster, mesh_rgba
from likeness3d.backend.synthetic.shapes import uv_sphere
from likeness3d.protocol.assets import Camera, Mesh, Reference


def striped(size=96):
    """A sphere painted with fine high-contrast strokes (2-texel stripes and dots) on a smooth colour."""
    sphere = uv_sphere(1.0, 48, 24, texture_size=size, seed=5)
    tex = sphere.texture.copy()
    rr, cc = np.mgrid[0:size, 0:size]
    ink = ((cc // 2) % 4 == 0) & ((rr // 6) % 2 == 0)
    tex[ink, :3] = [20, 20, 30]
    return Mesh(sphere.vertices, sphere.faces, sphere.uvs, tex)


def photos(mesh, azimuths, filter_px, size=80):
    """`mesh` rendered from the front half under a pixel filter (0: the product's own box renders)."""
    caster = Raycaster(mesh)
    cams = orbit((0, 0, 0), 1.0, azimuths, [10.0], size, size)
    out = []
    for i in range(len(cams)):
        cam = cams[i:i + 1]
        rgba = formed_render(caster, cam, 4, filter_px) if filter_px > 0 else mesh_rgba(caster, cam, 3)[0]
        out.append(Reference(f"ref{i}", to_u8(rgba.numpy()), Camera(cam.Ks[0].double().numpy(),
                                                                  cam.viewmats[0].double().numpy(), size, size)))
    return tuple(out)


@pytest.mark.parametrize("blur", [0.0, 3.0])
def test_the_filter_estimate_finds_the_photos_own(blur):
    mesh = striped()
    caster = Raycaster(mesh)
    ref = photos(mesh, [0.0], blur)[0]
    from likeness3d.backend.stages.views.cameras import Cameras

    cam = Cameras.from_protocol([ref.camera])
    formation = cast_formation(caster, cam, 4)
    image = torch.as_tensor(ref.image[..., :3] / 255.0, dtype=torch.float32)
    inner = torch.as_tensor(ref.image[..., 3] == 255)
    estimate_formation(formation, torch.as_tensor(caster.texture), image, inner)
    assert formation.filter_px == blur, formation.scores
    assert min(formation.scores, key=formation.scores.get) == blur


@pytest.fixture(scope="module")
def other_renderer():
    """Photos of the striped truth through a 3 px Blackman-Harris filter; the initial asset is the truth but for
    a wrong green patch the front photo sees."""
    truth = striped()
    tex = truth.texture.copy()
    tex[40:56, 66:78, :3] = [0, 255, 0]
    initial = Mesh(truth.vertices, truth.faces, truth.uvs, tex)
    refs = photos(truth, [-30.0, 0.0, 30.0], 3.0)
    fid = prepare_fidelity(initial, refs, Raycaster(initial), FidelityConfig(), (96, 96))
    composed, _ = finish_fidelity(fid, FidelityConfig(), 16)
    return truth, initial, fid, composed


def test_agreeing_texels_are_kept_bit_for_bit_under_another_renderers_filter(other_renderer):
    truth, initial, fid, composed = other_renderer
    s = fid.surface
    out, init = (s.gather(np.asarray(t)[..., :3]).astype(np.int32) for t in (composed.texture, initial.texture))
    rows, cols = s.rows, s.cols
    far = ~((rows >= 34) & (rows < 62) & (cols >= 60) & (cols < 84))
    # fully trusted views (a grazing one may blend in the region map where the photo favours it: keep_grazing off)
    trusted = fid.observation.confidence.numpy() >= 1
    assert (trusted & far).sum() > 1000
    assert np.array_equal(out[trusted & far], init[trusted & far])
    assert all(r.report()["pixel_filter"]["filter_px"] >= 2.0 for r in fid.references)


def test_a_wrong_patch_is_still_taken_from_photos_of_another_renderer(other_renderer):
    truth, initial, fid, composed = other_renderer
    s = fid.surface
    out, init, true = (s.gather(np.asarray(t)[..., :3]).astype(np.float64) for t in (composed.texture, initial.texture, truth.texture))
    patch = (s.rows >= 42) & (s.rows < 54) & (s.cols >= 68) & (s.cols < 76) & fid.observation.observed.numpy()
    assert patch.sum() > 50
    before, after = np.abs(init[patch] - true[patch]).mean(), np.abs(out[patch] - true[patch]).mean()
    assert after < 0.4 * before, (before, after)


def test_a_hidden_colour_without_observed_counterpart_keeps_its_own():
    rgb = np.array([[0.9, 0.5, 0.6]] * 50 + [[0.9, 0.52, 0.6]] * 10 + [[0.1, 0.3, 0.9]] * 10, np.float32)
    observed = np.zeros(70, bool)
    observed[:50] = True
    w = counterpart_weight(rgb, observed, 10.0)
    assert np.all(w[:50] == 1) and np.all(w[50:60] > 0.7) and np.all(w[60:] == 0)
