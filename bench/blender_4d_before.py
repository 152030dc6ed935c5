"""The bound-splat and display node trees as they were before the 4D speed work (2026-12-02), rebuilt under
other names so bench/blender_4d.py can time them beside the current ones in one run. Not used by the add-on."""

from __future__ import annotations

import bpy

BIND_GROUP = "Likeness3D Bound Splats (before)"
NODE_GROUP = "Likeness3D Splats (before)"
DEFAULT_DISPLAY_CAP = 250_000


def bound_node_group_before() -> bpy.types.NodeTree:
    group = bpy.data.node_groups.get(BIND_GROUP)
    if group is not None and group.bl_idname == "GeometryNodeTree":
        return group
    group = bpy.data.node_groups.new(BIND_GROUP, "GeometryNodeTree")
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    iface.new_socket("Target", in_out="INPUT", socket_type="NodeSocketObject")
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    nodes, links = group.nodes, group.links
    inp, out = nodes.new("NodeGroupInput"), nodes.new("NodeGroupOutput")

    info = nodes.new("GeometryNodeObjectInfo")  # the target's evaluated geometry, in this object's space
    info.transform_space = "RELATIVE"
    links.new(inp.outputs["Target"], info.inputs["Object"])
    position = nodes.new("GeometryNodeInputPosition")

    corners = []
    for k in range(3):
        index = _named(nodes, "INT", f"bind_v{k}")
        sample = nodes.new("GeometryNodeSampleIndex")
        sample.data_type, sample.domain = "FLOAT_VECTOR", "POINT"
        links.new(info.outputs["Geometry"], sample.inputs["Geometry"])
        links.new(position.outputs["Position"], sample.inputs["Value"])
        links.new(index.outputs["Attribute"], sample.inputs["Index"])
        corners.append(sample.outputs[0])
        index.location, sample.location = (0, -220 * k), (220, -220 * k)

    u, v, offset = (_named(nodes, "FLOAT", name) for name in ("bind_u", "bind_v", "bind_offset"))
    w0 = _math(nodes, links, "SUBTRACT", 1.0, u.outputs["Attribute"])
    w0 = _math(nodes, links, "SUBTRACT", w0, v.outputs["Attribute"])
    terms = [_vec(nodes, links, "SCALE", corner, scale=w)
             for corner, w in zip(corners, (w0, u.outputs["Attribute"], v.outputs["Attribute"]))]
    centre = _vec(nodes, links, "ADD", _vec(nodes, links, "ADD", terms[0], terms[1]), terms[2])
    edge1 = _vec(nodes, links, "SUBTRACT", corners[1], corners[0])
    edge2 = _vec(nodes, links, "SUBTRACT", corners[2], corners[0])
    normal = _vec(nodes, links, "NORMALIZE", _vec(nodes, links, "CROSS_PRODUCT", edge1, edge2))
    lifted = _vec(nodes, links, "ADD", centre, _vec(nodes, links, "SCALE", normal, scale=offset.outputs["Attribute"]))

    set_position = nodes.new("GeometryNodeSetPosition")
    links.new(inp.outputs["Geometry"], set_position.inputs["Geometry"])
    links.new(lifted, set_position.inputs["Position"])
    links.new(set_position.outputs["Geometry"], out.inputs["Geometry"])
    inp.location, info.location, set_position.location, out.location = (-400, 200), (0, 200), (1400, 200), (1600, 200)
    return group


def _named(nodes, data_type: str, name: str):
    node = nodes.new("GeometryNodeInputNamedAttribute")
    node.data_type = data_type
    node.inputs["Name"].default_value = name
    return node


def _math(nodes, links, operation: str, a, b):
    node = nodes.new("ShaderNodeMath")
    node.operation = operation
    for socket, value in zip(node.inputs, (a, b)):
        if isinstance(value, float):
            socket.default_value = value
        else:
            links.new(value, socket)
    return node.outputs[0]


def _vec(nodes, links, operation: str, a, b=None, scale=None):
    node = nodes.new("ShaderNodeVectorMath")
    node.operation = operation
    links.new(a, node.inputs[0])
    if b is not None:
        links.new(b, node.inputs[1])
    if scale is not None:
        links.new(scale, node.inputs["Scale"])
    return node.outputs["Vector"]


def splat_node_group_before() -> bpy.types.NodeTree:
    """Group Input -> Mesh to Points of every k-th point (k = ceil(count / Max Points)) -> Set Material."""
    group = bpy.data.node_groups.get(NODE_GROUP)
    if group is not None and group.bl_idname == "GeometryNodeTree":
        return group
    group = bpy.data.node_groups.new(NODE_GROUP, "GeometryNodeTree")
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
    ratio = _fmath(nodes, "DIVIDE")
    links.new(count.outputs["Point Count"], ratio.inputs[0])
    links.new(inp.outputs["Max Points"], ratio.inputs[1])
    stride = _fmath(nodes, "CEIL")
    links.new(ratio.outputs[0], stride.inputs[0])
    index = nodes.new("GeometryNodeInputIndex")
    modulo = _fmath(nodes, "MODULO")
    links.new(index.outputs[0], modulo.inputs[0])
    links.new(stride.outputs[0], modulo.inputs[1])
    keep = _fmath(nodes, "LESS_THAN")  # index mod k < 0.5: a kept point
    links.new(modulo.outputs[0], keep.inputs[0])
    keep.inputs[1].default_value = 0.5

    radius = nodes.new("GeometryNodeInputNamedAttribute")
    radius.data_type = "FLOAT"
    radius.inputs["Name"].default_value = "splat_radius"
    scaled = _fmath(nodes, "MULTIPLY")
    links.new(radius.outputs["Attribute"], scaled.inputs[0])
    links.new(inp.outputs["Radius Scale"], scaled.inputs[1])

    to_points = nodes.new("GeometryNodeMeshToPoints")  # its selection keeps every k-th point (no copy first)
    to_points.mode = "VERTICES"
    links.new(inp.outputs["Geometry"], to_points.inputs["Mesh"])
    links.new(keep.outputs[0], to_points.inputs["Selection"])
    links.new(scaled.outputs[0], to_points.inputs["Radius"])

    set_material = nodes.new("GeometryNodeSetMaterial")
    links.new(to_points.outputs["Points"], set_material.inputs["Geometry"])
    links.new(inp.outputs["Material"], set_material.inputs["Material"])
    links.new(set_material.outputs["Geometry"], out.inputs["Geometry"])

    for x, node in enumerate((inp, count, ratio, stride, modulo, keep, to_points, set_material, out)):
        node.location = (200 * x, 0)
    index.location, radius.location, scaled.location = (600, -250), (1000, -300), (1200, -300)
    return group


def _fmath(nodes, operation: str):
    node = nodes.new("ShaderNodeMath")
    node.operation = operation
    return node


