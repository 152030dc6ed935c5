"""TIRE: Track, Inpaint, Resplat (seed 000; DESIGN.md section 5.1), on what Blender knows.

The asset's geometry is given, so the learned estimators of the paper become exact computation: the track is
reprojection with depth tests, masks and depths come from ray casting. The personalised inpainter is a
subject LoRA on a Stable Diffusion inpainting model; without diffusion weights the classical OpenCV
inpainter stands in, and the progress text and report say so.

This module imports no torch at module level (the server front imports it to validate configs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Literal

from ...protocol.assets import Asset, Reference
from ..config import number, require, whole
from ..stages.diffusion.config import SubjectLoraConfig
from ..stages.splats.config import FitConfig
from ..stages.texture.config import BakeConfig, FidelityConfig
from ..stages.tire.config import InpaintConfig, ResplatConfig
from ..stages.views.config import CoverageConfig, RayBackend, ray_backend_rule
from .common import flat_texture_size

DESCRIPTION = "refine the asset's texture from reference photos: track, personalised progressive inpainting, resplat"


@dataclass(frozen=True)
class TireConfig:
    """TIRE's settings, a tree of its stages' configs; defaults are the `quality` preset (the authors' orbit:
    24 azimuths x 2 elevations at 512 px)."""

    resolution: int = 512
    """Side of the square target views (pixels)."""
    azimuths: int = 24
    """Target views per elevation, evenly spaced around the subject."""
    elevations_deg: tuple[float, ...] = (0.0, 30.0)
    fov_deg: float = 40.0
    inpaint: InpaintConfig = InpaintConfig()
    """Step 3: progressive inpainting (strength, rings) and the track's visibility tests."""
    lora: SubjectLoraConfig = SubjectLoraConfig()
    """Step 3: the subject LoRA on the inpainting model (TIRE publishes no hyper-parameters: DreamBooth-LoRA's)."""
    resplat: ResplatConfig = ResplatConfig()
    """Step 4: consistency rounds, loss weights, Gaussians initialised on the mesh."""
    fit: FitConfig = FitConfig(steps=2000, refine_start=500, refine_every=100, reset_every=100_000)
    """Step 4: the Gaussian fit (3DGS's learning rates; no opacity reset in a fit this short)."""
    bake: BakeConfig = BakeConfig()
    """Step 5: the bake onto the artist's UVs (`texture_size` None keeps the mesh's own size)."""
    fidelity: FidelityConfig = FidelityConfig()
    """Step 0 and 6: what the references may change (kept / taken from the photos / infilled), their lighting,
    the colour regions the infill is mapped by."""
    coverage: CoverageConfig = CoverageConfig()
    """Step 1: views added after the orbit until every used texel is seen (budget, candidates)."""
    models: str = ""
    """Diffusion models: a folder (diffusers layout by role), "tiny" (smoke test: noise), or "" for
    $LIKENESS3D_MODELS, and the OpenCV inpainter when that is unset."""
    inpainter: Literal["auto", "diffusion", "opencv"] = "auto"
    ray_backend: RayBackend = "auto"
    """Mesh passes, texel lookup, view planning and bake: "auto" (Warp's BVH on a CUDA job device, Embree on
    the CPU), "embree" or "warp" (on the job device; needs warp-lang)."""
    turntable_views: int = 8
    seed: int = 0
    """Seeds the whole run: the fit, the LoRA, the inpainter's noise."""

    RENAMED: ClassVar[dict] = {
        "strength": "inpaint.strength", "rings_deg": "inpaint.rings_deg", "lora_steps": "lora.steps",
        "consistency_rounds": "resplat.rounds", "reinpaint_strength": "resplat.reinpaint_strength",
        "disagree_threshold": "resplat.disagree_threshold", "source_weight": "resplat.source_weight",
        "infill_weight": "resplat.infill_weight", "gaussians": "resplat.gaussians",
        "fit_resolution": "resplat.fit_resolution", "fit_steps": "fit.steps",
        "texture_size": ("bake.texture_size", flat_texture_size),
    }
    """Flat names from before the config tree, still accepted (`--set fit_steps=500` is `fit.steps=500`)."""

    def __post_init__(self) -> None:
        require(
            self,
            (whole(self.resolution, 16, 4096) and self.resolution % 8 == 0, "resolution", "must be a multiple of 8 in [16, 4096]"),
            (whole(self.azimuths, 1, 360), "azimuths", "must be an integer in [1, 360]"),
            (len(self.elevations_deg) >= 1 and all(number(e, -89, 89) for e in self.elevations_deg), "elevations_deg",
             "must be angles in [-89, 89]"),
            (number(self.fov_deg) and 1 <= self.fov_deg <= 150, "fov_deg", "must be in [1, 150]"),
            (whole(self.turntable_views, 1, 64), "turntable_views", "must be an integer in [1, 64]"),
            ray_backend_rule(self.ray_backend),
        )


