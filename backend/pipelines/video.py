"""Subject videos (seed 3DreamBooth; DESIGN section 5.4): 3DreamBooth + 3Dapter on a Wan text-to-video model.

1. Views: the references masked to white and square-padded; a conditioning subset, the fewest views whose
   azimuth arcs cover 360 degrees around the subject.
2. 3DreamBooth: a LoRA on the transformer's attention and feed-forward projections, every view a one-frame
   video, one prompt "a video of a sks <class>", Wan's flow-matching velocity objective.
3. 3Dapter: a second LoRA on the conditioning tokens' projections only (clean latents at timestep 0, each view
   its own temporal RoPE index), optimised jointly with 3DreamBooth; pre-trained weights come from the models
   folder's `adapter` role (`likeness3d train-3dapter`), else it starts from zero and the report says so.
4. Generate: the turntable prompt and any `prompts`, with both LoRAs and the conditioning views: PNG frames,
   video.mp4 (H.264), the LoRAs as safetensors, report.json.

This module imports no torch at module level (the server front imports it to validate configs)."""

from __future__ import annotations

from dataclasses import dataclass

from ...protocol.assets import Asset
from ...protocol.errors import InvalidAsset
from ..config import require, whole
from ..stages.video.config import IDENTIFIER, AdapterConfig, DreamBoothVideoConfig, GenerateConfig, VideoViewsConfig
from .tire import TireConfig

DESCRIPTION = ("3D-aware videos of the subject: 3DreamBooth (one-frame LoRA) + 3Dapter (multi-view conditioning) "
               "on a Wan text-to-video model (needs the `video` model)")


@dataclass(frozen=True)
class VideoConfig:
    """The video pipeline's settings, a tree of its stages' configs (the authors' and Wan's defaults)."""

    views: VideoViewsConfig = VideoViewsConfig()
    """Step 1: view size and the conditioning subset."""
    dreambooth: DreamBoothVideoConfig = DreamBoothVideoConfig()
    """Step 2: 3DreamBooth (r 16, alpha 32, lr 1e-4, 400 steps)."""
    adapter: AdapterConfig = AdapterConfig()
    """Step 3: 3Dapter (`enabled` false: 3DreamBooth alone)."""
    generate: GenerateConfig = GenerateConfig()
    """Step 4: frames (4k + 1), size, steps, guidance, the turntable prompt."""
    prompts: tuple[str, ...] = ()
    """More prompts, one video each after the turntable; each must name the subject by the identifier `sks`
    ("a video of a sks sneaker on a running track")."""
    tire: TireConfig = TireConfig()
    """TIRE's settings when `views.refine_first` refines the asset before its renders join the views."""
    models: str = ""
    """A models folder (role `video`: a Wan text-to-video model in diffusers layout; role `adapter`: a
    pre-trained 3Dapter), "tiny" (smoke test: noise), or "" for $LIKENESS3D_MODELS. Required."""
    seed: int = 0

    def __post_init__(self) -> None:
        bad = [p for p in self.prompts if not isinstance(p, str) or IDENTIFIER not in p.split()]
        require(
            self,
            (not bad, "prompts", f"must each name the subject by the identifier {IDENTIFIER!r} (e.g. 'a video of a "
                                 f"{IDENTIFIER} sneaker on a beach'); this one does not: {bad[0]!r:.80}" if bad else ""),
            (len(self.prompts) <= 16, "prompts", "must be at most 16 prompts"),
            (self.generate.turntable or self.prompts, "prompts", "must hold a prompt when generate.turntable is false"),
            (whole(self.seed, 0), "seed", "must be an integer >= 0"),
        )


PRESETS: dict[str, dict] = {
    "quality": {},
    "fast": {"views": {"size": 256}, "dreambooth": {"steps": 200},
             "generate": {"frames": 33, "height": 256, "width": 448, "steps": 25}},
    "smoke": {"views": {"size": 32}, "dreambooth": {"steps": 12},
              "generate": {"frames": 9, "height": 32, "width": 32, "steps": 3, "fps": 8}},
}
"""`quality`: the authors' and Wan's settings (81 frames at 480 x 832); `fast`: 33 frames at 256 x 448, half the
training; `smoke`: the `--models tiny` run on a CPU (32 px, 9 frames), whose output is noise."""


