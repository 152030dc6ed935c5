"""Blender side of 4D, in seconds: gather of 48 frames of a 100k-triangle rigged mesh, import of a 4D result
(mesh.glb + animation.pc2 on a Mesh Cache + 100k bound splats), and a frame change with 100k bound splats in
the viewport's evaluation (`scene.frame_set` and the evaluated splat positions). Runs in the Blender
environment:

    PYTHONPATH=<dir holding likeness3d> python bench/blender_4d.py [--repeat 3]

"first" includes the process's first touch of the memory, "best" is the fastest later run; a frame change is
timed over every gathered frame (median and worst). Goals (issue 14): gather <= 1.5 s, import <= 1 s,
frame change <= 16 ms.

Frame changes are timed side by side in one run, the variants taking turns (`--rounds` rounds of all frames
each, so a burst of load from elsewhere hits them alike): the node trees before the 4D speed work
(bench/blender_4d_before.py: positions only, display selection always a field), the old binding with the current
display, the current trees (positions and rotations; and with the modifier's Pose Rotations off), and the same
frame with the splats hidden (what the target's own animation costs: the armature or the Mesh Cache).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bpy
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "addon"))  # the test scene builders
from anim_scenes import rigged_grid  # noqa: E402
from files import png_bytes, write_glb, write_ply  # noqa: E402
from files_4d import bound_splat_fields, write_contract_pc2  # noqa: E402

from likeness3d.addon.gather import gather_mesh  # noqa: E402
from likeness3d.addon.gather_anim import frame_numbers, gather_frames  # noqa: E402
from likeness3d.addon.importers import import_result  # noqa: E402
from likeness3d.addon.importers.bound_nodes import POSE_ROTATIONS  # noqa: E402
from blender_4d_before import bound_node_group_before, splat_node_group_before  # noqa: E402

GOALS = {"gather": 1.5, "import 4D result": 1.0, "frame change": 0.016}


def evaluated_splats(obj) -> np.ndarray:
    """The splat centres the viewport draws: the Geometry Nodes point cloud's positions."""
    geometry = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).evaluated_geometry()
    cloud = geometry.pointcloud  # valid while `geometry` lives
    pos = np.empty(len(cloud.points) * 3, np.float32)
    cloud.attributes["position"].data.foreach_get("vector", pos)
    return pos


def frame_change_times(splats, numbers, read: bool = True) -> tuple[list[float], float]:
    """Wall seconds of each frame change, and the CPU seconds (all threads) per frame change: on a loaded
    host the wall time includes waiting for a core, the CPU time does not."""
    scene = bpy.context.scene
    times = []
    cpu0 = time.process_time()
    for n in numbers.tolist()[1:] + numbers.tolist()[:1]:
        t0 = time.perf_counter()
        scene.frame_set(n)
        if read:
            evaluated_splats(splats)
        times.append(time.perf_counter() - t0)
    return times, (time.process_time() - cpu0) / len(times)


def use_trees(splats, bind_group, display_group) -> None:
    """Put the given node groups on the splats' two modifiers, keeping their inputs."""
    for mod, group in zip(splats.modifiers, (bind_group, display_group)):
        inputs = {name: mod[ident] for name, ident in _inputs(mod.node_group).items() if ident in mod}
        mod.node_group = group
        for name, ident in _inputs(group).items():
            if name in inputs:
                mod[ident] = inputs[name]


def _inputs(group) -> dict[str, str]:
    return {i.name: i.identifier for i in group.interface.items_tree
            if i.item_type == "SOCKET" and i.in_out == "INPUT" and i.socket_type != "NodeSocketGeometry"}


def side_by_side(splats, numbers, rounds: int) -> dict[str, tuple[list[float], float]]:
    """Frame changes with the old trees, the current trees, and the splats hidden, taking turns."""
    current = (splats.modifiers[0].node_group, splats.modifiers[1].node_group)
    before = (bound_node_group_before(), splat_node_group_before())
    trees = {"before (positions)": before, "positions, display now": (before[0], current[1]),
             "now (positions, rotations)": current, "now, Pose Rotations off": current,
             "splats hidden (target alone)": current}
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in trees}
    mod = splats.modifiers[0]
    pose = next(i.identifier for i in current[0].interface.items_tree if i.name == POSE_ROTATIONS)
    for _ in range(rounds):
        for name in out:
            use_trees(splats, *trees[name])
            if name.startswith("now"):
                mod[pose] = not name.endswith("off")
                splats.update_tag()
            splats.hide_viewport = name.startswith("splats hidden")
            times, cpu = frame_change_times(splats, numbers, read=not splats.hide_viewport)
            out[name][0].extend(times)
            out[name][1].append(cpu)
    splats.hide_viewport = False
    use_trees(splats, *current)
    mod[pose] = True
    return {name: (times, statistics.mean(cpu)) for name, (times, cpu) in out.items()}