PRESETS: dict[str, dict] = {
    "fast": {"resolution": 96, "azimuths": 12, "elevations_deg": (0.0, 30.0), "turntable_views": 6, "lora": {"steps": 100},
             "resplat": {"gaussians": 2500, "fit_resolution": 64}, "fit": {"steps": 150, "refine_start": 37}},
    "quality": {},
}
"""`fast` fits a CPU in minutes; `quality` is the authors' orbit at 512 px for a GPU."""


def make_inpainter(config: TireConfig, ctx, asset: Asset, device: str):
    """The diffusion inpainter with a subject LoRA when models are configured, else the labelled classical one
    (whose infill is the region-mapped initial texture: it keeps the views' content)."""
    from ..model_dirs import configured_models
    from ..stages.tire.inpaint_cv import OpenCVInpainter

    models = configured_models(config.models)
    if config.inpainter == "opencv" or (config.inpainter == "auto" and not models):
        return OpenCVInpainter(transfer=False)
    from ..stages.diffusion.components import load_components
    from ..stages.diffusion.sample.subject import personalised_inpainter

    return personalised_inpainter(
        load_components("inpaint", models, device=device), asset.references, asset.class_word,
        lora=config.lora, resolution=config.resolution, seed=config.seed,
        progress=lambda step, total, text: ctx.progress("personalise", step, total, f"subject LoRA: {text}"),
        cancel=ctx.check_cancel, publish=ctx.add_artifact, batch_views=config.inpaint.batch_views)


def run(ctx, asset: Asset, config: TireConfig, eval_views: list[Reference] | None = None) -> dict:
    """Refine `asset`; artifacts: mesh.glb, splats.ply, texture.png, sheet.png, report.json. Returns the report."""
    from dataclasses import replace

    import torch

    from ..export.ply import write_ply
    from ..stages.common.images import to_u8
    from ..stages.quality.evaluate import evaluate
    from ..stages.texture.bake_views import bake_views
    from ..stages.texture.fidelity import finish_fidelity, prepare_fidelity
    from ..stages.tire.progressive import progressive_inpaint
    from ..stages.tire.resplat import resplat
    from ..stages.views.cameras import bounding_sphere
    from ..stages.views.mesh_passes import Raycaster
    from ..stages.views.rays import RaySpec
    from ..stages.views.targets import target_views
    from ..stages.views.track import KnownView, track_backward
    from ..stages.animation.poses import Animation
    from . import tire_4d
    from .common import StageClock, check_refinable, export_texture
    from .peak_memory import PeakMemory
    from .texture_checks import check_texturable

    mesh = asset.mesh
    check_refinable(asset, "TIRE")
    input_report = check_texturable(asset, "TIRE")
    torch.manual_seed(config.seed)
    memory, clock = PeakMemory(ctx.device), StageClock()
    caster = Raycaster(mesh, RaySpec(config.ray_backend, str(ctx.device)))
    ctx.log(f"rays: {caster.backend}")
    # An animated mesh (DESIGN.md 5.3) is refined once on its rest pose; each photo sees it posed at its frame.
    anim = Animation(mesh, caster.spec) if mesh.animated else None
    frames = tire_4d.frames_of(asset.references)

    # 0. The artist's texture at its own size on the surface; each photo's lighting removed and its agreement
    #    with the initial asset mapped; every texel's observation; the colour regions' mappings.
    size = tuple(config.bake.texture_size or mesh.texture.shape[:2])
    fid = prepare_fidelity(mesh, asset.references, caster, config.fidelity, size,
                           tire_4d.fidelity_poses(anim, asset.references) if anim else None)
    sources = [KnownView(r.image, r.depth, r.camera) for r in fid.references]
    ctx.progress("observe", 1, 1, f"{int(fid.observation.observed.sum())} of {len(fid.surface)} texels observed")
    clock.lap("observe")

    # 1. Target views: the orbit, then views added until every used texel is seen; rendered from the
    #    region-mapped initial texture (what the inpainting starts from).
    center, radius = bounding_sphere(mesh.vertices)
    seen = tire_4d.seen_by_sources(fid.surface, sources, frames, anim, config.coverage.min_cosine) if anim else None
    tv = target_views(caster, fid.surface.points, fid.surface.normals, [] if anim else sources, config.resolution,
                      config.azimuths, config.elevations_deg, config.fov_deg, config.coverage, seen=seen)
    targets, tp, plan = tv.cameras, tv.passes, tv.plan
    initial = fid.mapped_colour(tp.uv, tp.mask)
    ctx.progress("render", 1, 1, f"{len(targets)} target views at {config.resolution} px "
                 f"({len(plan.report)} added for coverage)", to_u8(initial[0]))
    clock.lap("render")

    # 2. Track, backward: which reference photo observes each target pixel (exact reprojection, depth tests).
    tracked = (tire_4d.track(tp, sources, frames, anim, config.inpaint.track) if anim else
               track_backward(tp.points, tp.normal, tp.mask, sources, config.inpaint.track, device=ctx.device))
    clock.lap("track")

    # 3. Personalise: a subject LoRA on the inpainting model (or the labelled classical fallback).
    inpainter = make_inpainter(config, ctx, asset, ctx.device)
    ctx.log(f"inpainter: {inpainter.label}")
    ctx.progress("inpaint", 0, len(targets), f"inpainter: {inpainter.label}")
    clock.lap("personalise")

    # 4. Inpaint, progressive: ring by ring from the references, finished rings anchoring the next.
    short = inpainter.label.split(" (")[0]
    inp = progressive_inpaint(initial, tp, targets, sources, tracked, inpainter, config.inpaint, center,
                              lambda done, total, text, view: ctx.progress("inpaint", done, total, f"{text} [{short}]", to_u8(view)),
                              device=ctx.device)
    clock.lap("inpaint")

    # 5. Resplat: consistency rounds (fit, re-inpaint what disagrees), then the final Gaussian fit.
    # (an animated mesh's photos show other poses: the rest-pose fit takes their colours through the tracked views)
    rs = resplat(mesh, inp.views, targets, inp.infill, [] if anim else sources, inpainter, config.resplat,
                 replace(config.fit, seed=config.seed), ctx.device,
                 progress=lambda st, i, n, text, view: ctx.progress(st, i, n, text, None if view is None else to_u8(view)),
                 check_cancel=ctx.check_cancel)
    clock.lap("resplat")

    # 6. Export: kept texels bit for bit, the photos' colours where they disagree, the infill elsewhere
    #    (the inpainted views baked, or the region-mapped texture for the classical fallback).
    if getattr(inpainter, "personalised", False):
        baked, unseen = bake_views(mesh, [(rs.views, targets, 1.0, tp)], replace(config.bake, texture_size=size, dilate_px=0),
                                   spec=caster.spec)
        composed, fill = finish_fidelity(fid, config.fidelity, config.bake.dilate_px, baked.numpy(), (~unseen).numpy())
    else:
        composed, fill = finish_fidelity(fid, config.fidelity, config.bake.dilate_px)
    refined = export_texture(ctx, mesh, composed.texture, caster, center, radius, config.turntable_views)
    if anim:
        animation_report = tire_4d.export_animation(ctx, anim, rs.gaussians)
    else:
        ctx.add_artifact("splats.ply", write_ply(None, **rs.gaussians.to_arrays()))
    clock.lap("export")

    report = _report(asset, config, ctx.device, inpainter, targets, sources, tp, inp, rs, fid, plan, composed, fill)
    report["input"] = input_report
    report["rays"] = caster.backend
    if anim:
        report["frames"] = animation_report.pop("frames")
        report["animation"] = animation_report
    if eval_views and anim:
        from ..stages.animation.evaluate import evaluate_frames

        report["metrics"] = evaluate_frames({"refined": refined.texture, "initial": mesh.texture}, eval_views, sources,
                                            frames, anim, config.inpaint.track)
        clock.lap("evaluate")
    elif eval_views:
        report["metrics"] = evaluate({"refined": refined, "initial": mesh}, eval_views, sources, spec=caster.spec)
        clock.lap("evaluate")
    report["seconds"] = clock.report()
    report["peak_memory"] = memory.read()
    ctx.add_artifact("report.json", json.dumps(report, indent=1).encode())
    return report


