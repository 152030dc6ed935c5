"""Fidelity of a refinement, judged from outside: cases built in code (bench/fidelity_cases.py), each an
initial asset wrong on its hidden side plus references of the truth from one side, refined by the product's
command line (`likeness3d refine tire ... --preset fast`), then the returned mesh.glb, the initial and the
true asset rendered by real Blender (bench/fidelity_blender.py, unlit) from evaluation cameras all around
and scored per region (observed by a reference / infilled / all), PSNR and SSIM, initial vs refined.

    PYTHONPATH=<dir holding likeness3d> python bench/fidelity.py [--cases a,b] [--quick] [--json PATH]
        [--work DIR] [--product CHECKOUT] [--blender-python PATH] [--set KEY=VALUE ...]

--product (or $LIKENESS3D_PRODUCT): the checkout whose CLI is refined with (default: the repository this
bench lives in); the bench's own case building, GLB writing and scores always come from its own repository.
--blender-python (or $LIKENESS3D_BLENDER_PYTHON): a Python with the bpy wheel (default .venv-blender/bin/python
of this repository). Everything a run writes stays under --work (default: a new temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))

PSNR_CAP = 100.0
"""PSNR figures are capped here (identical renders have an infinite PSNR)."""
COMPARE_CAP = 60.0
"""Acceptance compares PSNRs capped at 60 dB (an RMS error of a quarter of one 8-bit level)."""
AGREES_DB = 30.0
"""By construction the initial asset agrees with the references on the observed region except in the cases
marked `observed_wrong`; a case whose initial observed PSNR says otherwise (below this) gets a warning."""


def link_package(checkout: Path, where: Path) -> Path:
    """A folder holding `likeness3d` -> `checkout` (a checkout is the package itself), for PYTHONPATH."""
    checkout = checkout.resolve()
    if (checkout / "likeness3d" / "backend").is_dir():
        return checkout
    if not (checkout / "backend" / "cli.py").is_file():
        raise SystemExit(f"--product {checkout}: neither a likeness3d checkout nor a folder holding one")
    where.mkdir(parents=True, exist_ok=True)
    link = where / "likeness3d"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(checkout, target_is_directory=True)
    return where


def git_describe(path: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(path), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(path), "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
        return head + (" (uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def nerfstudio_frame(cam, file_path: str) -> dict:
    import numpy as np

    c2w = np.linalg.inv(cam.w2c) @ np.diag([1.0, -1.0, -1.0, 1.0])  # OpenCV camera axes -> Blender's
    return {"file_path": file_path, "fl_x": float(cam.K[0, 0]), "fl_y": float(cam.K[1, 1]), "cx": float(cam.K[0, 2]) + 0.5,
            "cy": float(cam.K[1, 2]) + 0.5, "w": cam.width, "h": cam.height, "transform_matrix": c2w.tolist()}


def write_case(case, folder: Path) -> None:
    """initial.glb, truth.glb, and the camera sets (references, evaluation) as nerfstudio frames."""
    import numpy as np

    from likeness3d.backend.export.glb import write_glb
    from likeness3d.protocol.assets import Mesh

    folder.mkdir(parents=True, exist_ok=True)
    v, f, uv = (np.ascontiguousarray(case.part.vertices, np.float32), np.ascontiguousarray(case.part.faces, np.int32),
                np.ascontiguousarray(case.part.uvs, np.float32))
    write_glb(Mesh(v, f, uv, case.initial), path=folder / "initial.glb")
    write_glb(Mesh(v, f, uv, case.truth), path=folder / "truth.glb")


def blender(python: str, jobs: list[dict], samples: int, work: Path, label: str) -> float:
    spec = work / f"blender_{label}.json"
    spec.write_text(json.dumps({"samples": samples, "jobs": jobs}))
    t0 = time.monotonic()
    proc = subprocess.run([python, str(HERE / "fidelity_blender.py"), str(spec)], capture_output=True, text=True)
    (work / f"blender_{label}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"Blender ({label}) failed, rc {proc.returncode}; log {work / f'blender_{label}.log'}:\n{proc.stderr[-3000:]}")
    return time.monotonic() - t0


def lighting_of(case):
    import numpy as np

    if case.lighting is None:
        return None
    d = np.asarray(case.lighting["direction"], np.float64)
    return {**case.lighting, "direction": (d / np.linalg.norm(d)).tolist()}


def refine(case_dir: Path, product_path: Path, python: str, class_word: str, sets: list[str], device: str | None) -> tuple[float, int]:
    out = case_dir / "out"
    cmd = [python, "-m", "likeness3d.backend.cli", "refine", "tire", "--mesh", str(case_dir / "initial.glb"),
           "--refs", str(case_dir / "refs" / "transforms.json"), "--class", class_word, "--preset", "fast", "--out", str(out)]
    cmd += ["--device", device] if device else []
    for s in sets:
        cmd += ["--set", s]
    env = {**os.environ, "PYTHONPATH": str(product_path)}
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    t0 = time.monotonic()
    with open(case_dir / "refine.log", "w") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    return time.monotonic() - t0, rc


def glb_texture_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the first image a GLB embeds."""
    import io
    import struct

    from PIL import Image

    data = path.read_bytes()
    json_len = struct.unpack_from("<I", data, 12)[0]
    meta = json.loads(data[20:20 + json_len])
    if not meta.get("images"):
        return None
    view = meta["bufferViews"][meta["images"][0]["bufferView"]]
    bin_start = 20 + json_len + 8
    start = bin_start + view.get("byteOffset", 0)
    with Image.open(io.BytesIO(data[start:start + view["byteLength"]])) as im:
        return im.size