def check_references(asset: Asset, config: VideoConfig) -> None:
    n = len(asset.references)
    if n == 0:
        raise InvalidAsset("references: the video pipeline learns the subject from its reference views and got none; "
                           "add at least 2 references (photos with their cameras) around the subject", field="references")
    if n < 2 and config.adapter.enabled:
        raise InvalidAsset(f"references: 3Dapter conditions on a set of views around the subject and needs at least 2 "
                           f"references, got {n}; add a reference from another side, or set adapter.enabled=false to "
                           f"run 3DreamBooth alone", field="references")


def prompts_of(asset: Asset, config: VideoConfig) -> list[str]:
    out = [config.generate.turntable_template.format(class_word=asset.class_word)] if config.generate.turntable else []
    return out + list(config.prompts)


class _Prefixed:
    """The job's context for a pipeline run inside another: artifacts published under `prefix` (and kept here
    by their own names), everything else the job's own."""

    def __init__(self, ctx, prefix: str):
        self._ctx, self._prefix, self.files = ctx, prefix, {}

    def add_artifact(self, name, data):
        self.files[name] = data
        return self._ctx.add_artifact(self._prefix + name, data)

    def __getattr__(self, name):
        return getattr(self._ctx, name)


def refined_by_tire(ctx, asset: Asset, config: TireConfig):
    """The asset refined by TIRE (its artifacts published as tire_*): the mesh with TIRE's texture."""
    import io

    import numpy as np
    from PIL import Image

    from ...protocol.assets import Mesh
    from .tire import run as run_tire

    inner = _Prefixed(ctx, "tire_")
    ctx.log("views: refining the asset with TIRE first (views.refine_first)")
    run_tire(inner, asset, config)
    texture = np.asarray(Image.open(io.BytesIO(inner.files["texture.png"])).convert("RGBA"))
    m = asset.mesh
    return Mesh(m.vertices, m.faces, m.uvs, texture)