def _report(asset, config, device, inpainter, targets, sources, tp, inp, rs, fid, plan, composed, fill) -> dict:
    """report.json's settings, views, coverage and counts (seconds, memory and metrics are added by run)."""
    from ..config import config_to_dict

    fg = max(int(tp.mask.sum()), 1)
    training = getattr(inpainter, "training", None)
    return {
        "pipeline": "tire",
        "asset": asset.name,
        "class_word": asset.class_word,
        "device": device,
        "inpainter": inpainter.label,
        "personalised": bool(getattr(inpainter, "personalised", False)),
        "settings": config_to_dict(config),
        "views": {"targets": len(targets), "references": len(sources), "resolution": config.resolution},
        "coverage": {
            "observed_by_references": round(int(inp.observed.sum()) / fg, 4),
            "infilled": round(int(inp.infill.sum()) / fg, 4),
            "texels_unseen": fill["texels_unseen"],
            "texels_unseen_by_views": int((~plan.seen).sum()),
            "texels_filled_on_surface": fill["texels_filled_on_surface"],
            "views_added": plan.report,
            **rs.consistency_report(),
        },
        "texels": {**composed.report(), "infill_source": fill["infill_source"],
                   "texture_size": [fid.surface.height, fid.surface.width]},
        "references": [r.report() for r in fid.references],
        "colour_regions": {**fid.regions.report(), "island_palette": fid.palette},
        "colour_continuation": fid.continuation,
        **({"lora": {"steps": training.steps, "seconds": round(training.seconds, 3),
                     "last_loss": round(training.losses[-1], 5), "cuda_graphs": training.cuda_graphs,
                     "graph_note": training.graph_note}} if training is not None else {}),
        "models": {"inpaint": inpainter.components.provenance()} if getattr(inpainter, "components", None) else {},
        "gaussians": len(rs.gaussians),
    }
