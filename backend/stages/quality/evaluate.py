"""Quality against a ground truth: PSNR and SSIM (`metrics`, the SSIM the fit's loss uses) of textured meshes
rendered at held-out true views, split into the region some reference photo observes and the region that had
to be infilled."""

from __future__ import annotations

from ....protocol.assets import Reference
from ..common.images import float_tensor
from .metrics import mse_to_psnr, ssim_map
from ..views.cameras import Cameras
from ..views.mesh_passes import Raycaster, mesh_rgba
from ....protocol.assets import Mesh
from ..views.track import KnownView, TrackConfig, track_backward


SCORES = ("the textured meshes (mesh.glb: the refined texture baked on the artist's UVs; and the initial asset), "
          "ray cast unlit at the held-out cameras, against the true views over their foreground")
"""What `evaluate`'s figures score, in its output: the splats are not scored."""


def evaluate(
    meshes: dict[str, Mesh],
    truth_views: list[Reference],
    sources: list[KnownView],
    track: TrackConfig = TrackConfig(),
    observed_by=None,
) -> dict:
    """For each mesh (e.g. {"refined": ..., "initial": ...}), PSNR/SSIM over the truth views' foreground,
    split by whether a source observes the pixel. Keys: psnr_observed, psnr_infilled, ssim_..., and the
    same with the mesh name as suffix for meshes other than "refined"; pixel counts. `observed_by(passes)` ->
    [H, W] bool replaces the track against `sources` (animated meshes track by surface identity across frames)."""
    casters = {k: Raycaster(m) for k, m in meshes.items()}
    first = next(iter(casters.values()))
    sq = {k: {"observed": 0.0, "infilled": 0.0} for k in meshes}
    ss = {k: {"observed": 0.0, "infilled": 0.0} for k in meshes}
    count = {"observed": 0, "infilled": 0}
    for view in truth_views:
        cam = Cameras.from_protocol([view.camera])
        truth = float_tensor(view.image)
        passes = first.passes(cam, normals="smooth")
        obs = (observed_by(passes) if observed_by is not None else
               track_backward(passes.points, passes.normal, passes.mask, sources, track).observed[0])
        fg = passes.mask[0] & (truth[..., 3] > 0.5)
        regions = {"observed": fg & obs, "infilled": fg & ~obs}
        for name, caster in casters.items():
            img = mesh_rgba(caster, cam, supersample=3)[0, ..., :3]
            err = ((img - truth[..., :3]) ** 2).mean(-1)
            smap = ssim_map(img[None].double(), truth[None, ..., :3].double())[0].float()
            for region, m in regions.items():
                sq[name][region] += float(err[m].sum())
                ss[name][region] += float(smap[m].sum())
        for region, m in regions.items():
            count[region] += int(m.sum())
    out: dict = {"scores": SCORES, "pixels_observed": count["observed"], "pixels_infilled": count["infilled"]}
    for name in meshes:
        suffix = "" if name == "refined" else f"_{name}"
        for region in ("observed", "infilled"):
            n = count[region]
            out[f"psnr_{region}{suffix}"] = mse_to_psnr(sq[name][region] / n) if n else None
            out[f"ssim_{region}{suffix}"] = ss[name][region] / n if n else None
    return out
