"""What single Geometry Nodes field nodes cost per point in Blender, the figures behind the bound-splat tree's
design (addon/importers/bound_nodes.py): a 100k-point mesh, a Store Named Attribute of a field built from
`count` nodes of one kind, re-evaluated by tagging the mesh; CPU milliseconds (all threads) per evaluation, the
fastest of `--rounds` medians, less the same tree with no nodes of that kind. The rotation nodes are each
followed by a Rotation to Quaternion (so the figures compare them with each other). Runs in the Blender environment:

    python bench/blender_nodes.py [--points 100000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import bpy
import numpy as np


def _group(kind: str, count: int) -> bpy.types.NodeTree:
    group = bpy.data.node_groups.new(f"{kind} x{count}", "GeometryNodeTree")
    group.interface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    group.interface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    inp, out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")
    store = nodes.new("GeometryNodeStoreNamedAttribute")
    store.data_type, store.inputs["Name"].default_value = "FLOAT", "out"
    named = nodes.new("GeometryNodeInputNamedAttribute")
    named.data_type, named.inputs["Name"].default_value = "FLOAT", "f"
    value, position = named.outputs["Attribute"], nodes.new("GeometryNodeInputPosition").outputs[0]

    def add(a, b):  # one cheap float node to chain the next one on
        node = nodes.new("ShaderNodeMath")
        links.new(a, node.inputs[0])
        links.new(b, node.inputs[1])
        return node.outputs[0]

    for i in range(count):
        if kind == "float maths":
            value = add(value, value)
        elif kind == "Separate XYZ":
            node = nodes.new("ShaderNodeSeparateXYZ")
            links.new(position, node.inputs[0])
            value = add(value, node.outputs[i % 3])
        elif kind == "Index Switch (float fields)":
            node = nodes.new("GeometryNodeIndexSwitch")
            node.data_type = "FLOAT"
            node.index_switch_items.new()
            links.new(value, node.inputs["Index"])
            for k in range(3):
                links.new(value, node.inputs[f"Item_{k}"])
            value = node.outputs[0]
        elif kind.startswith("Sample Index"):
            node = nodes.new("GeometryNodeSampleIndex")
            node.data_type = "FLOAT"
            links.new(inp.outputs[0], node.inputs["Geometry"])
            links.new(named.outputs["Attribute"], node.inputs["Value"])  # not the chain: no nested samples
            links.new(nodes.new("GeometryNodeInputIndex").outputs[0], node.inputs["Index"])
            value = add(value, node.outputs[0])
        elif kind in ("Axes to Rotation", "Quaternion to Rotation"):
            if kind == "Axes to Rotation":
                node = nodes.new("FunctionNodeAxesToRotation")
                links.new(position, node.inputs[0])
                links.new(nodes.new("GeometryNodeInputNormal").outputs[0], node.inputs[1])
            else:
                node = nodes.new("FunctionNodeQuaternionToRotation")
                for k in range(4):
                    links.new(value, node.inputs[k])
            back = nodes.new("FunctionNodeRotationToQuaternion")
            links.new(node.outputs[0], back.inputs[0])
            value = add(value, back.outputs[i % 4])
    links.new(inp.outputs[0], store.inputs["Geometry"])
    links.new(value, store.inputs["Value"])
    links.new(store.outputs[0], out.inputs[0])
    return group


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--count", type=int, default=10, help="nodes of each kind in a chain")
    args = parser.parse_args()
    bpy.ops.wm.read_factory_settings(use_empty=True)
    rng = np.random.default_rng(0)
    mesh = bpy.data.meshes.new("points")
    mesh.vertices.add(args.points)
    mesh.vertices.foreach_set("co", rng.uniform(size=args.points * 3).astype(np.float32))
    mesh.attributes.new("f", "FLOAT", "POINT").data.foreach_set("value", rng.uniform(size=args.points).astype(np.float32))
    obj = bpy.data.objects.new("points", mesh)
    bpy.context.scene.collection.objects.link(obj)
    mod = obj.modifiers.new("bench", "NODES")
    depsgraph = bpy.context.evaluated_depsgraph_get()

    def cpu_ms(group, reps: int = 20) -> float:
        mod.node_group = group
        times = []
        for _ in range(reps):
            t0 = time.process_time()
            mesh.update_tag()
            depsgraph.update()
            times.append(time.process_time() - t0)
        return statistics.median(times) * 1e3

    kinds = ("float maths", "Separate XYZ", "Index Switch (float fields)", "Sample Index (float)",
             "Quaternion to Rotation", "Axes to Rotation")
    groups = {"empty": _group("float maths", 0)} | {kind: _group(kind, args.count) for kind in kinds}
    runs: dict[str, list[float]] = {name: [] for name in groups}
    for _ in range(args.rounds):  # the kinds take turns, so load from elsewhere hits them alike
        for name, group in groups.items():
            runs[name].append(cpu_ms(group))
    best = {name: min(times) for name, times in runs.items()}
    print(f"{'node (each chained by one float node)':<42} {'CPU ms':>8} {'ns a point a node':>18}")
    for kind in kinds:
        extra = best[kind] - best["empty"]
        print(f"{kind:<42} {extra / args.count:8.3f} {extra / args.count * 1e6 / args.points:18.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
