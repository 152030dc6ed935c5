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
from typing import Literal

from ...protocol.assets import Asset, Reference

DESCRIPTION = "refine the asset's texture from reference photos: track, personalised progressive inpainting, resplat"


@dataclass(frozen=True)
class TireConfig:
    """TIRE's settings; defaults are the `quality` preset (the authors' orbit: 24 azimuths x 2 elevations)."""

    resolution: int = 512
    """Side of the square target views (pixels)."""
    azimuths: int = 24
    """Target views per elevation, evenly spaced around the subject."""
    elevations_deg: tuple[float, ...] = (0.0, 30.0)
    fov_deg: float = 40.0
    strength: float = 0.3
    """Fraction of the diffusion schedule denoised from the initial render (TIRE: 0.15 too weak, 0.5 too strong)."""
    rings_deg: tuple[float, ...] = (20.0, 90.0, 180.0)
    """Progressive inpainting rings by angular distance to the nearest source."""
    consistency_rounds: int = 1
    """Rounds of (fit Gaussians to all views, re-inpaint where the fitted renders disagree)."""
    reinpaint_strength: float = 0.15
    """Strength of the low-strength re-inpainting in the consistency rounds."""
    disagree_threshold: float = 0.08
    """Mean absolute RGB difference above which a view pixel disagrees with the fitted render."""
    source_weight: float = 4.0
    """Loss and bake weight of the reference views relative to the target views."""
    infill_weight: float = 0.5
    """Loss weight of inpainted pixels relative to observed ones."""
    gaussians: int = 60_000
    """Gaussians initialised on the mesh surface for the resplat."""
    fit_resolution: int = 0
    """Side the views are downsampled to for the Gaussian fit (0: the target resolution)."""
    fit_steps: int = 2000
    texture_size: int = 0
    """Side of the baked texture; 0 keeps the mesh's own texture size (1024 when it has none)."""
    lora_steps: int = 400
    """Subject LoRA steps (DreamBooth-LoRA convention; TIRE publishes none)."""
    models: str = ""
    """Diffusion models: a folder (diffusers layout by role), "tiny" (smoke test: noise), or "" for
    $LIKENESS3D_MODELS, and the OpenCV inpainter when that is unset."""
    inpainter: Literal["auto", "diffusion", "opencv"] = "auto"
    turntable_views: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (16 <= self.resolution <= 4096 and self.resolution % 8 == 0, "resolution must be a multiple of 8 in [16, 4096]", self.resolution),
            (1 <= self.azimuths <= 360, "azimuths must be in [1, 360]", self.azimuths),
            (len(self.elevations_deg) >= 1 and all(-89 <= e <= 89 for e in self.elevations_deg), "elevations_deg must be in [-89, 89]", self.elevations_deg),
            (0.0 <= self.strength <= 1.0, "strength must be in [0, 1]", self.strength),
            (0 <= self.consistency_rounds <= 10, "consistency_rounds must be in [0, 10]", self.consistency_rounds),
            (self.gaussians >= 100, "gaussians must be >= 100", self.gaussians),
            (self.fit_steps >= 1, "fit_steps must be >= 1", self.fit_steps),
            (self.texture_size == 0 or 16 <= self.texture_size <= 8192, "texture_size must be 0 or in [16, 8192]", self.texture_size),
            (1 <= self.turntable_views <= 64, "turntable_views must be in [1, 64]", self.turntable_views),
        ]
        for ok, what, value in checks:
            if not ok:
                raise ValueError(f"{what}, got {value!r}")


PRESETS: dict[str, dict] = {
    "fast": {"resolution": 96, "azimuths": 12, "elevations_deg": (0.0, 30.0), "gaussians": 2500, "fit_resolution": 64,
             "fit_steps": 150, "lora_steps": 100, "turntable_views": 6},
    "quality": {},
}
"""`fast` fits a CPU in minutes; `quality` is the authors' orbit at 512 px for a GPU."""


def make_inpainter(config: TireConfig, ctx, asset: Asset, device: str):
    """The diffusion inpainter with a subject LoRA when models are configured, else the labelled OpenCV one."""
    import os

    from ..stages.tire.inpaint_cv import OpenCVInpainter

    models = config.models or os.environ.get("LIKENESS3D_MODELS", "")
    if config.inpainter == "opencv" or (config.inpainter == "auto" and not models):
        return OpenCVInpainter()
    from ..stages.diffusion.sample.subject import personalised_inpainter

    return personalised_inpainter(models, asset, config, ctx, device)