def cap(x):
    return None if x is None else min(float(x), PSNR_CAP)


def acceptance(results: list[dict]) -> list[tuple[str, bool | None, str]]:
    """(what, pass, detail) per acceptance point; pass is None where no case is of that kind."""
    def c(x):
        return min(x, COMPARE_CAP)
    rows = []
    agree = [r for r in results if r["initial_agrees_observed"]]
    bad = [f"{r['case']} {r['observed']['psnr_initial']:.2f} -> {r['observed']['psnr_refined']:.2f}" for r in agree
           if c(r["observed"]["psnr_refined"]) < c(r["observed"]["psnr_initial"]) - 0.5]
    rows.append(("observed, initial agrees: refined >= initial - 0.5 dB", (not bad) if agree else None,
                 f"{len(agree) - len(bad)}/{len(agree)} cases" + (f"; fails: {', '.join(bad)}" if bad else "")))
    wrong = [r for r in results if not r["initial_agrees_observed"]]
    bad = [f"{r['case']} {r['observed']['psnr_initial']:.2f} -> {r['observed']['psnr_refined']:.2f}" for r in wrong
           if c(r["observed"]["psnr_refined"]) <= c(r["observed"]["psnr_initial"])]
    rows.append(("observed, initial disagrees: refined > initial", (not bad) if wrong else None,
                 f"{len(wrong) - len(bad)}/{len(wrong)} cases" + (f"; fails: {', '.join(bad)}" if bad else "")))
    gains = [c(r["infilled"]["psnr_refined"]) - c(r["infilled"]["psnr_initial"]) for r in results]
    mean = sum(gains) / len(gains)
    worse = [f"{r['case']} {g:+.2f}" for r, g in zip(results, gains) if g < 0]
    rows.append(("infilled: mean gain >= +6 dB", mean >= 6.0, f"mean {mean:+.2f} dB over {len(gains)} cases"))
    rows.append(("infilled: no case worse than its initial", not worse, "worse: " + (", ".join(worse) if worse else "none")))
    bad = [f"{r['case']} {r['texture_in']} -> {r['texture_out']}" for r in results if r["texture_in"] != r["texture_out"]]
    rows.append(("texture width x height kept", not bad, ", ".join(bad) or f"all {len(results)} equal"))
    closed = [r for r in results if r["closed"]]
    bad = [f"{r['case']} {r['texels_unseen']}" for r in closed if r["texels_unseen"] != 0]
    rows.append(("texels_unseen == 0 on closed meshes", (not bad) if closed else None, f"{len(closed) - len(bad)}/{len(closed)} closed cases at 0"
                 + (f"; {', '.join(bad)}" if bad else "")))
    return rows


