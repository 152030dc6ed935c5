"""The video pipeline's command line: `likeness3d refine video ...` (its own flags: no mesh needed, prompts,
frames, size) and `likeness3d train-3dapter --pairs DIR --out ADAPTER`. cli.py hands these over."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

TINY_PRESET = "smoke"
MESH_VIEWS = 8
"""Asset renders added to the views when --mesh is given (views.mesh_views)."""


def _size(text: str) -> tuple[int, int]:
    w, sep, h = text.lower().partition("x")
    if not sep or not w.isdigit() or not h.isdigit():
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 832x480")
    return int(w), int(h)


def refine_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="likeness3d refine video",
                                description="3D-aware videos of the subject: 3DreamBooth + 3Dapter on a Wan video model")
    p.add_argument("command", choices=["refine"])
    p.add_argument("pipeline", choices=["video"])
    p.add_argument("--refs", required=True, help="reference photos and cameras: nerfstudio transforms.json (>= 2 views)")
    p.add_argument("--class", dest="class_word", required=True, help="the subject's class word (sneaker, cat)")
    p.add_argument("--mesh", help="the asset (.glb/.gltf/.obj/.ply): its renders join the views (views.mesh_views, "
                                  "8 by default with --mesh)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--prompt", action="append", default=[], metavar="TEXT",
                   help="a video prompt naming the subject as 'sks' (repeatable; the turntable comes first)")
    p.add_argument("--no-turntable", action="store_true", help="skip the default turntable video")
    p.add_argument("--frames", type=int, help="frames per video, 4k + 1 (default 81)")
    p.add_argument("--size", type=_size, help="frame WIDTHxHEIGHT, multiples of 16 (default 832x480)")
    p.add_argument("--no-3dapter", action="store_true", help="3DreamBooth alone, no conditioning views")
    p.add_argument("--models", help="models folder (roles `video`, `adapter`), or 'tiny' (default: $LIKENESS3D_MODELS)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--preset", choices=("fast", "quality", TINY_PRESET),
                   help=f"default: {TINY_PRESET} with --models tiny, quality on CUDA, fast on the CPU")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.set_defaults(func=cmd_refine_video)
    return p


def parser_for(argv: list[str]) -> argparse.ArgumentParser | None:
    """The parser of `refine video` when argv asks for it, else None (cli.py's own parser)."""
    return refine_parser() if list(argv[:2]) == ["refine", "video"] else None


def add_commands(sub) -> None:
    p = sub.add_parser("train-3dapter", help="pre-train 3Dapter on (reference, target, prompt) pairs (see docs/VIDEO.md)")
    p.add_argument("--pairs", required=True, help="folder of pairs: PAIR/reference.png, PAIR/target.png, PAIR/prompt.txt")
    p.add_argument("--out", required=True, help="the adapter folder to write (put it at MODELS/adapter to use it)")
    p.add_argument("--models", help="models folder with the `video` role, or 'tiny' (default: $LIKENESS3D_MODELS)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--steps", type=int, help="optimisation steps (default adapter.pretrain_steps, 2000)")
    p.add_argument("--size", type=int, default=480, help="side of the square reference and target images (default 480)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override an adapter config field (rank=8)")
    p.set_defaults(func=cmd_train_3dapter)


def placeholder_mesh():
    """The video pipeline needs no geometry; an Asset carries a mesh, so the command line gives it one triangle."""
    from ..protocol.assets import Mesh

    return Mesh(np.array([[0, 0, 0], [1e-3, 0, 0], [0, 1e-3, 0]], np.float32), np.array([[0, 1, 2]], np.int32))


def video_settings(args, device: str) -> dict:
    from .cli import _parse_set
    from .config import merge_config
    from .pipelines.video import PRESETS

    preset = args.preset or (TINY_PRESET if args.models == "tiny" else "quality" if device.startswith("cuda") else "fast")
    flags: dict = {}
    if args.prompt:
        flags["prompts"] = list(args.prompt)
    gen: dict = {}
    if args.no_turntable:
        gen["turntable"] = False
    if args.frames is not None:
        gen["frames"] = args.frames
    if args.size is not None:
        gen["width"], gen["height"] = args.size
    if gen:
        flags["generate"] = gen
    if args.no_3dapter:
        flags["adapter"] = {"enabled": False}
    if args.models:
        flags["models"] = args.models
    if args.mesh:
        flags["views"] = {"mesh_views": MESH_VIEWS}
    settings = merge_config(merge_config(PRESETS[preset], flags), _parse_set(args.set))
    if not args.mesh and (settings.get("views") or {}).get("mesh_views"):
        raise ValueError("views.mesh_views renders the asset: give it with --mesh")
    return settings | {"_preset": preset}


def cmd_refine_video(args) -> int:
    import json

    from ..protocol.assets import Asset
    from .config import config_from_dict
    from .inputs.mesh import read_mesh
    from .inputs.transforms import read_transforms
    from .pipelines import get_pipeline
    from .refine import default_device, printing_context

    spec = get_pipeline("video")
    device = args.device or default_device()
    settings = video_settings(args, device)
    preset = settings.pop("_preset")
    config = config_from_dict(spec.config_cls, settings)
    mesh = read_mesh(Path(args.mesh)) if args.mesh else placeholder_mesh()
    name = Path(args.mesh).stem if args.mesh else (Path(args.refs).parent.name or "subject")
    asset = Asset(mesh, tuple(read_transforms(args.refs)), args.class_word, name=name)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"likeness3d: video pipeline, preset {preset}, {len(asset.references)} references", flush=True)
    report = spec.run(printing_context(out, device, stream=sys.stdout), asset, config)  # today's stdout, not import time's
    print(f"likeness3d: video finished; results in {out.resolve()}")
    for v in report["videos"]:
        print(f"  {v['file']}: {v['frames']} frames, {v['prompt']!r}")
    for note in report["degraded"]:
        print(f"  note: {note}")
    print(f"  seconds: {json.dumps(report['seconds'])}")
    return 0


def cmd_train_3dapter(args) -> int:
    from .cli import _parse_set
    from .config import config_from_dict
    from .pipelines.video_pretrain import train_3dapter
    from .refine import default_device
    from .stages.video.config import AdapterConfig

    config = config_from_dict(AdapterConfig, _parse_set(args.set), "adapter")
    device = args.device or default_device()
    meta = train_3dapter(Path(args.pairs), Path(args.out), models=args.models, device=device, config=config,
                         steps=args.steps, size=args.size)
    print(f"likeness3d: 3Dapter trained on {meta['pairs']} pairs, {meta['steps']} steps (loss {meta['loss_first']:.4f} -> "
          f"{meta['loss_last_10_mean']:.4f}); written to {Path(args.out).resolve()}")
    return 0
