"""Run a Likeness3D job headlessly and save the result.

    blender -b scene.blend -P headless_refine.py -- --target Cube --class-word cat \
        --reference photo_front.jpg:CamFront --reference photo_side.jpg:CamSide \
        --pipeline inspect --address tcp://127.0.0.1:5555 --out refined.blend

Each --reference is IMAGE_FILE:CAMERA_OBJECT (an image already in the .blend may be named instead of a
file). Without --reference the scene's reference list (set up in the panel) is used. With --operator the
job runs through bpy.ops.likeness.refine (which blocks in background mode); otherwise through the Python
API, likeness3d.addon.api.refine, and prints a line each time the job moves (state, stage, step). Exits
non-zero, with the backend's typed error, when the job fails. Quality Auto (the default) sends the Draft
settings to a backend without a GPU, and says so.

Without a `blender` binary, the same script runs on Python with the `bpy` module (pip install bpy, in a
Python the bpy wheel supports): `python headless_refine.py --blend scene.blend -- --target Cube ...`.
"""

import argparse
import importlib
import os
import sys

import bpy  # first: it puts Blender's own modules (addon_utils) on the path
import addon_utils  # noqa: E402


def load_addon():
    """Enable the add-on: the installed extension (bl_ext.<repo>.likeness3d) or the pip-installed package."""
    names = [m.__name__ for m in addon_utils.modules() if m.__name__.rsplit(".", 1)[-1] == "likeness3d"]
    name = names[0] if names else "likeness3d"
    if addon_utils.enable(name, default_set=True) is None:
        sys.exit(f"the Likeness3D add-on ({name}) could not be enabled")
    return importlib.import_module(f"{name}.addon.api")


def parse_args():
    argv = sys.argv[sys.argv.index("--") + 1 :] if "--" in sys.argv else []
    p = argparse.ArgumentParser(prog="headless_refine.py", description=__doc__.splitlines()[0])
    p.add_argument("--target", help="mesh object to refine (default: the panel's target)")
    p.add_argument("--class-word", help='what the subject is ("cat", "sneaker")')
    p.add_argument("--reference", action="append", default=[], metavar="IMAGE:CAMERA")
    p.add_argument("--pipeline", default=None, help="backend pipeline (default: the panel's)")
    p.add_argument("--quality", choices=("AUTO", "DRAFT", "STANDARD", "HIGH"), default=None,
                   help="default: the panel's (Auto: Draft on a backend without a GPU)")
    p.add_argument("--address", default=os.environ.get("LIKENESS3D_BACKEND"), help="backend address")
    p.add_argument("--timeout", type=float, default=None, help="seconds to wait for the job (default: no limit)")
    p.add_argument("--operator", action="store_true", help="run through bpy.ops.likeness.refine")
    p.add_argument("--out", required=True, help=".blend to save the scene with the result to")
    return p.parse_args(argv)


def reference(spec: str):
    image_ref, _, camera_name = spec.rpartition(":")
    camera = bpy.data.objects.get(camera_name)
    if camera is None or camera.type != "CAMERA":
        sys.exit(f"--reference {spec!r}: no camera object named {camera_name!r}")
    image = bpy.data.images.get(image_ref)
    if image is None:
        try:
            image = bpy.data.images.load(bpy.path.abspath(image_ref), check_existing=True)
        except RuntimeError as exc:
            sys.exit(f"--reference {spec!r}: {image_ref!r} is neither an image in the file nor a readable file ({exc})")
    return image, camera


def print_progress(item) -> None:
    """One line each time the job moves: `likeness3d: RUNNING coarse 3/12 ...` (a str is a note)."""
    if isinstance(item, str):
        print(f"likeness3d: {item}", flush=True)
        return
    step = f" {item.stage} {item.step}/{item.total}" if item.total else ""
    print(f"likeness3d: {item.job_id} {item.state}{step} {item.text}".rstrip(), flush=True)


def open_blend() -> None:
    """With the bpy module (no blender binary), `--blend FILE` before `--` opens the scene."""
    if "--blend" in sys.argv[: sys.argv.index("--") if "--" in sys.argv else len(sys.argv)]:
        path = sys.argv[sys.argv.index("--blend") + 1]
        bpy.ops.wm.open_mainfile(filepath=os.path.abspath(path))


def main() -> int:
    open_blend()
    args = parse_args()
    api = load_addon()
    scene = bpy.context.scene
    target = None
    if args.target:
        target = bpy.data.objects.get(args.target)
        if target is None or target.type != "MESH":
            sys.exit(f"--target {args.target!r}: no mesh object of that name")
    references = [reference(spec) for spec in args.reference] or None

    if args.operator:
        # the operator reads the panel's settings: set them, then run it (it blocks in background mode)
        props = scene.likeness
        if target is not None:
            props.target = target
        if references is not None:
            api.set_references(scene, references)
        for name, value in (("class_word", args.class_word), ("pipeline", args.pipeline), ("quality", args.quality)):
            if value is not None:
                setattr(props, name, value)
        try:
            if args.address:
                api.connect(args.address)  # raises the typed error when no backend answers there
            bpy.ops.likeness.refine(timeout=args.timeout or 0.0)
        except Exception as exc:  # the operator's error report (RuntimeError), or the connection's typed error
            print(f"likeness3d: {exc}", file=sys.stderr)
            return 1
        item = props.jobs[props.job_index]
        print(f"likeness3d: job {item.job_id} {item.state.lower()}: {item.text}")
    else:
        try:
            outcome = api.refine(target=target, references=references, class_word=args.class_word,
                                 pipeline=args.pipeline, quality=args.quality, address=args.address,
                                 timeout=args.timeout, progress=print_progress)
        except Exception as exc:  # the backend's typed error (UnknownPipeline, InvalidAsset, Timeout, ...)
            print(f"likeness3d: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        print(f"likeness3d: job {outcome.job_id} done: {outcome.summary}")
        for path in outcome.files:
            print(f"likeness3d: artifact {path}")
        for obj in outcome.objects:
            print(f"likeness3d: imported {obj.name}")

    bpy.ops.wm.save_as_mainfile(filepath=os.path.abspath(args.out))
    print(f"likeness3d: saved {args.out}")
    return 0


if __name__ == "__main__":
    code = main()
    if code:
        sys.exit(code)
