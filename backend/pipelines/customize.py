"""Customize-It-3D (seed 003; DESIGN.md section 5.2): multi-modal DreamBooth, shading-aware score
distillation on Gaussians, point-cloud deferred rendering; on the artist's mesh.

The geometry is given, so depth and normal come from ray casting the mesh at the reference cameras (no
monocular estimator), the Gaussians and the point cloud lie on its surface, and the result is baked onto
its UVs. Score distillation needs a diffusion model: without one (no `--models`, no $LIKENESS3D_MODELS) the
pipeline stops with `ModelMissing` before any work; there is no classical stand-in for SDS (TIRE has one).
The options (full fine-tune, prior preservation, pseudo views) are fields of the config tree below; the
README's table says what each does.

This module imports no torch at module level (the server front imports it to validate configs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar

from ...protocol.assets import Asset, Reference
from ..config import number, require, whole
from ..stages.customize.config import CoarseConfig, PointRefineConfig, PseudoViewConfig
from ..stages.diffusion.config import MultiModalConfig, PriorConfig, SDSConfig, SubjectLoraConfig
from ..stages.texture.config import BakeConfig
from ..stages.views.config import RayBackend, ray_backend_rule
from .common import flat_texture_size

DESCRIPTION = ("refine the asset from reference photos: multi-modal DreamBooth, shading-aware score distillation, "
               "point-cloud deferred rendering (needs diffusion models)")


def _rank_and_alpha(rank):
    """The flat `lora_rank` set rank and alpha together (a LoRA scale of 1)."""
    numeric = isinstance(rank, (int, float)) and not isinstance(rank, bool)
    return {"rank": rank, "alpha": float(rank)} if numeric else {"rank": rank}


@dataclass(frozen=True)
class CustomizeConfig:
    """Customize-It-3D's settings, a tree of its stages' configs; defaults are the `quality` preset (the
    authors' where they publish them)."""

    resolution: int = 512
    """Side of the square views the refine stage renders, bakes and scores (pixels)."""
    dreambooth: MultiModalConfig = MultiModalConfig(lora=SubjectLoraConfig(adapter_name="customize"))
    """Step 2: multi-modal DreamBooth (LoRA by default; `method` "full" is the authors' full fine-tune)."""
    prior: PriorConfig = PriorConfig()
    """Step 2: DreamBooth's class prior on the rgb stage (off by default; class images are cached)."""
    sds: SDSConfig = SDSConfig(guidance_scale=100.0, resolution=512)
    """Steps 3 and 4: score distillation (DreamFusion's guidance 100; views resized to SD's 512 px)."""
    coarse: CoarseConfig = CoarseConfig()
    """Step 3: the shading-aware coarse stage on Gaussians initialised on the mesh."""
    refine: PointRefineConfig = PointRefineConfig()
    """Step 4: point-cloud deferred rendering (700k points, 16 features, 3000 steps: the authors')."""
    pseudo: PseudoViewConfig = PseudoViewConfig()
    """Step 4 with `refine.novel` "pseudo": img2img pseudo views made once (33 at strength 0.05-0.15)."""
    bake: BakeConfig = BakeConfig()
    """Step 5: the bake onto the artist's UVs (`texture_size` None keeps the mesh's own size)."""
    bake_azimuths: int = 16
    """Decoded views per elevation (0 and 30 degrees) baked onto the UVs."""
    source_weight: float = 4.0
    """Bake weight of the reference photos relative to the decoded views."""
    turntable_views: int = 8
    ray_backend: RayBackend = "auto"
    """Mesh passes, texel lookup and bake: "auto" (Warp's BVH on a CUDA job device, Embree on the CPU),
    "embree" or "warp" (on the job device; needs warp-lang)."""
    models: str = ""
    """Diffusion models: a folder (diffusers layout, role `base`), "tiny" (smoke test: noise), or "" for
    $LIKENESS3D_MODELS. Required."""
    seed: int = 0

    RENAMED: ClassVar[dict] = {
        "dreambooth_resolution": "dreambooth.resolution", "dreambooth_steps": "dreambooth.steps",
        "dreambooth_method": "dreambooth.method", "train_text_encoder": "dreambooth.train_text_encoder",
        "lora_rank": ("dreambooth.lora", _rank_and_alpha),
        "prior_preservation": "prior.enabled", "class_images": "prior.class_images", "prior_weight": "prior.weight",
        "class_image_steps": "prior.steps",
        "guidance_scale": "sds.guidance_scale", "t_range": "sds.t_range", "t_schedule": "sds.schedule",
        "sds_weighting": "sds.weighting", "grad_clip": ("sds.grad_clip", lambda v: None if v == 0 else v),
        "sds_resolution": "sds.resolution",
        "coarse_steps": "coarse.steps", "coarse_resolution": "coarse.resolution", "gaussians": "coarse.gaussians",
        "points": "refine.points", "features": "refine.features", "splat_radius_px": "refine.radius_px",
        "refine_steps": "refine.steps", "refine_lr": "refine.learning_rate", "refine_sds_weight": "refine.sds_weight",
        "refine_novel": "refine.novel", "drift_weight": "refine.drift_weight",
        "pseudo_views": "pseudo.views", "pseudo_strength": "pseudo.strength", "pseudo_weight": "pseudo.weight",
        "texture_size": ("bake.texture_size", flat_texture_size),
    }
    """Flat names from before the config tree, still accepted (`--set refine_steps=500` is `refine.steps=500`)."""

    def __post_init__(self) -> None:
        require(
            self,
            (whole(self.resolution, 16, 4096) and self.resolution % 8 == 0, "resolution", "must be a multiple of 8 in [16, 4096]"),
            (whole(self.bake_azimuths, 1, 360), "bake_azimuths", "must be an integer in [1, 360]"),
            (number(self.source_weight, 0), "source_weight", "must be >= 0"),
            (whole(self.turntable_views, 1, 64), "turntable_views", "must be an integer in [1, 64]"),
            (not self.prior.enabled or self.dreambooth.steps[3] > 0, "prior",
             "acts on the rgb stage: dreambooth.steps[3] must be > 0 when prior.enabled is true"),
            ray_backend_rule(self.ray_backend),
        )


MODELS_REQUIRED = True
"""No diffusion model, no run (`likeness3d refine` says so before any work)."""

PRESETS: dict[str, dict] = {
    "fast": {"resolution": 64, "dreambooth": {"resolution": 64, "steps": (1, 1, 1, 3)},
             "coarse": {"steps": 12, "resolution": 32, "gaussians": 1000}, "sds": {"resolution": 64},
             "refine": {"points": 2000, "steps": 16, "learning_rate": 1e-2}, "bake_azimuths": 4, "turntable_views": 4},
    "quality": {},
}
"""`fast` proves the wiring in a minute or two on 2 CPU cores (64 px, a few steps of every stage: the
README's smoke test with `--models tiny`); it is no quality setting. `quality` is the authors' settings.
(The tiny models' VAE halves the resolution where SD's divides it by 8, so their attention at 256 px would
cost what SD's costs at 1024 px.)"""


def load_base_model(config: CustomizeConfig, device: str):
    """The `base` SD model, or `ModelMissing` saying why this pipeline cannot run without one."""
    from ...protocol.errors import ModelMissing
    from ..model_dirs import configured_models
    from ..stages.diffusion.components import load_components

    models = configured_models(config.models)
    if not models:
        raise ModelMissing(
            "customize distils a Stable Diffusion model (score distillation) and has no classical fallback: "
            "pass --models DIR (a diffusers-layout text-to-image model for role 'base', e.g. SD 2.1 base) or set "
            "LIKENESS3D_MODELS; --models tiny runs a smoke test; the tire pipeline runs without models"
        )
    return load_components("base", models, device=device)


def run(ctx, asset: Asset, config: CustomizeConfig, eval_views: list[Reference] | None = None) -> dict:
    """Refine `asset`; artifacts: mesh.glb, texture.png, splats.ply (the decoded points), sheet.png, the LoRA,
    report.json. Returns the report."""
    import torch

    from ..stages.customize.coarse import coarse_stage
    from ..stages.customize.deferred import DeferredPoints
    from ..stages.customize.pointcloud import coloured_points
    from ..stages.customize.pseudo_views import make_pseudo_views
    from ..stages.customize.references import reference_set
    from ..stages.customize.refine_points import decode_views, refine_points, sds_novel_loss
    from ..stages.diffusion.train.multimodal import prompt, train_multimodal
    from ..stages.quality.evaluate import evaluate
    from ..stages.quality.metrics import psnr
    from ..stages.splats.gaussians import from_mesh
    from ..stages.views.cameras import bounding_sphere, orbit
    from ..stages.views.mesh_passes import Raycaster
    from ..stages.views.rays import RaySpec
    from ..stages.views.track import known_views
    from .common import StageClock, check_refinable, export_textured
    from .customize_io import class_prior, publish_dreambooth, report, write_decoded_splats
    from .peak_memory import PeakMemory

    mesh = asset.mesh
    check_refinable(asset, "customize")
    torch.manual_seed(config.seed)
    dev = torch.device(ctx.device)
    memory, clock = PeakMemory(ctx.device), StageClock()
    caster = Raycaster(mesh, RaySpec(config.ray_backend, str(ctx.device)))
    ctx.log(f"rays: {caster.backend}")
    center, radius = bounding_sphere(mesh.vertices)

    # 0. The diffusion model (before any work: no model, no run).
    comps = load_base_model(config, ctx.device)
    ctx.log(f"diffusion model: {comps.label or comps.source}")
    clock.lap("load")

    # 1. Reference modalities: RGB and mask from the photos, depth and normal ray cast from the mesh.
    refs = reference_set(asset.references, caster, config.dreambooth.resolution)
    ctx.progress("modalities", 1, 1, f"{len(refs.cameras)} references: mask, depth, normal from the mesh, rgb", refs.preview())
    clock.lap("modalities")

    # 2. Multi-modal DreamBooth, mask -> depth -> normal -> rgb (with prior preservation: class images first).
    prior, prior_report = class_prior(ctx, comps, asset.class_word, config) if config.prior.enabled else (None, {"ran": False})
    if config.prior.enabled:
        clock.lap("class_images")
    mm = train_multimodal(comps, refs.modalities, class_word=asset.class_word, config=config.dreambooth, seed=config.seed,
                          prior=prior, progress=lambda s, n, t: ctx.progress("dreambooth", s, n, t), cancel=ctx.check_cancel)
    publish_dreambooth(ctx, comps, mm, config)
    clock.lap("dreambooth")

    # 3. Coarse stage: Gaussians on the mesh, shading-aware SDS with the personalised model.
    gaussians = from_mesh(mesh, count=config.coarse.gaussians, seed=config.seed).to(dev)
    coarse = coarse_stage(gaussians, comps, refs.rgb.to(dev), refs.mask.to(dev), refs.cameras.to(dev),
                          class_word=asset.class_word, center=center.to(dev), radius=radius, config=config.coarse,
                          sds=config.sds, seed=config.seed, progress=lambda s, n, t: ctx.progress("coarse", s, n, t),
                          cancel=ctx.check_cancel, depths=refs.passes.depth.to(dev))
    clock.lap("coarse")

    # 4. Refine stage: points coloured from the photos (else the coarse Gaussians), learned features and a deferred
    #    decoder fitted to the references; SDS on novel views every step, or img2img pseudo views made once.
    cloud = coloured_points(mesh, config.refine.points, coarse.gaussians, refs.rgb, refs.mask, refs.cameras, refs.passes,
                            seed=config.seed)
    model = DeferredPoints(cloud.points, cloud.rgb, features=config.refine.features, radius_px=config.refine.radius_px,
                           seed=config.seed).to(dev)
    clock.lap("points")
    pseudo, novel = None, config.refine.novel
    if novel == "pseudo" and config.pseudo.weight > 0:
        pseudo = make_pseudo_views(model, comps, prompt("rgb", asset.class_word), center, radius, config.resolution,
                                   config.pseudo, seed=config.seed + 11, cancel=ctx.check_cancel,
                                   progress=lambda s, n, t: ctx.progress("pseudo_views", s, n, t))
        ctx.log(f"pseudo views: {len(pseudo)} img2img-enhanced views in {pseudo.seconds:.1f} s")
        clock.lap("pseudo_views")
        novel_loss = pseudo.weighted_loss
    elif novel == "sds" and config.refine.sds_weight > 0:
        novel_loss = sds_novel_loss(comps, prompt("rgb", asset.class_word), config.sds, center, radius, config.resolution,
                                    config.refine.steps, config.refine.sds_weight, seed=config.seed + 7)
    else:
        novel, novel_loss = "none", None
    refined_pc = refine_points(model, refs.rgb.to(dev), refs.mask.to(dev), refs.cameras.to(dev), config.refine,
                               novel_loss=novel_loss, cancel=ctx.check_cancel,
                               progress=lambda s, n, t: ctx.progress("refine", s, n, f"{t}, novel views: {novel}"))
    reference_psnr = psnr(decode_views(model, refs.cameras), refs.rgb, refs.mask)
    clock.lap("refine")

    # 5. Export: decoded views baked onto the artist's UVs, the decoded points as splats, a sheet, the report.
    views = orbit(center, radius, [360.0 * i / config.bake_azimuths for i in range(config.bake_azimuths)], [0.0, 30.0],
                  config.resolution, config.resolution, 40.0)
    vp = caster.passes(views, normals="smooth")
    decoded = decode_views(model, views, ctx.check_cancel)
    groups = [(decoded, views, 1.0, vp)] + [(refs.rgb[i : i + 1], refs.cameras[i : i + 1], config.source_weight, None)
                                            for i in range(len(refs.cameras))]
    refined, unseen = export_textured(ctx, mesh, groups, config.bake, caster, center, radius, config.turntable_views)
    splats = write_decoded_splats(ctx, cloud, decoded, views, vp, config.refine.opacity)
    clock.lap("export")

    out = report(asset, config, ctx.device, comps, mm, prior_report, coarse, refined_pc, reference_psnr, novel, pseudo,
                 cloud, splats, len(views), unseen, getattr(novel_loss, "report", lambda: None)())
    if eval_views:
        out["metrics"] = evaluate({"refined": refined, "initial": mesh}, eval_views, known_views(asset.references, caster),
                                  spec=caster.spec)
        clock.lap("evaluate")
    out["rays"] = caster.backend
    out["seconds"] = clock.report()
    out["peak_memory"] = memory.read()
    ctx.add_artifact("report.json", json.dumps(out, indent=1).encode())
    return out
