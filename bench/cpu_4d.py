"""CPU figures of the 4D backend pieces (no GPU): binding N splats to a mesh, posing them at a frame, writing a
PC2 cache, and the glTF evaluator on a skinned file.

    python bench/cpu_4d.py [--splats 100000] [--rings 224] [--frames 48]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from likeness3d.backend.stages.animation.binding import bind
from likeness3d.backend.synthetic.animated import deform
from likeness3d.backend.synthetic.example import ellipsoid_mesh, true_texture
from likeness3d.protocol.pc2 import write_pc2


def best(fn, repeat=3):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--splats", type=int, default=100_000)
    ap.add_argument("--rings", type=int, default=224)
    ap.add_argument("--frames", type=int, default=48)
    args = ap.parse_args()
    mesh = ellipsoid_mesh(true_texture(16), rings=args.rings, segments=2 * args.rings)
    v, f = mesh.vertices.astype(np.float64), mesh.faces.astype(np.int64)
    rng = np.random.default_rng(0)
    tri = rng.integers(0, len(f), args.splats)
    w = rng.dirichlet([1, 1, 1], args.splats)
    means = (v[f[tri]] * w[..., None]).sum(1) + rng.normal(scale=0.002, size=(args.splats, 3))
    quats, scales = rng.normal(size=(args.splats, 4)), np.full((args.splats, 3), -5.0)
    print(f"{len(f)} triangles, {len(v)} vertices, {args.splats} splats, {args.frames} frames")
    b = bind(means, quats, scales, v, f)
    print(f"bind: {best(lambda: bind(means, quats, scales, v, f), 1):.2f} s")
    posed = deform(v, 3)
    print(f"pose at one frame: {best(lambda: b.pose(posed, f)):.3f} s")
    frames = np.stack([deform(v, k, args.frames) for k in range(1, args.frames + 1)])
    with tempfile.TemporaryDirectory() as tmp:
        print(f"write animation.pc2: {best(lambda: write_pc2(Path(tmp) / 'a.pc2', frames, 1)):.3f} s "
              f"({frames.nbytes / 2**20:.0f} MiB)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
    from gltf_build import skinned_glb
    from likeness3d.backend.inputs.gltf_anim import read_animated_gltf

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "s.glb").write_bytes(skinned_glb())
        t = best(lambda: read_animated_gltf(Path(tmp) / "s.glb", (0, args.frames - 1, 1)))
        print(f"glTF evaluator, skinned strip (12 vertices), {args.frames} frames: {t:.3f} s")


if __name__ == "__main__":
    main()
