"""What the customize pipeline reads and publishes around its stages: the class images (cache or base model),
the personalised weights, the decoded points as splats, and report.json. Torch is imported by the functions."""

from __future__ import annotations

import math

import numpy as np


def class_prior(ctx, components, class_word: str, config):
    """Class images for the rgb stage's prior preservation, from the cache or the base model (still
    unpersonalised). Returns ({"rgb": ClassPrior}, report.json's `prior_preservation` entry)."""
    from ..cache import cache_dir
    from ..stages.diffusion.train.multimodal import class_prompt
    from ..stages.diffusion.train.prior import ClassPrior, class_images

    text = class_prompt("rgb", class_word)
    got = class_images(components, text, config.prior.class_images, resolution=config.dreambooth.resolution,
                       steps=config.prior.steps, seed=config.seed, batch_size=8 if components.device.type == "cuda" else 1,
                       cache=cache_dir("class_images"), cancel=ctx.check_cancel,
                       progress=lambda s, n, t: ctx.progress("class_images", s, n, t))
    ctx.log(f"prior preservation: {got.describe()}")
    ctx.progress("class_images", 1, 1, f"prior preservation: {got.describe()}",
                 np.concatenate(list(got.images[:4]), 1) if len(got.images) else None)
    return {"rgb": ClassPrior(got.images, text, config.prior.weight)}, got.report(config.prior.weight, config.prior.steps)


def publish_dreambooth(ctx, components, result, config) -> None:
    """The LoRA as an artifact (diffusers format), or the fully fine-tuned UNet (and text encoder) kept in the
    job's work folder (`dreambooth/`, diffusers layout: too large to send)."""
    import torch

    from ..stages.diffusion.train.lora import save_lora
    from ..stages.diffusion.train.multimodal import save_full

    if config.dreambooth.method == "lora":
        path = save_lora(components, ctx.work_dir / "lora", result.adapter_name)
        ctx.add_artifact(path.name, path)
    else:
        encoder = config.dreambooth.train_text_encoder
        folder = save_full(components, ctx.work_dir / "dreambooth", text_encoder=encoder)
        ctx.log(f"fine-tuned UNet{' and text encoder' if encoder else ''}: {folder}")
    if components.device.type == "cuda":
        torch.cuda.empty_cache()


def write_decoded_splats(ctx, cloud, decoded, cameras, passes, opacity: float) -> dict:
    """splats.ply: the refine stage's points as small isotropic 3DGS splats (SH degree 0) whose colour is what
    the model renders there: the decoded views' colour at each point (the view that sees it most head-on, by
    z-buffer), the points no decoded view sees keeping their learned base colour. Returns report.json's
    account of what the file holds."""
    from ..export.ply import write_ply
    from ..stages.customize.pointcloud import project_colors
    from ..stages.splats.gaussians import rgb_to_sh

    shown = project_colors(cloud, decoded, passes.mask, cameras, passes)
    n = len(cloud)
    scale = math.log(0.5 * cloud.spacing)
    ctx.add_artifact("splats.ply", write_ply(
        None, cloud.points.numpy(), np.tile(np.array([[1, 0, 0, 0]], np.float32), (n, 1)),
        np.full((n, 3), scale, np.float32), np.full(n, math.log(opacity / (1 - opacity)), np.float32),
        rgb_to_sh(shown.rgb)[:, None].numpy(), pad_to_degree=0))
    seen = int(shown.seen.sum())
    return {"holds": "the refine stage's points, coloured by the decoder's output at each point (sampled from the "
                     "baked decoded views); isotropic splats of half the point spacing at the decoder's opacity",
            "points": n, "coloured_from_decoded_views": seen, "kept_base_colour": n - seen,
            "opacity": opacity, "scale": round(0.5 * cloud.spacing, 6)}


def report(asset, config, device, comps, mm, prior_report, coarse, refined, reference_psnr, novel, pseudo, cloud, splats,
           baked_views: int, unseen, novel_report: dict | None = None) -> dict:
    """report.json without seconds, memory and metrics (run adds those)."""
    from ..config import config_to_dict

    label = comps.label or comps.source
    degraded = " [random weights: the output is noise]" if comps.degraded and "noise" not in label else ""
    if prior_report.get("ran"):
        prior_report = {**prior_report, "last_prior_loss": round(dict(mm.stages)["rgb"].prior_losses[-1], 5)}
    return {
        "pipeline": "customize",
        "asset": asset.name,
        "class_word": asset.class_word,
        "device": device,
        "diffusion_model": label + degraded,
        "degraded": bool(comps.degraded),
        "models": {"base": comps.provenance()},
        "settings": config_to_dict(config),
        "dreambooth": {"method": config.dreambooth.method,
                       "text_encoder_trained": config.dreambooth.method == "full" and config.dreambooth.train_text_encoder,
                       **{m: {"steps": r.steps, "last_loss": round(r.losses[-1], 5), "cuda_graphs": r.cuda_graphs,
                              "graph_note": r.graph_note} for m, r in mm.stages}},
        "prior_preservation": prior_report,
        "coarse": {"steps": len(coarse.losses), "modes": coarse.modes, "sds_skipped_non_finite": coarse.skipped,
                   "gaussians": len(coarse.gaussians), "sds": coarse.sds_graphs},
        "refine": {"steps": len(refined.losses), "points": len(cloud), "reference_l1": round(refined.reference_l1, 5),
                   "reference_psnr": round(reference_psnr, 3), "novel_view_loss": novel,
                   "sds_on_novel_views": novel == "sds",
                   **({"sds": novel_report} if novel_report else {}),
                   **({"pseudo_views": pseudo.summary()} if pseudo is not None else {})},
        "splats": splats,
        "views": {"references": len(asset.references), "baked": baked_views, "resolution": config.resolution},
        "coverage": {"points_seen_by_references": round(float(cloud.seen.float().mean()), 4),
                     "texels_unseen": int(unseen.sum())},
    }
