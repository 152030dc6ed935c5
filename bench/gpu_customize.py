"""Customize-It-3D on the GPU (issue 6's benchmark), SD-2-sized `base` models with random weights (the cost
per step does not depend on the weights), 512 px:

A. SDS step (render-free: a [1, 3, 512, 512] fp32 image with grad -> VAE encoder -> UNet batch 2 with CFG ->
   backward through the encoder), variants of the encoder: eager, channels-last, lower-resolution encode
   (256 px, latents upsampled), both. Also the UNet alone (batch 2, no grad) for reference. Goal <= 60 ms.
B. Multi-modal DreamBooth: LoRA step time on 512 px modality images.
C. Refine stage: iterations per second with 700k points at 512 px (feature splats at 1, 1/2, 1/4 + gated UNet),
   reference loss only and with SDS on a novel view.
D. A default run (`quality` preset) with every step count divided by --divide (default 10), measured per
   stage, and the full default run's total extrapolated stage by stage (steps x measured time per step);
   `--refine-novel pseudo` runs it with img2img pseudo views instead of SDS in the refine stage.
E. Img2img pseudo views (`refine_novel="pseudo"`): rendering --pseudo-views (33) views of the 700k-point model
   at 512 px, enhancing them at strength 0.1 (5 of 50 DDIM steps, guidance 7.5, 8 views per call), and the
   refine stage's iterations per second with the pseudo-view L1 in place of SDS (compare C's with_sds).
F. Class images for prior preservation: seconds per image at 512 px, 50 DDIM steps with guidance, 8 images
   one at a time and 8 in one call; the authors' 200 extrapolated.

    python bench/gpu_customize.py [--divide 10] [--skip-d]
    python bench/gpu_customize.py --device cpu --scale tiny --size 32 --points 2000 --skip-d   # smoke run

gsplat compiles its CUDA code on first use (~60 s on a fresh machine): a warm-up runs first, outside every timing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


DEVICE = "cuda"
SIZE = 512


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def timed(fn, iters: int, warmup: int = 3) -> float:
    """Mean milliseconds per call after `warmup` calls."""
    for _ in range(warmup):
        fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        fn()
    sync()
    return 1000 * (time.perf_counter() - t0) / iters


def warm_up_gsplat() -> float:
    from likeness3d.backend.stages.views.cameras import orbit
    from likeness3d.backend.stages.customize.deferred import splat_features
    from likeness3d.backend.stages.splats.gaussians import random_gaussians
    from likeness3d.backend.stages.splats.render import render

    t0 = time.monotonic()
    g = random_gaussians(1000).to(DEVICE)
    g.means.requires_grad_(True)
    cam = orbit((0, 0, 0), 1.0, [0.0], [0.0], 64, 64).to(DEVICE)
    render(g, cam).rgb.sum().backward()
    f = torch.randn(1000, 19, device=DEVICE, requires_grad=True)
    out, _ = splat_features(g.means.detach(), f, cam)
    out.sum().backward()
    sync()
    return time.monotonic() - t0


def bench_sds(comps) -> dict:
    from likeness3d.backend.stages.diffusion.text import encode_prompts
    from likeness3d.backend.stages.diffusion.sds import SDSConfig, sds_loss

    cond, uncond = encode_prompts(comps, ["a rgb photo of sks pebble"]), encode_prompts(comps, [""])
    img = torch.rand(1, 3, SIZE, SIZE, device=DEVICE, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    rows = {}
    lat = torch.randn(2, 4, SIZE // 8, SIZE // 8, device=DEVICE, dtype=comps.dtype)
    emb = torch.cat([cond, uncond])
    t = torch.full((2,), 500, device=DEVICE)
    with torch.no_grad():
        rows["unet_batch2_ms"] = round(timed(lambda: comps.unet(lat, t, encoder_hidden_states=emb), 20), 2)

    def step(cfg, graphs=None):
        def f():
            img.grad = None
            sds_loss(comps, img, cond, uncond, cfg, fraction=0.4, generator=gen, graphs=graphs).loss.backward()
        return f

    x = (torch.rand(1, 3, SIZE, SIZE, device=DEVICE, dtype=comps.dtype) * 2 - 1).requires_grad_(True)

    def encoder_only():
        x.grad = None
        comps.vae.encode(x).latent_dist.mean.float().sum().backward()

    rows["vae_encoder_fwd_bwd_eager_ms"] = round(timed(encoder_only, 10), 2)
    rows["sds_eager_ms"] = round(timed(step(SDSConfig(cuda_graph=False)), 20), 2)
    from likeness3d.backend.stages.diffusion.sds_graphs import SDSGraphs

    graphs = SDSGraphs(comps, SDSConfig())
    rows["sds_cuda_graphs_ms"] = round(timed(step(SDSConfig(), graphs), 20), 2)  # the default; captured in warm-up
    rows["sds_cuda_graphs_outcome"] = graphs.report()
    rows["sds_encode_256_ms"] = round(timed(step(SDSConfig(encode_scale=0.5)), 20), 2)
    comps.vae.to(memory_format=torch.channels_last)
    rows["vae_encoder_fwd_bwd_channels_last_ms"] = round(timed(encoder_only, 10), 2)
    rows["sds_channels_last_ms"] = round(timed(step(SDSConfig()), 20), 2)
    rows["sds_channels_last_encode_256_ms"] = round(timed(step(SDSConfig(encode_scale=0.5)), 20), 2)
    comps.vae.to(memory_format=torch.contiguous_format)
    return rows


def bench_dreambooth(comps) -> dict:
    import dataclasses

    from likeness3d.backend.stages.diffusion.train.lora import SubjectLoraConfig, remove_lora, train_subject_lora

    imgs = torch.rand(4, SIZE, SIZE, 3).numpy()
    masks = torch.ones(4, SIZE, SIZE, dtype=torch.bool).numpy()
    cfg = SubjectLoraConfig(steps=3, adapter_name="bench")
    train_subject_lora(comps, imgs, masks, prompts="a depth map of sks pebble", config=cfg)  # warm-up
    sync()
    r = train_subject_lora(comps, imgs, masks, prompts="a depth map of sks pebble", config=dataclasses.replace(cfg, steps=30),
                           resume=True)
    sync()
    remove_lora(comps, "bench")
    return {"lora_step_ms": round(1000 * r.seconds / r.steps, 1)}


def bench_refine(comps, points: int) -> dict:
    from likeness3d.backend.synthetic.example import example_case
    from likeness3d.backend.stages.views.cameras import Cameras, bounding_sphere
    from likeness3d.backend.stages.customize.coarse import CoarseConfig, sample_views
    from likeness3d.backend.stages.customize.deferred import DeferredPoints
    from likeness3d.backend.stages.diffusion.text import encode_prompts
    from likeness3d.backend.stages.customize.refine_points import PointRefineConfig, refine_points
    from likeness3d.backend.stages.customize.pointcloud import surface_points
    from likeness3d.backend.stages.diffusion.sds import SDSConfig, sds_loss

    case = example_case(image_size=SIZE, texture_size=256)
    t0 = time.monotonic()
    cloud = surface_points(case.initial, points)
    sample_s = time.monotonic() - t0
    refs = case.references  # all of them, as the pipeline
    cams = Cameras.cat([Cameras.from_protocol([r.camera]) for r in refs]).to(DEVICE)
    rgba = torch.stack([torch.as_tensor(r.image.astype("float32") / 255) for r in refs]).to(DEVICE)
    model = DeferredPoints(cloud.points, cloud.rgb).to(DEVICE)
    center, radius = bounding_sphere(case.initial.vertices)
    cond, uncond = encode_prompts(comps, ["a rgb photo of sks pebble"]), encode_prompts(comps, [""])
    gen = torch.Generator().manual_seed(0)
    sds_cfg = SDSConfig(resolution=SIZE)

    def novel(m, step):
        cam = sample_views(center, radius, 1, SIZE, CoarseConfig(), gen).to(DEVICE)
        rgb, _ = m(cam)
        return sds_loss(comps, rgb.permute(0, 3, 1, 2), cond, uncond, sds_cfg, fraction=0.4, generator=gen).loss

    def forward_backward():
        rgb, _ = model(cams)
        rgb.sum().backward()

    rows = {"points": len(cloud), "references": len(refs), "surface_sampling_s": round(sample_s, 1)}
    # where a view's cost goes: one splat call forward + backward per level and channel count, all points
    # or a 1 / s^2 subset at level 1 / s (the density that level resolves)
    from likeness3d.backend.stages.customize.deferred import splat_features

    one = cams[[0]]
    for channels in (19, 17, 16):
        feats = torch.rand(len(cloud), channels, device=DEVICE, requires_grad=True)
        for s in (1, 2, 4):
            level = one if s == 1 else one.resized(one.width // s, one.height // s)
            for subset in ((1,) if s == 1 else (1, s * s)):
                pts, f = model.points[::subset], feats[::subset]

                def splat_fb(pts=pts, f=f, level=level):
                    out, _ = splat_features(pts, f, level)
                    out.sum().backward()

                rows[f"splat_fwd_bwd_c{channels}_level{s}_every{subset}_ms"] = round(timed(splat_fb, 10), 2)
    decoder_in = [torch.rand(1, 20, SIZE // s, SIZE // s, device=DEVICE) for s in (1, 2, 4)]

    def decode_fb():
        model.decoder(decoder_in).sum().backward()

    rows["decoder_fwd_bwd_1view_ms"] = round(timed(decode_fb, 10), 2)
    for mixed in (False, True):
        model.mixed_precision = mixed
        tag = "_bf16_decoder" if mixed else ""
        rows[f"references_fwd_bwd{tag}_ms"] = round(timed(forward_backward, 10), 1)
        for name, fn in (("reference_only", None), ("with_sds", novel)):
            refine_points(model, rgba[..., :3], rgba[..., 3] > 0.5, cams, PointRefineConfig(steps=3), novel_loss=fn)
            sync()
            r = refine_points(model, rgba[..., :3], rgba[..., 3] > 0.5, cams, PointRefineConfig(steps=30), novel_loss=fn)
            sync()
            rows[f"{name}{tag}_it_per_s"] = round(30 / r.seconds, 2)
    model.mixed_precision = False
    return rows


def bench_pseudo_views(comps, points: int, views: int, strength: float = 0.1) -> dict:
    from likeness3d.backend.synthetic.example import example_case
    from likeness3d.backend.stages.views.cameras import Cameras, bounding_sphere
    from likeness3d.backend.stages.customize.deferred import DeferredPoints
    from likeness3d.backend.stages.customize.refine_points import PointRefineConfig, refine_points
    from likeness3d.backend.stages.customize.pointcloud import surface_points
    from likeness3d.backend.stages.customize.pseudo_views import (
        PseudoViewConfig, PseudoViews, build_img2img, enhance_views, pseudo_view_cameras, render_views,
    )

    case = example_case(image_size=SIZE, texture_size=256)
    cloud = surface_points(case.initial, points)
    model = DeferredPoints(cloud.points, cloud.rgb).to(DEVICE)
    center, radius = bounding_sphere(case.initial.vertices)
    cfg = PseudoViewConfig(views=views, strength=(strength, strength))
    cams = pseudo_view_cameras(center, radius, views, SIZE, cfg)
    prompt = "a rgb photo of sks pebble"
    render_views(model, cams[:2])  # warm-up
    sync()
    t0 = time.perf_counter()
    renders, alphas = render_views(model, cams)
    sync()
    render_s = time.perf_counter() - t0
    pipe = build_img2img(comps)
    enhance_views(pipe, renders[:2], prompt, [strength] * 2, cfg)  # warm-up
    sync()
    t0 = time.perf_counter()
    targets = enhance_views(pipe, renders, prompt, [strength] * views, cfg, seed=0)
    sync()
    enhance_s = time.perf_counter() - t0
    pv = PseudoViews(cams.to(DEVICE), targets.to(DEVICE), renders, alphas, [strength] * views, render_s + enhance_s)
    ref = case.references[0]
    rgba = torch.as_tensor(ref.image[None].astype("float32") / 255, device=DEVICE)
    ref_cams = Cameras.from_protocol([ref.camera]).to(DEVICE)
    refine_points(model, rgba[..., :3], rgba[..., 3] > 0.5, ref_cams, PointRefineConfig(steps=3), novel_loss=pv.loss)
    sync()
    r = refine_points(model, rgba[..., :3], rgba[..., 3] > 0.5, ref_cams, PointRefineConfig(steps=20), novel_loss=pv.loss)
    sync()
    return {"views": views, "strength": strength, "denoising_steps_per_view": int(strength * cfg.num_inference_steps),
            "render_s": round(render_s, 2), "enhance_s": round(enhance_s, 2),
            "enhance_ms_per_view": round(1000 * enhance_s / views, 1), "total_s": round(render_s + enhance_s, 2),
            "refine_with_pseudo_it_per_s": round(20 / r.seconds, 2)}


def bench_class_images(comps, n: int, steps: int) -> dict:
    from likeness3d.backend.stages.diffusion.train.prior import generate_class_images

    prompt = "a rgb photo of pebble"
    generate_class_images(comps, prompt, 1, resolution=SIZE, steps=2)  # warm-up
    rows = {"images": n, "steps": steps, "resolution": SIZE}
    for batch in (1, 8):
        sync()
        t0 = time.perf_counter()
        generate_class_images(comps, prompt, n, resolution=SIZE, steps=steps, batch_size=batch)
        sync()
        per = (time.perf_counter() - t0) / n
        rows[f"batch{batch}_s_per_image"] = round(per, 3)
        rows[f"batch{batch}_200_images_s"] = round(200 * per, 1)
    return rows


def bench_default_run(comps, divide: int, out: Path, smoke: dict | None = None, refine_novel: str = "sds") -> dict:
    from likeness3d.backend.context import JobContext
    from likeness3d.backend.synthetic.example import example_case
    from likeness3d.backend.pipelines import customize
    from likeness3d.protocol.assets import Asset

    case = example_case(image_size=SIZE, texture_size=1024 if smoke is None else 64)
    asset = Asset(case.initial, case.references, case.class_word, "pebble")
    from likeness3d.backend.config import config_from_dict

    full = customize.CustomizeConfig()
    cfg = config_from_dict(customize.CustomizeConfig, {**(smoke or {}), "refine_novel": refine_novel,
        "dreambooth_steps": [max(1, s // divide) for s in full.dreambooth.steps],
        "coarse_steps": max(2, full.coarse.steps // divide), "refine_steps": max(2, full.refine.steps // divide)}, "config")
    original = customize.load_base_model
    customize.load_base_model = lambda config, device: comps
    try:
        if DEVICE == "cuda":
            torch.cuda.reset_peak_memory_stats()
        ctx = JobContext(out, out / ".work", device=DEVICE, on_progress=lambda *a: None)
        t0 = time.monotonic()
        rep = customize.run(ctx, asset, cfg, list(case.eval_views))
        wall = time.monotonic() - t0
    finally:
        customize.load_base_model = original
    s = rep["seconds"]
    scaled = dict(s)
    for stage, n_cut, n_full in (("dreambooth", sum(cfg.dreambooth.steps), sum(full.dreambooth.steps)),
                                 ("coarse", cfg.coarse.steps, full.coarse.steps),
                                 ("refine", cfg.refine.steps, full.refine.steps)):
        scaled[stage] = round(s[stage] * n_full / n_cut, 1)
    scaled.pop("total", None)
    return {"divide": divide, "measured_seconds": s, "wall_s": round(wall, 1),
            "extrapolated_default_seconds": scaled, "extrapolated_default_total_s": round(sum(scaled.values()), 1),
            "peak_memory": rep["peak_memory"], "reference_psnr": rep["refine"]["reference_psnr"],
            "metrics": {k: (round(v, 3) if isinstance(v, float) else v) for k, v in rep.get("metrics", {}).items()}}


def guarded(key: str, fn) -> dict:
    """Run one section; a failure is printed and recorded, and the other sections still run."""
    import traceback

    try:
        row = fn()
    except Exception as exc:  # noqa: BLE001 - a benchmark reports every section it can
        traceback.print_exc()
        row = {"error": f"{type(exc).__name__}: {exc}"}
    print(key, json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--divide", type=int, default=10, help="divide the default run's step counts by this")
    ap.add_argument("--points", type=int, default=700_000)
    ap.add_argument("--skip-d", action="store_true")
    ap.add_argument("--sections", nargs="*", default=["A", "B", "C", "D", "E", "F"], choices=["A", "B", "C", "D", "E", "F"])
    ap.add_argument("--out", default="bench_customize_out")
    ap.add_argument("--device", default="cuda", help="cpu: a smoke run of the script with --scale tiny")
    ap.add_argument("--scale", choices=("sd2", "tiny"), default="sd2")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--pseudo-views", type=int, default=33, help="E: views enhanced")
    ap.add_argument("--refine-novel", choices=("sds", "pseudo"), default="sds", help="D: the refine stage's novel-view loss")
    ap.add_argument("--class-images", type=int, default=8, help="F: class images timed per batch size")
    ap.add_argument("--class-image-steps", type=int, default=50, help="F: denoising steps per class image")
    args = ap.parse_args()
    global DEVICE, SIZE
    DEVICE, SIZE = args.device, args.size
    from likeness3d.backend.stages.diffusion.components import components_from_modules
    from likeness3d.backend.stages.diffusion.tiny import SD2_SIZED_LABEL, TINY_LABEL, build_modules

    if DEVICE == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}; gsplat warm-up (compile) {warm_up_gsplat():.1f} s", flush=True)
    t0 = time.monotonic()
    with torch.device(DEVICE):
        parts = build_modules("base", scale=args.scale)
    comps = components_from_modules(parts, role="base", device=DEVICE, source=f"random {args.scale}",
                                    label=SD2_SIZED_LABEL if args.scale == "sd2" else TINY_LABEL)
    print(f"{args.scale} base models built in {time.monotonic() - t0:.1f} s ({comps.dtype})", flush=True)
    rows = {}
    for key, fn in (("A_sds", lambda: bench_sds(comps)), ("B_dreambooth", lambda: bench_dreambooth(comps)),
                    ("C_refine", lambda: bench_refine(comps, args.points)),
                    ("E_pseudo_views", lambda: bench_pseudo_views(comps, args.points, args.pseudo_views)),
                    ("F_class_images", lambda: bench_class_images(comps, args.class_images, args.class_image_steps))):
        if key[0] not in args.sections:
            continue
        rows[key] = guarded(key, fn)
        if DEVICE == "cuda":
            torch.cuda.empty_cache()
    smoke = None if DEVICE == "cuda" else dict(
        resolution=SIZE, dreambooth_resolution=SIZE, coarse_resolution=SIZE, sds_resolution=SIZE, gaussians=500,
        points=args.points, bake_azimuths=2, texture_size=64, turntable_views=2)
    if not args.skip_d and "D" in args.sections:
        rows["D_default_run"] = guarded("D_default_run", lambda: bench_default_run(comps, args.divide, Path(args.out), smoke,
                                                                                    args.refine_novel))
    print(json.dumps(rows, indent=1))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "bench_gpu_customize.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
