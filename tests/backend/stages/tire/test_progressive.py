"""Progressive inpainting: rings in order, anchors feed later rings, observed pixels keep the sources' colours;
the classical inpainter keeps pixels outside its mask."""

import torch

from likeness3d.backend.stages.views.cameras import orbit
from likeness3d.backend.stages.tire.inpaint_cv import OpenCVInpainter
from likeness3d.backend.stages.views.mesh_passes import Raycaster, mesh_rgba
from likeness3d.backend.stages.tire.progressive import InpaintConfig, progressive_inpaint
from likeness3d.backend.synthetic.shapes import uv_sphere
from likeness3d.backend.stages.views.track import KnownView, track_backward


class Recorder(OpenCVInpainter):
    """The real classical inpainter, recording what each call was asked to fill."""

    def __init__(self):
        super().__init__()
        object.__setattr__(self, "calls", [])

    def __call__(self, images, masks, strength=1.0, valid=None):
        self.calls.append((len(images), int(masks.sum()), strength))
        return super().__call__(images, masks, strength, valid)


def test_rings_anchor_and_keep_observed_colours():
    sphere = uv_sphere(radius=1.0, n_lon=64, n_lat=32)
    caster = Raycaster(sphere)
    src_cam = orbit((0, 0, 0), 1.0, [0.0], [0.0], 48, 48)
    source = KnownView(mesh_rgba(caster, src_cam)[0], caster.passes(src_cam).depth[0], src_cam)
    targets = orbit((0, 0, 0), 1.0, [10.0, 60.0, 120.0, 180.0], [0.0], 32, 32)
    tp = caster.passes(targets, normals="smooth")
    initial = torch.full((4, 32, 32, 3), 0.5)
    rec = Recorder()
    cfg = InpaintConfig(strength=0.3)
    tracked = track_backward(tp.points, tp.normal, tp.mask, [source], cfg.track)
    res = progressive_inpaint(initial, tp, targets, [source], tracked, rec, cfg)
    assert res.ring.tolist() == [0, 1, 2, 2]  # 10 deg, 60 deg, 120 and 180 deg from the source
    assert [c[0] for c in rec.calls] == [1, 1, 2] and all(c[2] == 0.3 for c in rec.calls)
    # the nearest view is mostly observed; the back view mostly infilled
    assert res.observed[0].sum() > 0.8 * tp.mask[0].sum()
    assert res.infill[3].sum() > 0.8 * tp.mask[3].sum()
    # observed pixels carry the source's (true texture) colours, not the grey initial render
    obs = res.observed[0]
    assert (res.views[0, ..., :3][obs] - tp.rgb[0][obs]).abs().mean() < 0.06
    assert torch.equal(res.views[..., 3] > 0.5, tp.mask)


def test_classical_inpainter_keeps_outside_and_moves_colours():
    img = torch.zeros(1, 16, 16, 3)
    img[..., 0] = 0.8  # known: red
    img[0, 4:12, 4:12] = torch.tensor([0.1, 0.1, 0.9])  # initial content inside the mask: blue
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[0, 4:12, 4:12] = True
    out = OpenCVInpainter()(img, mask, 0.3)
    assert torch.equal(out[~mask], img[~mask])
    assert out[mask][:, 0].mean() > 0.6 and out[mask][:, 2].mean() < 0.3  # now the known pixels' colour
    few = OpenCVInpainter(min_known=10_000)(img, mask, 0.3)  # too few known pixels: Telea from the border
    assert torch.equal(few[~mask], img[~mask]) and few[mask][:, 0].mean() > 0.6
