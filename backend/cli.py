"""`likeness3d`: serve, keys, status, list, fetch, cancel, demo."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from ..protocol.client import DEFAULT_ADDRESS, Client
from ..protocol.errors import BadMessage, ProtocolError
from . import video_cli


def _add_connect(p: argparse.ArgumentParser) -> None:
    p.add_argument("--connect", default=os.environ.get("LIKENESS3D_BACKEND", DEFAULT_ADDRESS),
                   help="backend address (default: $LIKENESS3D_BACKEND or %(default)s)")
    p.add_argument("--server-key", help="the server's public key file (.key) for CurveZMQ")
    p.add_argument("--client-key", help="this client's secret key file (.key_secret) for CurveZMQ")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for a reply (default %(default)s)")


def _client(args) -> Client:
    return Client(args.connect, timeout=args.timeout, server_public_key=args.server_key, client_secret_key=args.client_key)


def _check_serve(args) -> None:
    """The serve flags, checked before the server is built (a bad one names the flag and the fix)."""
    from .security import is_local_address

    try:
        is_local_address(args.listen)
    except ValueError as exc:
        raise BadMessage(f"--listen: {exc}", field="--listen") from None
    if not args.max_message_mb > 0:
        raise BadMessage(f"--max-message-mb must be > 0, got {args.max_message_mb}", field="--max-message-mb")
    if args.max_reference_megapixels is not None and not args.max_reference_megapixels > 0:
        raise BadMessage(f"--max-reference-megapixels must be > 0, got {args.max_reference_megapixels}",
                         field="--max-reference-megapixels")
    store = Path(args.store)
    if store.exists() and not store.is_dir():
        raise BadMessage(f"--store {store} is a file: name a folder for the job store", field="--store")
    if args.server_key and not Path(args.server_key).is_file():
        raise BadMessage(f"--server-key {args.server_key} does not exist: make one with `likeness3d keys`", field="--server-key")
    if args.clients_dir and not Path(args.clients_dir).is_dir():
        raise BadMessage(f"--clients-dir {args.clients_dir} is not a folder: make it and put the clients' .key files in it",
                         field="--clients-dir")
    if args.models and args.models != "tiny" and not Path(args.models).expanduser().is_dir():
        raise BadMessage(f"--models {args.models} is not a folder: name the folder that holds the models", field="--models")


def cmd_serve(args) -> int:
    import logging

    import zmq

    _check_serve(args)
    from .model_dirs import models_dir
    from .server import Server
    from .workers import resolve_devices

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.models:
        # the workers (spawned after this) find the models where every pipeline looks: $LIKENESS3D_MODELS
        os.environ["LIKENESS3D_MODELS"] = args.models
    if args.max_reference_megapixels:
        os.environ["LIKENESS3D_MAX_REFERENCE_PIXELS"] = str(int(args.max_reference_megapixels * 1e6))
    if args.max_worker_memory_gb:
        os.environ["LIKENESS3D_MAX_WORKER_MEMORY"] = str(int(args.max_worker_memory_gb * (1 << 30)))
    if args.allow_model_paths:
        os.environ["LIKENESS3D_ALLOW_MODEL_PATHS"] = "1"
    executor, devices = None, []
    if args.executor == "ray":
        executor = _ray_executor(args)
    else:
        devices = resolve_devices(args.gpus)
    try:
        server = Server(
            args.listen,
            args.store,
            devices,
            max_message_bytes=int(args.max_message_mb * (1 << 20)),
            server_secret_key=args.server_key,
            clients_dir=args.clients_dir,
            insecure=args.insecure,
            models_dir=models_dir(args.models),
            executor=executor,
        )
    except zmq.ZMQError as exc:
        hint = ("another process listens there: stop it or pick another port" if exc.errno == zmq.EADDRINUSE
                else "check the address (tcp://HOST:PORT with a local interface)")
        raise BadMessage(f"--listen {args.listen}: {exc.strerror}: {hint}", field="--listen") from None
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    signal.signal(signal.SIGINT, lambda *_: server.stop())
    print(f"likeness3d: listening on {server.address} (store {server.store.root}; {server.executor.label()})", flush=True)
    server.serve_forever()
    return 0


def _ray_executor(args):
    """`--executor ray`: the cluster started or joined and its slots planned, before the server binds."""
    from .ray_cluster import connect, import_ray, plan_slots

    if args.ray_retries < 0:
        raise BadMessage(f"--ray-retries must be >= 0, got {args.ray_retries}", field="--ray-retries")
    for flag in ("ray_num_cpus", "ray_num_gpus"):
        if getattr(args, flag) is not None and (args.ray_address or getattr(args, flag) < 0):
            name = "--" + flag.replace("_", "-")
            raise BadMessage(f"{name} sizes a cluster started here: it must be >= 0 and cannot go with --ray-address "
                             f"(a joined cluster's nodes say their own resources at `ray start`)", field=name)
    import_ray()  # a clear error before anything starts
    if args.gpus not in ("auto", "cpu", "cuda"):
        plan_slots(None, args.gpus, None)  # the --gpus error, before a cluster is started for nothing
    from .ray_executor import RayExecutor

    cluster = connect(args.ray_address, cpus=args.ray_num_cpus, gpus=args.ray_num_gpus)
    try:
        on_gpu, slots = plan_slots(cluster, args.gpus, args.ray_slots)
    except BadMessage:
        import ray

        ray.shutdown()
        raise
    models = str(Path(args.models).expanduser().resolve()) if args.models and args.models != "tiny" else args.models
    return RayExecutor.factory(cluster, on_gpu=on_gpu, slots=slots, retries=args.ray_retries, models=models)


def cmd_keys(args) -> int:
    from .security import make_keys

    public, secret = make_keys(args.out, args.name, force=args.force)
    print(f"public key (give to the other side): {public}\nsecret key (keep private):          {secret}")
    return 0


def _dates(value, key: str = ""):
    """Epoch seconds under a time key ("created", "updated", ...) as local dates, recursively."""
    import time as _time

    if isinstance(value, dict):
        return {k: _dates(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_dates(v) for v in value]
    if key in ("created", "updated", "started", "finished", "time") and isinstance(value, (int, float)) and value > 1e8:
        return _time.strftime("%Y-%m-%d %H:%M:%S %Z", _time.localtime(value))
    return value


def cmd_status(args) -> int:
    with _client(args) as c:
        info = c.status(args.job)
    print(json.dumps(info if args.json else _dates(info), indent=1))
    return 0


def cmd_list(args) -> int:
    with _client(args) as c:
        jobs = c.list()
    if args.json:
        print(json.dumps(jobs, indent=1))
        return 0
    print(f"{'job':<26} {'pipeline':<10} {'state':<10} detail")
    for j in jobs:
        detail = j.get("error", {}).get("message", "") or ", ".join(j.get("artifacts", [])) or (j.get("progress") or {}).get("text", "")
        if j.get("where"):  # the Ray executor says which node runs (or ran) the job
            detail = f"{detail} (on {j['where']})".strip()
        print(f"{j['job']:<26} {j['pipeline']:<10} {j['state']:<10} {detail}")
    return 0


def cmd_fetch(args) -> int:
    with _client(args) as c:
        for path in c.fetch_all(args.job, args.out):
            print(path)
    return 0


def cmd_cancel(args) -> int:
    with _client(args) as c:
        info = c.cancel(args.job)
    print(f"cancel requested for {args.job} (was {info['state']})")
    return 0


def _parse_set(items: list[str]) -> dict:
    """--set KEY=VALUE items as one nested map: a dotted KEY reaches into the config tree (fit.steps=500)."""
    from .config import dotted, merge_config

    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise BadMessage(f"--set {item!r}: expected KEY=VALUE with KEY a field or a dotted path (VALUE as JSON, "
                             f"e.g. fit.steps=500)", field="--set")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out = merge_config(out, dotted(key, parsed))
    return out


def cmd_refine(args) -> int:
    import time

    from .demo import metrics_table
    from .refine import prepare, run_plan

    start = time.monotonic()
    if args.splats:
        from .refine_splats import print_report, refine_splats

        if args.mesh or args.cache:
            raise BadMessage("--splats is a splat-only asset: give it without --mesh and --cache", field="--splats")
        report = refine_splats(args.splats, Path(args.refs), args.class_word, Path(args.out),
                               eval_views=args.eval_views, device=args.device, models=args.models, preset=args.preset,
                               overrides=_parse_set(args.set))
        print_report(report, Path(args.out))
        return 0
    if not args.mesh:
        raise BadMessage("--mesh is required (the initial asset), or --splats for a splat-only asset (a 3DGS PLY or "
                         "sequence)", field="--mesh")
    plan = prepare(
        args.pipeline, Path(args.mesh), Path(args.refs), args.class_word, Path(args.out),
        device=args.device, models=args.models, preset=args.preset,
        eval_views=Path(args.eval_views) if args.eval_views else None, overrides=_parse_set(args.set),
        cache=Path(args.cache) if args.cache else None, frames=args.frames,
    )
    report = run_plan(plan)
    print(f"likeness3d: {args.pipeline} finished; results in {Path(args.out).resolve()}")
    from .demo_4d import frames_table

    table = frames_table(report) if "per_frame" in (report.get("metrics") or {}) else metrics_table(report, len(plan.truth or ()))
    for line in table:
        print(line)
    print(f"  done in {time.monotonic() - start:.0f} s on {report.get('device') or plan.device or 'the default device'}")
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    if args.four_d:
        from .demo_4d import run_demo_4d

        return run_demo_4d(Path(args.out), device=args.device)
    return run_demo(Path(args.out), device=args.device)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="likeness3d", description="Likeness3D backend and command-line client.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the backend: a ZeroMQ front, a job store and supervised workers")
    p.add_argument("--listen", default="tcp://127.0.0.1:5555", help="bind address (default %(default)s)")
    p.add_argument("--store", default=os.environ.get("LIKENESS3D_STORE", str(Path.home() / ".likeness3d" / "store")),
                   help="job store folder (default: $LIKENESS3D_STORE or %(default)s)")
    p.add_argument("--gpus", default="auto", help="'auto' (one worker per GPU, else the CPU), 'cpu', or indices like '0,1' ('0,0': two workers on GPU 0)")
    p.add_argument("--models", help="folder of local models (default: $LIKENESS3D_MODELS)")
    p.add_argument("--max-message-mb", type=float, default=1024.0, help="largest accepted message (default %(default)s MiB)")
    p.add_argument("--server-key", help="this server's secret key file (.key_secret): enables CurveZMQ")
    p.add_argument("--clients-dir", help="folder of allowed client public keys (.key)")
    p.add_argument("--insecure", action="store_true", help="allow a non-local --listen without CurveZMQ")
    p.add_argument("--allow-model-paths", action="store_true",
                   help="let clients name any model folder on this machine in a job's `models` (default: only the "
                        "names of models under --models)")
    p.add_argument("--max-reference-megapixels", type=float, default=None,
                   help="largest reference image accepted (width x height, default 64 megapixels)")
    p.add_argument("--max-worker-memory-gb", type=float, default=None,
                   help="address-space limit of a worker process (default: none); a job beyond it ends out_of_memory")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="'local': a worker process per GPU of this host (default); 'ray': jobs on a Ray cluster")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: 'auto' (the cluster `ray start` runs on this host), HOST:PORT or "
                        "ray://HOST:PORT; default: start a cluster on this host")
    p.add_argument("--ray-slots", type=int, default=None,
                   help="jobs at once on the cluster (default: one per GPU; 1 on a cluster without GPUs)")
    p.add_argument("--ray-retries", type=int, default=0,
                   help="times a job whose Ray actor or node is lost is queued again (default %(default)s: it ends worker_crashed)")
    p.add_argument("--ray-num-cpus", type=int, default=None, help="CPUs of a cluster started here (default: Ray detects)")
    p.add_argument("--ray-num-gpus", type=int, default=None,
                   help="GPUs of a cluster started here (default: Ray detects; logical GPUs on a CPU host run on the CPU)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("keys", help="make a CurveZMQ key pair (NAME.key public, NAME.key_secret private)")
    p.add_argument("--out", required=True, help="folder to write the keys to")
    p.add_argument("--name", default="client", help="key name (default %(default)s)")
    p.add_argument("--force", action="store_true", help="replace a key pair of that name (default: refuse)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("status", help="the server's status, or one job's")
    p.add_argument("job", nargs="?")
    p.add_argument("--json", action="store_true", help="print the reply as it came (times as epoch seconds)")
    _add_connect(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("list", help="every job in the server's store")
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_connect(p)
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("fetch", help="download a finished job's artifacts")
    p.add_argument("job")
    p.add_argument("--out", required=True, help="folder to write the artifacts to")
    _add_connect(p)
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("cancel", help="cancel a queued or running job")
    p.add_argument("job")
    _add_connect(p)
    p.set_defaults(func=cmd_cancel)

    p = sub.add_parser("refine", help="run a pipeline on local files, without a server")
    p.add_argument("pipeline", help="pipeline name, e.g. tire")
    p.add_argument("--mesh", help="the initial asset: .glb/.gltf/.obj (Y up) or .ply (Z up); animated glTF too")
    p.add_argument("--refs", required=True, help="reference photos and cameras: nerfstudio transforms.json")
    p.add_argument("--class", dest="class_word", required=True, help="the subject's class word (cat, sneaker)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--models", help="diffusion models folder, or 'tiny' (default: $LIKENESS3D_MODELS; none: classical fallback)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when present)")
    p.add_argument("--preset", choices=("fast", "quality"), help="default: quality on CUDA, fast on the CPU")
    p.add_argument("--eval-views", help="true views (transforms.json) to score the result against")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config field (repeatable)")
    p.add_argument("--cache", help="a PC2 point cache animating the mesh (Blender's Mesh Cache format; same vertex count)")
    p.add_argument("--splats", help="a splat-only asset instead of --mesh: a 3DGS PLY, or a quoted glob 'dir/frame_*.ply'")
    p.add_argument("--frames", help="START:END[:STEP] scene frames of the animation to refine (END included)")
    p.set_defaults(func=cmd_refine)

    p = sub.add_parser("demo", help="run the main job on the bundled example subject (no GPU, no weights)")
    p.add_argument("--out", default="likeness3d_demo", help="output folder (default %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when present, else cpu")
    p.add_argument("--4d", dest="four_d", action="store_true", help="the animated example: a deforming subject (TIRE 4D)")
    p.set_defaults(func=cmd_demo)
    video_cli.add_commands(sub)  # train-3dapter
    return parser


def main(argv: list[str] | None = None) -> int:
    """Every failure is one line naming what to fix, never a Python traceback (LIKENESS3D_DEBUG=1 shows it)."""
    argv = sys.argv[1:] if argv is None else argv
    args = (video_cli.parser_for(argv) or build_parser()).parse_args(argv)  # `refine video` has its own flags
    debug = os.environ.get("LIKENESS3D_DEBUG") == "1"
    try:
        return args.func(args)
    except ProtocolError as exc:
        print(f"likeness3d: error [{exc.code}]: {exc.message}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as exc:
        if debug:
            raise
        print(f"likeness3d: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("likeness3d: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # the last resort: a bug, said in one line
        if debug:
            raise
        print(f"likeness3d: internal error: {type(exc).__name__}: {str(exc)[:500]} (run with LIKENESS3D_DEBUG=1 for "
              "the details and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