def remove_objects(objects) -> None:
    for obj in objects:
        data = obj.data
        bpy.data.objects.remove(obj)
        if isinstance(data, bpy.types.Mesh) and data.users == 0:
            bpy.data.meshes.remove(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--grid", type=int, default=224, help="quads per side: 224 -> 100,352 triangles")
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--splats", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3, help="turns of each frame-change variant")
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    tmp = Path(tempfile.mkdtemp(prefix="likeness3d-bench4d-"))
    results: dict[str, tuple[list[float], str]] = {}

    # 1. Gather: the armature-deformed mesh's evaluated positions at every frame
    obj = rigged_grid(args.grid, 1, args.frames, name="Bench")
    numbers = frame_numbers(1, args.frames)
    scene = bpy.context.scene
    anim = gather_frames(obj, scene, numbers)
    detail = f"{args.frames} frames, {2 * args.grid ** 2:,} triangles, {anim.frames.shape[1]:,} vertices, armature"
    results["gather"] = ([_time(lambda: gather_frames(obj, scene, numbers)) for _ in range(args.repeat)],
                         detail)

    # 2. Import of the 4D result of a file input: mesh.glb + animation.pc2 (Mesh Cache) + bound splats.ply
    scene.frame_set(1)
    rest = gather_mesh(obj, bpy.context.evaluated_depsgraph_get(), with_texture=False)
    uv = np.zeros((len(rest.vertices), 2), np.float32)
    uv[rest.faces.ravel()] = rest.uvs.reshape(-1, 2)
    texture = np.random.default_rng(0).integers(0, 255, size=(1024, 1024, 4), dtype=np.uint8)
    glb = write_glb(tmp / "mesh.glb", rest.vertices, rest.faces, uv, png_bytes(texture))
    pc2 = write_contract_pc2(tmp / "animation.pc2", anim.frames, start=1, sampling=1)
    ply = write_ply(tmp / "splats.ply", bound_splat_fields(rest.vertices, rest.faces, args.splats))
    paths = [glb, pc2, ply]
    times = []
    for i in range(args.repeat):
        t0 = time.perf_counter()
        objects = import_result(paths, None, display_cap=args.splats)
        times.append(time.perf_counter() - t0)
        if i < args.repeat - 1:
            remove_objects(objects)
    results["import 4D result"] = (times, f"{len(rest.faces):,} triangles, 1024^2 PNG, {args.frames}-frame PC2, "
                                          f"{args.splats:,} bound splats")

    # 3. Frame changes with the bound splats following the cached mesh, then following the artist's rig
    obj.hide_viewport = True  # a file input has no rig in the scene: the source is out of the evaluation
    mesh_cache_times = side_by_side(objects[1], numbers, args.rounds)
    remove_objects(objects)
    obj.hide_viewport = False
    copied = import_result(paths, obj, display_cap=args.splats)  # the copy is driven by the rig; source hidden
    rig_times = side_by_side(copied[1], numbers, args.rounds)
    print(f"{'what':<34} {'first s':>8} {'best s':>8} {'goal s':>7}  detail")
    for name, (times, detail) in results.items():
        best = min(times[1:]) if len(times) > 1 else times[0]
        print(f"{name:<34} {times[0]:8.3f} {best:8.3f} {GOALS[name]:7.3f}  {detail}")
    for target, variants in (("Mesh Cache target", mesh_cache_times), ("armature target", rig_times)):
        for name, (times, cpu) in variants.items():
            print(f"frame change, {target}, {name:<28} median {statistics.median(times) * 1e3:6.1f} ms, worst "
                  f"{max(times) * 1e3:6.1f} ms, CPU {cpu * 1e3:6.1f} ms (goal {GOALS['frame change'] * 1e3:.0f} ms), "
                  f"{args.splats:,} bound splats, {len(times)} frame changes")
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    return 0


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


if __name__ == "__main__":
    sys.exit(main())
