"""The mesh work of a TIRE job, Embree against NVIDIA Warp side by side in one run.

Whole stages as the TIRE pipeline runs them (`backend/pipelines/tire.py`), on the job's ray backend:
  observe  the fidelity stage's preparation: the texture's texels lifted onto the surface (UV lookup), each
           reference photo's passes and antialiased render, their lighting and agreement, the texels observed;
  render   the target views: the orbit's passes, the coverage planner's candidates and added views;
  bake     the target views baked onto the UVs (texel lookup, depth-tested projection).
On two meshes: the demo subject (the pebble, 4k triangles) and the same pebble tessellated to 100k triangles;
the references are gpu_tire's (the demo subject's three 512 px photos). Warp runs on CUDA when there is a GPU,
else on Warp's CPU device; Embree always runs on the CPU. Prints a table and writes JSON.

    python bench/mesh_passes.py [--out mesh_passes.json] [--size 512] [--azimuths 24] [--texture 1024]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from likeness3d.backend.stages.texture.bake_views import bake_views
from likeness3d.backend.stages.texture.config import BakeConfig, FidelityConfig
from likeness3d.backend.stages.texture.fidelity import prepare_fidelity
from likeness3d.backend.stages.views.config import CoverageConfig
from likeness3d.backend.stages.views.mesh_passes import Raycaster
from likeness3d.backend.stages.views.rays import RaySpec
from likeness3d.backend.stages.views.targets import target_views
from likeness3d.backend.stages.views.track import KnownView
from likeness3d.backend.synthetic.example import ellipsoid_mesh, example_case
from likeness3d.protocol.assets import Mesh


def stages(mesh: Mesh, references, spec: RaySpec, size: int, azimuths: int, texture: int) -> dict:
    out = {}
    t0 = time.monotonic()
    caster = Raycaster(mesh, spec)
    out["bvh_s"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    fid = prepare_fidelity(mesh, references, caster, FidelityConfig(), (texture, texture))
    out["observe_s"] = round(time.monotonic() - t0, 3)
    sources = [KnownView(r.image, r.depth, r.camera) for r in fid.references]
    t0 = time.monotonic()
    tv = target_views(caster, fid.surface.points, fid.surface.normals, sources, size, azimuths, (0.0, 30.0), 40.0,
                      CoverageConfig())
    out["render_s"] = round(time.monotonic() - t0, 3)
    t0 = time.monotonic()
    bake_views(mesh, [(tv.passes.rgb, tv.cameras, 1.0, tv.passes)], BakeConfig(texture_size=(texture, texture),
               dilate_px=0), spec=caster.spec)
    out["bake_s"] = round(time.monotonic() - t0, 3)
    out["total_s"] = round(out["observe_s"] + out["render_s"] + out["bake_s"], 3)
    out.update(views=len(tv.cameras), added=len(tv.plan.report), observed=int(fid.observation.observed.sum()),
               texels=len(fid.surface), rays=caster.backend)
    return out


def warm_up(spec: RaySpec) -> float:
    """Compile the backend's kernels (Warp: once per machine, then cached) outside the timings."""
    from likeness3d.backend.stages.views.cameras import orbit
    from likeness3d.backend.synthetic.shapes import uv_cube

    t0 = time.monotonic()
    Raycaster(uv_cube(1.0), spec).passes(orbit((0, 0, 0), 1.0, [0.0], [0.0], 16, 16))
    return time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="mesh_passes.json")
    ap.add_argument("--size", type=int, default=512, help="target view side (px)")
    ap.add_argument("--azimuths", type=int, default=24, help="orbit views per elevation (2 elevations)")
    ap.add_argument("--texture", type=int, default=1024, help="texture side (texels)")
    ap.add_argument("--meshes", default="demo,100k")
    args = ap.parse_args()
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else f"CPU ({platform.processor() or platform.machine()}, " \
                                                         f"{torch.get_num_threads()} torch threads)"
    case = example_case(image_size=512, texture_size=args.texture)
    meshes = {"demo": case.initial}
    if "100k" in args.meshes:
        fine = ellipsoid_mesh(case.initial.texture, rings=224, segments=224)
        meshes["100k"] = fine
    specs = {"embree": RaySpec("embree", "cpu"), "warp": RaySpec("warp", "cuda" if cuda else "cpu")}
    print(f"device: {device}; warp on {specs['warp'].device}", flush=True)
    for name, spec in specs.items():
        print(f"{name}: warm-up {warm_up(spec):.1f} s", flush=True)
    rows = {"device": device, "size": args.size, "azimuths": args.azimuths, "texture": args.texture, "runs": {}}
    for mname in args.meshes.split(","):
        mesh = meshes[mname]
        for name, spec in specs.items():
            r = stages(mesh, case.references, spec, args.size, args.azimuths, args.texture)
            r["triangles"] = len(mesh.faces)
            rows["runs"][f"{mname}/{name}"] = r
            print(f"{mname:>5} {name:<7} " + " ".join(f"{k} {r[k]}" for k in ("bvh_s", "observe_s", "render_s", "bake_s",
                                                                                "total_s", "views", "observed")), flush=True)
    with open(args.out, "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\n{'mesh':<6}{'triangles':>10}{'backend':>9}{'observe s':>11}{'render s':>10}{'bake s':>8}{'total s':>9}")
    for key, r in rows["runs"].items():
        m, b = key.split("/")
        print(f"{m:<6}{r['triangles']:>10}{b:>9}{r['observe_s']:>11.2f}{r['render_s']:>10.2f}{r['bake_s']:>8.2f}"
              f"{r['total_s']:>9.2f}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