def run(ctx, asset: Asset, config: TireConfig, eval_views: list[Reference] | None = None) -> dict:
    """Refine `asset`; artifacts: mesh.glb, splats.ply, texture.png, sheet.png, report.json. Returns the report."""
    import torch

    from ..export.ply import write_ply
    from ..stages.views.cameras import Cameras, bounding_sphere, orbit
    from ..stages.quality.evaluate import evaluate
    from ..stages.splats.fit import FitConfig
    from ..stages.views.mesh_passes import Raycaster
    from ..stages.tire.progressive import InpaintConfig, progressive_inpaint
    from ..stages.tire.resplat import ResplatConfig, resplat
    from ..stages.views.track import KnownView
    from .common import StageClock, check_refinable, export_textured, float_image, to_u8
    from .peak_memory import PeakMemory

    mesh = asset.mesh
    check_refinable(asset, "TIRE")
    torch.manual_seed(config.seed)
    memory = PeakMemory(ctx.device)
    clock = StageClock()
    lap = clock.lap

    # 1. Render the initial asset along an orbit of target views.
    center, radius = bounding_sphere(mesh.vertices)
    az = [360.0 * i / config.azimuths for i in range(config.azimuths)]
    targets = orbit(center, radius, az, list(config.elevations_deg), config.resolution, config.resolution, config.fov_deg)
    caster = Raycaster(mesh)
    tp = caster.passes(targets, normals="smooth")
    initial = tp.rgb  # the texture at each pixel centre; an antialiased render would cost 4x the rays
    ctx.progress("render", 1, 1, f"{len(targets)} target views at {config.resolution} px", to_u8(initial[0]))
    lap("render")

    # 2. Track: the reference photos become known views, with the asset's depth seen from each.
    sources = []
    for ref in asset.references:
        cam = Cameras.from_protocol([ref.camera])
        sources.append(KnownView(float_image(ref.image), caster.passes(cam).depth[0], cam))
    lap("track")

    # 3. Inpaint, personalised and progressive, ring by ring from the sources.
    inpainter = make_inpainter(config, ctx, asset, ctx.device)
    ctx.log(f"inpainter: {inpainter.label}")
    ctx.progress("inpaint", 0, len(targets), f"inpainter: {inpainter.label}")
    lap("personalise")

    def on_view(done, total, text, preview):
        ctx.progress("inpaint", done, total, f"{text} [{inpainter.label.split(' (')[0]}]", to_u8(preview))

    inp = progressive_inpaint(initial, tp.points, tp.normal, tp.mask, tp.depth, targets, sources, inpainter,
                              InpaintConfig(strength=config.strength, rings_deg=config.rings_deg), center, on_view)
    lap("inpaint")

    # 4. Consistency and resplat: alternate fitting Gaussians and low-strength re-inpainting, then the final fit.
    rcfg = ResplatConfig(
        rounds=config.consistency_rounds, reinpaint_strength=config.reinpaint_strength,
        disagree_threshold=config.disagree_threshold, source_weight=config.source_weight,
        infill_weight=config.infill_weight, gaussians=config.gaussians, fit_size=config.fit_resolution,
        fit=FitConfig(steps=config.fit_steps, refine_start=min(500, config.fit_steps // 4), refine_every=100,
                      reset_every=100_000, seed=config.seed),
    )
    rs = resplat(mesh, inp.views, targets, inp.infill, sources, inpainter, rcfg, ctx.device,
                 progress=lambda st, i, n, text, prev: ctx.progress(st, i, n, text, None if prev is None else to_u8(prev)),
                 check_cancel=ctx.check_cancel)
    lap("resplat")

    # 5. Export: the artist's geometry and UVs with the baked texture, the splats, a sheet, the report.
    groups = [(rs.views, targets, 1.0, tp)] + [(s.image[None], s.camera, config.source_weight, None) for s in sources]
    refined, unseen = export_textured(ctx, mesh, groups, config.texture_size, caster, center, radius, config.turntable_views)
    a = rs.gaussians.to_arrays()
    ctx.add_artifact("splats.ply", write_ply(None, a["means"], a["quats"], a["log_scales"], a["logit_opacities"], a["sh"]))
    lap("export")

    fg = tp.mask.sum().item()
    report = {
        "pipeline": "tire",
        "asset": asset.name,
        "class_word": asset.class_word,
        "device": ctx.device,
        "inpainter": inpainter.label,
        "personalised": bool(getattr(inpainter, "personalised", False)),
        "settings": config_to_dict(config),
        "views": {"targets": len(targets), "references": len(sources), "resolution": config.resolution},
        "coverage": {
            "observed_by_references": round(inp.observed.sum().item() / max(fg, 1), 4),
            "infilled": round(inp.infill.sum().item() / max(fg, 1), 4),
            "texels_unseen": int(unseen.sum()),
            "reinpainted_pixels_per_round": rs.reinpainted,
        },
        "gaussians": len(rs.gaussians),
        "seconds": clock.seconds,
    }
    if eval_views:
        report["metrics"] = evaluate({"refined": refined, "initial": mesh}, eval_views, sources)
        lap("evaluate")
    report["seconds"] = clock.report()
    report["peak_memory"] = memory.read()
    ctx.add_artifact("report.json", json.dumps(report, indent=1).encode())
    return report


def config_to_dict(config) -> dict:
    from ..config import config_to_dict as to_dict

    return to_dict(config)