def print_table(results: list[dict]) -> None:
    def f(x, fmt):
        return "  -  " if x is None else format(x, fmt)
    print(f"\n{'case':<20} {'observed PSNR / SSIM':>27} {'infilled PSNR / SSIM':>27} {'all PSNR / SSIM':>27} "
          f"{'texture in -> out':>19} {'unseen':>7} {'s':>5}")
    print(f"{'':<20} {'initial -> refined':>27} {'initial -> refined':>27} {'initial -> refined':>27}")
    for r in results:
        cols = []
        for region in ("observed", "infilled", "all"):
            g = r[region]
            cols.append(f"{f(g['psnr_initial'], '6.2f')}/{f(g['ssim_initial'], '.3f')} -> {f(g['psnr_refined'], '6.2f')}/{f(g['ssim_refined'], '.3f')}")
        tex = f"{r['texture_in'][0]}x{r['texture_in'][1]} -> " + ("?" if r["texture_out"] is None else f"{r['texture_out'][0]}x{r['texture_out'][1]}")
        print(f"{r['case']:<20} {cols[0]:>27} {cols[1]:>27} {cols[2]:>27} {tex:>19} {str(r['texels_unseen']):>7} {r['refine_s']:5.0f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cases", help="comma-separated case names (default: all; see --list)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--quick", action="store_true", help="4 cases, 5 evaluation views, smaller references, 8 samples")
    p.add_argument("--json", help="write every figure to this JSON file")
    p.add_argument("--work", help="folder for inputs, renders and outputs (default: a new temporary folder)")
    p.add_argument("--product", default=os.environ.get("LIKENESS3D_PRODUCT", str(REPO)),
                   help="checkout whose CLI refines (default: $LIKENESS3D_PRODUCT or this repository)")
    p.add_argument("--python", default=sys.executable, help="Python that runs the product's CLI (default: this one)")
    p.add_argument("--blender-python", default=os.environ.get("LIKENESS3D_BLENDER_PYTHON", str(REPO / ".venv-blender" / "bin" / "python")))
    p.add_argument("--samples", type=int, default=None, help="Cycles samples per pixel (default 16, 8 with --quick)")
    p.add_argument("--device", help="passed to the CLI (default: the CLI's own choice)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to the CLI (repeatable)")
    p.add_argument("--reuse", action="store_true", help="keep a case's earlier refinement in --work if it finished")
    args = p.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="likeness3d-fidelity-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(link_package(REPO, work / "_bench_package")))  # the bench's own writers and scores
    from fidelity_cases import CASES, QUICK, build
    from fidelity_score import load_rgba, regions, score

    if args.list:
        for name, fn in CASES.items():
            print(f"{name:<22} {fn()[4]['covers']}")
        return 0
    names = args.cases.split(",") if args.cases else list(QUICK if args.quick else CASES)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise SystemExit(f"--cases: unknown {unknown}; the cases are {list(CASES)}")
    samples = args.samples or (8 if args.quick else 16)
    product = Path(args.product).resolve()
    product_path = link_package(product, work / "_product_package")
    print(f"fidelity: {len(names)} cases in {work}; product {product} at {git_describe(product)}; bench at {git_describe(REPO)}")
    t_start = time.monotonic()

    cases = {}
    for name in names:
        t0 = time.monotonic()
        case = build(name, quick=args.quick, ref_px=192 if args.quick else 256, eval_px=128 if args.quick else 160)
        write_case(case, work / name)
        cases[name] = case
        print(f"  built {name}: {len(case.part.faces)} triangles, texture {case.truth.shape[1]}x{case.truth.shape[0]}, "
              f"{len(case.refs)} references, {len(case.evals)} evaluation views ({time.monotonic() - t0:.1f} s)", flush=True)

    jobs = []
    for name, case in cases.items():
        d = work / name
        jobs.append({"glb": str(d / "truth.glb"), "out": str(d / "refs" / "images"), "lighting": lighting_of(case),
                     "frames": [nerfstudio_frame(c, f"{c.name}.png") for c in case.refs]})
        for which in ("truth", "initial"):
            jobs.append({"glb": str(d / f"{which}.glb"), "out": str(d / "eval" / which), "lighting": None,
                         "frames": [nerfstudio_frame(c, f"{c.name}.png") for c in case.evals]})
    print(f"  Blender: references and evaluation views of the true and initial assets ({blender(args.blender_python, jobs, samples, work, 'inputs'):.0f} s)", flush=True)
    for name, case in cases.items():
        frames = [nerfstudio_frame(c, f"images/{c.name}.png") for c in case.refs]
        (work / name / "refs" / "transforms.json").write_text(json.dumps({"camera_model": "PINHOLE", "frames": frames}, indent=1))

    runs = {}
    for name in names:
        d = work / name
        if args.reuse and (d / "out" / "report.json").is_file() and (d / "out" / "mesh.glb").is_file():
            runs[name] = (json.loads((d / "refine.json").read_text())["seconds"] if (d / "refine.json").is_file() else 0.0, 0)
            continue
        seconds, rc = refine(d, product_path, args.python, name.split("_")[0], args.set, args.device)
        (d / "refine.json").write_text(json.dumps({"seconds": seconds, "rc": rc}))
        runs[name] = (seconds, rc)
        print(f"  refined {name}: rc {rc}, {seconds:.0f} s (log {d / 'refine.log'})", flush=True)

    jobs = [{"glb": str(work / n / "out" / "mesh.glb"), "out": str(work / n / "eval" / "refined"), "lighting": None,
             "frames": [nerfstudio_frame(c, f"{c.name}.png") for c in cases[n].evals]} for n in names if runs[n][1] == 0]
    if jobs:
        print(f"  Blender: evaluation views of the refined assets ({blender(args.blender_python, jobs, samples, work, 'refined'):.0f} s)", flush=True)

    results = []
    for name, case in cases.items():
        d = work / name
        if runs[name][1] != 0:
            print(f"  {name}: the refinement failed (rc {runs[name][1]}); see {d / 'refine.log'}")
            continue
        truth = [load_rgba(d / "eval" / "truth" / f"{c.name}.png") for c in case.evals]
        masks, disagree = regions(case, truth)
        scores = {w: score(truth, [load_rgba(d / "eval" / w / f"{c.name}.png") for c in case.evals], masks) for w in ("initial", "refined")}
        report = json.loads((d / "out" / "report.json").read_text())
        r = {"case": name, "covers": case.covers, "damage": case.damage, "closed": case.closed, "lit_references": case.lighting is not None,
             "observed_wrong": case.observed_wrong, "triangles": len(case.part.faces), "references": len(case.refs),
             "eval_views": len(case.evals), "silhouette_disagreement": round(disagree, 5),
             "texture_in": [int(case.truth.shape[1]), int(case.truth.shape[0])],
             "texture_out": list(glb_texture_size(d / "out" / "mesh.glb") or []) or None,
             "texels_unseen": report.get("coverage", {}).get("texels_unseen"), "refine_s": round(runs[name][0], 1),
             "inpainter": report.get("inpainter")}
        for region in ("observed", "infilled", "all"):
            r[region] = {"pixels": scores["initial"][region]["pixels"]}
            for w in ("initial", "refined"):
                r[region][f"psnr_{w}"] = cap(scores[w][region]["psnr"])
                r[region][f"ssim_{w}"] = scores[w][region]["ssim"]
        r["initial_agrees_observed"] = not case.observed_wrong
        if (r["observed"]["psnr_initial"] is not None and r["observed"]["psnr_initial"] >= AGREES_DB) != r["initial_agrees_observed"]:
            print(f"  WARNING {name}: initial observed PSNR {r['observed']['psnr_initial']:.2f} dB, yet the case is built to "
                  f"{'agree' if r['initial_agrees_observed'] else 'disagree'} there")
        if disagree > 0.02:
            print(f"  WARNING {name}: ray-cast and Blender silhouettes disagree on {100 * disagree:.1f}% of pixels")
        results.append(r)

    print_table(results)
    if results:
        worst = max(results, key=lambda r: r["silhouette_disagreement"])
        print(f"regions ray cast from the evaluation cameras; their silhouettes and Blender's differ on at most "
              f"{100 * worst['silhouette_disagreement']:.2f}% of the pixels ({worst['case']})")
    rows = acceptance(results) if results else []
    print(f"\nacceptance (PSNRs compared capped at {COMPARE_CAP:.0f} dB; the initial agrees on the observed region "
          f"in every case but those built wrong there):")
    for what, ok, detail in rows:
        print(f"  {'n/a ' if ok is None else 'PASS' if ok else 'FAIL'}  {what}: {detail}")
    total = time.monotonic() - t_start
    print(f"\nfidelity: {len(results)}/{len(names)} cases scored in {total:.0f} s; files in {work}")
    if args.json:
        Path(args.json).write_text(json.dumps({
            "product": str(product), "product_commit": git_describe(product), "bench_commit": git_describe(REPO),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "quick": args.quick, "samples": samples,
            "sets": args.set, "seconds": round(total, 1), "psnr_cap_db": PSNR_CAP, "compare_cap_db": COMPARE_CAP,
            "cases": results, "acceptance": [{"what": w, "pass": ok, "detail": dt} for w, ok, dt in rows]}, indent=1))
    return 0 if len(results) == len(names) else 1


if __name__ == "__main__":
    sys.exit(main())