def run(ctx, asset: Asset, config: VideoConfig) -> dict:
    """Personalise the video model on the subject and generate its videos; returns the report."""
    import numpy as np
    import torch

    from ..stages.video import components as vc
    from ..stages.video.generate import generate_latents
    from ..stages.video.joint import BASE
    from ..stages.video.lora import ADAPTER, SUBJECT, add_lora, load_adapter
    from ..stages.video.train import train_subject
    from ..stages.video.views import azimuths, choose_conditioning, coverage_text, mesh_views, prepare_view, subject_centre
    from .peak_memory import PeakMemory
    from .video_io import Clock, publish_loras, publish_video, report, views_sheet

    check_references(asset, config)
    prompts = prompts_of(asset, config)
    memory, clock = PeakMemory(ctx.device), Clock()

    # 0. The models: `video` (no model, no run) and a pre-trained 3Dapter when the folder has one.
    comps = vc.load_video_components(config.models, device=ctx.device)
    adapter_dir = vc.find_adapter(config.models) if config.adapter.enabled else None
    adapter_text = ("off" if not config.adapter.enabled else f"pre-trained, from {adapter_dir}" if adapter_dir else
                    "no pre-trained weights (no `adapter` role in the models folder): starts from zero")
    ctx.progress("models", 1, 1, f"video model: {comps.label}; 3Dapter: {adapter_text}")
    clock.lap("load")

    # 1. Views: masked to white, square-padded; the conditioning subset covering the circle.
    vcfg = config.views
    prepared = [prepare_view(r.image, vcfg.size) for r in asset.references]
    c2ws = [r.camera.c2w for r in asset.references]
    if vcfg.mesh_views:
        mesh = refined_by_tire(ctx, asset, config.tire) if vcfg.refine_first else asset.mesh
        renders, render_c2w = mesh_views(mesh, vcfg.mesh_views, vcfg.mesh_elevation, vcfg.size)
        prepared += [prepare_view(img, vcfg.size) for img in renders]
        c2ws += list(render_c2w)
    images = np.stack([p[0] for p in prepared])
    masked = [p[1] for p in prepared]
    if vcfg.mesh_views:  # the renders orbit the asset's bounding-box centre: the references see the same subject
        centre = (asset.mesh.vertices.min(0) + asset.mesh.vertices.max(0)) / 2.0
    else:
        centre = subject_centre(np.stack(c2ws)) if len(c2ws) > 1 else None
    az = azimuths(np.stack(c2ws), centre)
    chosen, gap = ([], 360.0)
    if config.adapter.enabled:
        chosen, gap = choose_conditioning(az[:len(asset.references)], az, vcfg.cover_degrees, vcfg.min_conditioning,
                                          vcfg.max_conditioning)
    cover = coverage_text(az, chosen, gap) if chosen else "no conditioning views (3Dapter off)"
    ctx.progress("views", 1, 1, f"{len(asset.references)} references + {vcfg.mesh_views} asset renders; {cover}",
                 views_sheet(images, chosen))
    latents = vc.encode_images(comps, torch.from_numpy(images).permute(0, 3, 1, 2))
    cond = latents[chosen].permute(2, 1, 0, 3, 4) if chosen else None  # [1, 16, K, h, w]
    text = vc.encode_prompts(comps, [config.dreambooth.prompt(asset.class_word)])
    clock.lap("views")

    # 2-3. 3DreamBooth and 3Dapter, jointly (3Dapter from the models folder's `adapter` role, else from zero).
    tr = comps.transformer
    db = config.dreambooth
    add_lora(tr, SUBJECT, db.rank, db.alpha, db.target_modules, seed=config.seed)
    adapter_meta = None
    if config.adapter.enabled:
        if adapter_dir is not None:
            adapter_meta = load_adapter(tr, adapter_dir, seed=config.seed + 1)
        else:
            ad = config.adapter
            add_lora(tr, ADAPTER, ad.rank, ad.alpha, ad.target_modules, seed=config.seed + 1)
        ctx.log(f"3Dapter: {adapter_text}")
    trained = train_subject(comps, latents, text, db, cond=cond, adapter=config.adapter.enabled, seed=config.seed,
                            progress=lambda s, n, loss: ctx.progress("dreambooth", s, n, f"loss {loss:.4f}"),
                            cancel=ctx.check_cancel)
    lora_files = publish_loras(ctx, tr, config.adapter.enabled)
    clock.lap("dreambooth")

    # 4. Videos: the turntable, then every prompt, with both LoRAs and the conditioning views.
    negative = vc.encode_prompts(comps, [config.generate.negative_prompt]) if config.generate.guidance_scale > 1 else None
    videos = []
    for i, prompt in enumerate(prompts):
        embeds = vc.encode_prompts(comps, [prompt])
        seed = config.generate.seed + i
        lat = generate_latents(comps, embeds, negative, config.generate, cond=cond, gen_branch=SUBJECT,
                               cond_branch=ADAPTER if config.adapter.enabled else BASE, seed=seed,
                               progress=lambda s, n, i=i: ctx.progress("generate", s, n, f"video {i + 1}/{len(prompts)}"),
                               cancel=ctx.check_cancel)
        frames = vc.decode_latents(comps, lat).numpy()
        videos.append(publish_video(ctx, i, prompt, seed, frames, config.generate.fps))
        ctx.progress("generate", config.generate.steps, config.generate.steps, f"video {i + 1}/{len(prompts)} written",
                     frames[len(frames) // 2])
        clock.lap(f"generate_{i}")

    out = report(asset, config, ctx.device, comps, masked, az, chosen, gap, trained, adapter_dir, adapter_meta,
                 lora_files, videos, prompts)
    out["seconds"] = clock.report()
    out["peak_memory"] = memory.read()
    import json

    ctx.add_artifact("report.json", json.dumps(out, indent=1).encode())
    return out
