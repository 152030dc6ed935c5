"""Blender I/O of the add-on, in seconds: gather of a 1M-triangle mesh, import of a 1M-splat PLY and of a
1M-triangle textured mesh (the result GLB, and straight from arrays). Runs in the Blender environment:

    PYTHONPATH=<dir holding likeness3d> python bench/blender_io.py [--repeat 3]

Each figure is timed `--repeat` times in one process; "first" includes the process's first touch of the
memory (as an artist's first import in a session does), "best" is the fastest later run.
Goals (issue 3): gather <= 0.5 s, each import <= 1.5 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "addon"))  # the test file writers
from files import png_bytes, random_splats, write_glb, write_ply  # noqa: E402

from likeness3d.addon.gather import gather_mesh  # noqa: E402
from likeness3d.addon.importers import import_glb_arrays  # noqa: E402
from likeness3d.addon.importers.mesh import import_textured_mesh  # noqa: E402
from likeness3d.addon.importers.splats import import_splat_file  # noqa: E402
from likeness3d.addon.materials import new_node_material  # noqa: E402

GOALS = {"gather": 0.5, "import splats": 1.5, "import mesh (GLB)": 1.5, "import mesh (arrays)": 1.5}


def quad_grid(n: int):
    """n x n quads (2 n^2 triangles once triangulated): vertices [V,3], quads [Q,4], per-vertex uv [V,2]."""
    t = np.linspace(0.0, 1.0, n + 1, dtype=np.float32)
    u, v = np.meshgrid(t, t, indexing="xy")
    vertices = np.column_stack([u.ravel() - 0.5, v.ravel() - 0.5, 0.1 * np.sin(6 * u.ravel())]).astype(np.float32)
    i = np.arange(n)
    a = (i[None, :] + (n + 1) * i[:, None]).ravel()
    quads = np.column_stack([a, a + 1, a + n + 2, a + n + 1]).astype(np.int32)
    return vertices, quads, np.column_stack([u.ravel(), v.ravel()]).astype(np.float32)


def textured_quad_object(n: int, texture_size: int) -> bpy.types.Object:
    vertices, quads, uv = quad_grid(n)
    mesh = bpy.data.meshes.new("bench")
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(quads.size)
    mesh.loops.foreach_set("vertex_index", quads.ravel())
    mesh.polygons.add(len(quads))
    mesh.polygons.foreach_set("loop_start", np.arange(0, quads.size, 4, dtype=np.int32))
    mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", uv[quads.ravel()].ravel())
    mesh.update(calc_edges=True)
    image = bpy.data.images.new("bench_tex", texture_size, texture_size, alpha=True)
    image.pixels.foreach_set(np.random.default_rng(0).uniform(size=texture_size * texture_size * 4).astype(np.float32))
    material = new_node_material("bench")
    tex = material.node_tree.nodes.new("ShaderNodeTexImage")
    tex.image = image
    material.node_tree.links.new(tex.outputs["Color"], material.node_tree.nodes["Principled BSDF"].inputs["Base Color"])
    mesh.materials.append(material)
    obj = bpy.data.objects.new("bench", mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = (1.0, 2.0, 3.0)
    bpy.context.view_layer.update()
    return obj


def timed(fn, repeat: int, cleanup=lambda result: None) -> list[float]:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        cleanup(result)
    return times


def remove(obj) -> None:
    data = obj.data
    bpy.data.objects.remove(obj)
    bpy.data.meshes.remove(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grid", type=int, default=708, help="quads per side: 708 -> 1,002,528 triangles")
    parser.add_argument("--splats", type=int, default=1_000_000)
    parser.add_argument("--texture", type=int, default=1024, help="texture side, pixels")
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    tmp = Path(tempfile.mkdtemp(prefix="likeness3d-bench-"))
    results: dict[str, tuple[list[float], str]] = {}

    # 1. Gather: evaluated mesh -> world space, triangulated, per-corner UVs, base-colour texture
    obj = textured_quad_object(args.grid, args.texture)
    depsgraph = bpy.context.evaluated_depsgraph_get()
    arrays = gather_mesh(obj, depsgraph)
    detail = f"{len(arrays.faces):,} triangles, {len(arrays.vertices):,} vertices, {args.texture}^2 texture"
    results["gather"] = (timed(lambda: gather_mesh(obj, depsgraph), args.repeat), detail)

    # 2. Import of a 1M-splat 3DGS PLY (SH degree 3, with nx ny nz), with its Geometry Nodes display setup
    ply = write_ply(tmp / "splats.ply", random_splats(args.splats, 3))
    results["import splats"] = (timed(lambda: import_splat_file(ply), args.repeat, remove),
                                f"{args.splats:,} splats, {ply.stat().st_size / 2**20:.0f} MiB")

    # 3. Import of a 1M-triangle textured mesh: the result GLB (numpy reader + foreach_set), and from arrays
    # the GLB as an exporter writes it: vertices shared where their UVs agree (this grid has no UV seams)
    grid_vertices, quads, grid_uv = quad_grid(args.grid)
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    glb = write_glb(tmp / "mesh.glb", grid_vertices, tris, grid_uv, png_bytes(arrays.texture))
    vertices, faces = arrays.vertices, arrays.faces
    detail = f"{len(faces):,} triangles, {args.texture}^2 PNG, {glb.stat().st_size / 2**20:.0f} MiB"

    def from_glb():
        return import_glb_arrays(glb, obj, "bench")

    def cleanup_mesh(new_obj):
        image = new_obj.data.materials[0].node_tree.nodes["Image Texture"].image
        material = new_obj.data.materials[0]
        remove(new_obj)
        bpy.data.materials.remove(material)
        bpy.data.images.remove(image)

    results["import mesh (GLB)"] = (timed(from_glb, args.repeat, cleanup_mesh), detail)
    results["import mesh (arrays)"] = (
        timed(lambda: import_textured_mesh("bench", vertices, faces, arrays.uvs, arrays.texture, obj),
              args.repeat, cleanup_mesh),
        f"{len(faces):,} triangles, {args.texture}^2 texture")

    print(f"{'what':<22} {'first s':>8} {'best s':>8} {'goal s':>7}  detail")
    for name, (times, detail) in results.items():
        best = min(times[1:]) if len(times) > 1 else times[0]
        print(f"{name:<22} {times[0]:8.3f} {best:8.3f} {GOALS[name]:7.1f}  {detail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
