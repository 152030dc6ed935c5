"""Splats bound to a mesh follow it live: a Geometry Nodes modifier samples the target's evaluated vertex
positions at each splat's three triangle vertices, mixes them with the splat's barycentric weights and adds
its offset along the triangle's unit normal.

The binding of a 4D `splats.ply` (`bind_face`, `bind_u`, `bind_v`, `bind_offset`, ...) arrives as point
attributes of the splat object; at import the triangle's vertex indices are stored as integer point attributes
`bind_v0`, `bind_v1`, `bind_v2`, so evaluation is three Sample Index nodes and some vector maths per point:

    centre = (1 - u - v) * P[v0] + u * P[v1] + v * P[v2] + offset * unit((P[v1] - P[v0]) x (P[v2] - P[v0]))
"""

from __future__ import annotations

import bpy
import numpy as np

from ...protocol.errors import InvalidAsset

BIND_GROUP = "Likeness3D Bound Splats"
BIND_MODIFIER = "Likeness3D Binding"
BIND_FIELDS = ("bind_face", "bind_u", "bind_v", "bind_offset")


def is_bound(names) -> bool:
    return all(name in names for name in BIND_FIELDS)


def _int_attr(mesh: bpy.types.Mesh, name: str) -> np.ndarray:
    attr = mesh.attributes[name]
    values = np.empty(len(attr.data), np.int32 if attr.data_type == "INT" else np.float32)
    attr.data.foreach_get("value", values)
    return values.astype(np.int64)


def bind_splats(splats: bpy.types.Object, target: bpy.types.Object, triangles: np.ndarray) -> bpy.types.Modifier:
    """Drive the points of `splats` by `target`'s evaluated mesh; `triangles` [T, 3] are the target's triangles
    as the job's `bind_face` indexes them. The modifier goes first, before the display modifier."""
    mesh = splats.data
    if "bind_face" not in mesh.attributes:
        raise InvalidAsset(f"splats {splats.name!r} have no bind_face attribute: they are not bound to a mesh",
                           field="splats.ply")
    face = _int_attr(mesh, "bind_face")
    if len(face) and (face.min() < 0 or face.max() >= len(triangles)):
        bad = int(face.max()) if face.max() >= len(triangles) else int(face.min())
        raise InvalidAsset(f"splats.ply: bind_face {bad} is outside the {len(triangles)} triangles of "
                           f"{target.name!r}; the splats belong to another mesh", field="splats.ply")
    corners = triangles[face]
    for k in range(3):
        name = f"bind_v{k}"
        if name in mesh.attributes:
            mesh.attributes.remove(mesh.attributes[name])
        attr = mesh.attributes.new(name, "INT", "POINT")
        attr.data.foreach_set("value", np.ascontiguousarray(corners[:, k], dtype=np.int32))
    mod = splats.modifiers.new(BIND_MODIFIER, "NODES")
    mod.node_group = bound_node_group()
    socket = next(i.identifier for i in mod.node_group.interface.items_tree
                  if i.item_type == "SOCKET" and i.in_out == "INPUT" and i.name == "Target")
    mod[socket] = target
    splats.modifiers.move(len(splats.modifiers) - 1, 0)  # before the display modifier (points -> cloud)
    splats["likeness3d_bound_to"] = target.name
    return mod


def bound_node_group() -> bpy.types.NodeTree:
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
