"""Splats -> a Blender point mesh carrying every 3DGS field, with a Geometry Nodes + material viewport setup.

Attributes on the point domain: position (the vertices), `f_dc` (vector), `f_rest_<i>` (float each, file
order), `opacity` (logit), `scale` (vector, log), `rotation` (quaternion wxyz), every extra PLY field under
its own name; and two derived ones for display, `splat_color` (RGBA: SH degree 0 and sigmoid opacity) and
`splat_radius` (geometric mean of the three scales). The Geometry Nodes modifier shows at most
"Max Points" of them (every k-th point) as a point cloud; the mesh keeps all of them.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ..materials import new_node_material
from .mesh import set_positions
from .ply import Splats, read_splats

NODE_GROUP = "Likeness3D Splats"
NODE_GROUP_VERSION = 2
"""Bumped when the display tree changes: a file saved with an older one gets the new one at the next import."""
MATERIAL = "Likeness3D Splat"
DEFAULT_DISPLAY_CAP = 250_000
_RESERVED = {"position", "id", "material_index", "sharp_face", "radius"}


def import_splats(
    splats: Splats,
    name: str,
    collection: bpy.types.Collection | None = None,
    display_cap: int = DEFAULT_DISPLAY_CAP,
) -> bpy.types.Object:
    """A new object `name` holding `splats` in the Blender world frame (identity transform)."""
    n = len(splats)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(n)
    set_positions(mesh, splats.positions.ravel())

    # one field at a time from the (memory-mapped) file into Blender: no copy of the whole table
    _add(mesh, "f_dc", "FLOAT_VECTOR", "vector", splats.f_dc)
    for i, field in enumerate(splats.rest):
        _add(mesh, f"f_rest_{i}", "FLOAT", "value", splats.column(field).astype(np.float32, copy=False))
    _add(mesh, "opacity", "FLOAT", "value", splats.opacity)
    scales = splats.scales
    _add(mesh, "scale", "FLOAT_VECTOR", "vector", scales)
    _add(mesh, "rotation", "QUATERNION", "value", splats.rotations)
    for field in splats.extra:
        values = splats.column(field)
        attr_name = f"ply_{field}" if field in _RESERVED or field.startswith(".") else field
        if values.dtype.kind in "iu" and values.dtype.itemsize <= 4 and values.dtype != np.uint32:
            _add(mesh, attr_name, "INT", "value", values.astype(np.int32))
        else:
            _add(mesh, attr_name, "FLOAT", "value", values.astype(np.float32))
    _add(mesh, "splat_color", "FLOAT_COLOR", "color", splats.colors())
    _add(mesh, "splat_radius", "FLOAT", "value", np.exp(scales.mean(axis=1)).astype(np.float32))
    mesh.color_attributes.active_color = mesh.color_attributes["splat_color"]
    mesh.update()

    obj = bpy.data.objects.new(name, mesh)
    (collection or bpy.context.scene.collection).objects.link(obj)
    obj["likeness3d_splats"] = {"count": n, "sh_degree": splats.sh_degree}
    add_display_modifier(obj, display_cap)
    return obj


def import_splat_file(path: str | Path, name: str | None = None, collection=None,
                      display_cap: int = DEFAULT_DISPLAY_CAP) -> bpy.types.Object:
    path = Path(path)
    obj = import_splats(read_splats(path), name or path.stem, collection, display_cap)
    obj["likeness3d_splats"] = {**obj["likeness3d_splats"].to_dict(), "file": str(path)}
    return obj


def _add(mesh: bpy.types.Mesh, name: str, data_type: str, prop: str, values: np.ndarray) -> None:
    attr = mesh.attributes.new(name, data_type, "POINT")
    attr.data.foreach_set(prop, np.ascontiguousarray(values).ravel())


def add_display_modifier(obj: bpy.types.Object, display_cap: int) -> bpy.types.Modifier:
    """The Geometry Nodes modifier that shows the splats as coloured points, at most `display_cap` of them."""
    group = splat_node_group()
    mod = obj.modifiers.new("Likeness3D Splats", "NODES")
    mod.node_group = group
    mod[_socket_id(group, "Max Points")] = int(max(1, display_cap))
    mod[_socket_id(group, "Material")] = splat_material()
    obj.data.materials.append(splat_material())  # so the material also shows in the object's slots
    return mod


def _socket_id(group: bpy.types.NodeTree, name: str) -> str:
    return next(i.identifier for i in group.interface.items_tree if i.item_type == "SOCKET" and i.name == name
                and i.in_out == "INPUT")


def splat_node_group() -> bpy.types.NodeTree:
    """Group Input -> Mesh to Points of every k-th point (k = ceil(count / Max Points)) -> Set Material.

    When every point is shown the selection is the constant True, not the field `index mod 1 < 0.5`: Mesh to
    Points then shares the mesh's attribute arrays instead of gathering each of them (for 100k splats with SH
    degree 1, 0.9 ms instead of 7 ms a frame when they move; docs/BENCHMARKS.md)."""
    group = bpy.data.node_groups.get(NODE_GROUP)
    if group is not None and group.bl_idname == "GeometryNodeTree":
        if group.get("likeness3d_version") == NODE_GROUP_VERSION:
            return group
    if group is not None:
        group.name = f"{NODE_GROUP} (old)"  # objects made before keep theirs; new imports get this one
    group = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
    group["likeness3d_version"] = NODE_GROUP_VERSION
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    cap = iface.new_socket("Max Points", in_out="INPUT", socket_type="NodeSocketInt")
    cap.default_value, cap.min_value = DEFAULT_DISPLAY_CAP, 1
    scale = iface.new_socket("Radius Scale", in_out="INPUT", socket_type="NodeSocketFloat")
    scale.default_value, scale.min_value = 1.0, 0.0
    iface.new_socket("Material", in_out="INPUT", socket_type="NodeSocketMaterial")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")

    nodes, links = group.nodes, group.links
    inp, out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")

    count = nodes.new("GeometryNodeAttributeDomainSize")  # "Point Count" of the mesh
    count.component = "MESH"
    links.new(inp.outputs["Geometry"], count.inputs["Geometry"])
    ratio = _math(nodes, "DIVIDE")
    links.new(count.outputs["Point Count"], ratio.inputs[0])
    links.new(inp.outputs["Max Points"], ratio.inputs[1])
    stride = _math(nodes, "CEIL")
    links.new(ratio.outputs[0], stride.inputs[0])
    index = nodes.new("GeometryNodeInputIndex")
    modulo = _math(nodes, "MODULO")
    links.new(index.outputs[0], modulo.inputs[0])
    links.new(stride.outputs[0], modulo.inputs[1])
    keep = _math(nodes, "LESS_THAN")  # index mod k < 0.5: a kept point
    links.new(modulo.outputs[0], keep.inputs[0])
    keep.inputs[1].default_value = 0.5
    capped = _math(nodes, "GREATER_THAN")  # more points than Max Points: keep every k-th, else all (constant)
    links.new(count.outputs["Point Count"], capped.inputs[0])
    links.new(inp.outputs["Max Points"], capped.inputs[1])
    selection = nodes.new("GeometryNodeSwitch")
    selection.input_type = "BOOLEAN"
    links.new(capped.outputs[0], selection.inputs["Switch"])
    selection.inputs["False"].default_value = True
    links.new(keep.outputs[0], selection.inputs["True"])

    radius = nodes.new("GeometryNodeInputNamedAttribute")
    radius.data_type = "FLOAT"
    radius.inputs["Name"].default_value = "splat_radius"
    scaled = _math(nodes, "MULTIPLY")
    links.new(radius.outputs["Attribute"], scaled.inputs[0])
    links.new(inp.outputs["Radius Scale"], scaled.inputs[1])

    to_points = nodes.new("GeometryNodeMeshToPoints")  # its selection keeps every k-th point (no copy first)
    to_points.mode = "VERTICES"
    links.new(inp.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(selection.outputs[0], to_points.inputs["Selection"])
    links.new(scaled.outputs[0], to_points.inputs["Radius"])

    set_material = nodes.new("GeometryNodeSetMaterial")
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(inp.outputs["Material"], set_material.inputs["Material"])
    links.new(set_material.outputs["Geometry"], out.inputs["Geometry"])

    for x, node in enumerate((inp, count, ratio, stride, modulo, keep, to_points, set_material, out)):
        node.location = (200 * x, 0)
    index.location, radius.location, scaled.location = (600, -250), (1000, -300), (1200, -300)
    capped.location, selection.location = (800, 250), (1000, 150)
    return group


def _math(nodes, operation: str):
    node = nodes.new("ShaderNodeMath")
    node.operation = operation
    return node


def splat_material() -> bpy.types.Material:
    """Unlit colour from `splat_color`, its alpha mixed with transparency."""
    material = bpy.data.materials.get(MATERIAL)
    if material is not None:
        return material
    material = new_node_material(MATERIAL)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    nodes.clear()
    attr = nodes.new("ShaderNodeAttribute")
    attr.attribute_type = "GEOMETRY"
    attr.attribute_name = "splat_color"
    emission = nodes.new("ShaderNodeEmission")
    transparent = nodes.new("ShaderNodeBsdfTransparent")
    mix = nodes.new("ShaderNodeMixShader")
    output = nodes.new("ShaderNodeOutputMaterial")
    links.new(attr.outputs["Color"], emission.inputs["Color"])
    links.new(attr.outputs["Alpha"], mix.inputs["Fac"])
    links.new(transparent.outputs[0], mix.inputs[1])
    links.new(emission.outputs[0], mix.inputs[2])
    links.new(mix.outputs[0], output.inputs["Surface"])
    for x, node in enumerate((attr, emission, mix, output)):
        node.location = (250 * x, 0)
    transparent.location = (250, -200)
    material.diffuse_color = (0.8, 0.8, 0.8, 1.0)
    return material
