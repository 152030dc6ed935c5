"""The Geometry Nodes tree that poses bound splats on the target's evaluated mesh: each splat's centre and its
rotation, as the backend's binding (backend/stages/animation/binding.py) poses them.

Per splat, with P0, P1, P2 the triangle's current vertices (three Sample Index lookups, `bind_v0..2`):

    e1 = P1 - P0, e2 = P2 - P0, z = unit(e1 x e2), x = unit(e1), y = z x x
    centre   = P0 + u e1 + v e2 + offset z
    rotation = [x y z] composed with bind_rot_0..3 (the splat's rotation in the triangle's frame, wxyz)

Speed (100k splats, docs/BENCHMARKS.md): Blender's Axes to Rotation node (like Align Rotation to Vector and
Separate Transform) costs about 70 ns a point (bench/blender_nodes.py), more than the rest of the tree, and an
Index Switch over fields about 7 ns against 0.3 ns for a Math node; so the frame's quaternion is computed with
plain float maths (Shepperd's method, the candidate picked by one-hot weights) and only the cheap Rotate
Rotation node composes it with `bind_rot_0..3`. Both outputs are captured in one field evaluation, so the three
lookups run once per frame, not once per output. The rotations still cost about as much as the positions; the
modifier's "Pose Rotations" input (on by default) lets an artist drop them for faster playback, and the splats
then keep their imported rotations, as the modifier panel shows.
"""

from __future__ import annotations

import bpy

BIND_GROUP = "Likeness3D Bound Splats"
BIND_GROUP_VERSION = 2
"""Bumped when the tree changes: a file saved with an older tree gets the new one at the next import."""
POSE_ROTATIONS = "Pose Rotations"
"""The modifier input (on by default) that turns the splats with their triangles."""
ROTATION = "rotation"
"""The splat display's rotation attribute (quaternion wxyz, addon/importers/splats.py)."""


def bound_node_group() -> bpy.types.NodeTree:
    """Geometry (the splat points) + Target (object) -> the points posed on the target's evaluated mesh."""
    group = bpy.data.node_groups.get(BIND_GROUP)
    if group is not None and group.bl_idname == "GeometryNodeTree":
        if group.get("likeness3d_version") == BIND_GROUP_VERSION:
            return group
    if group is not None:
        group.name = f"{BIND_GROUP} (old)"  # objects bound before keep theirs; new imports get this one
    group = bpy.data.node_groups.new(BIND_GROUP, "GeometryNodeTree")
    group["likeness3d_version"] = BIND_GROUP_VERSION
    iface = group.interface
    iface.new_socket("Geometry", in_out="INPUT", socket_type="NodeSocketGeometry")
    iface.new_socket("Target", in_out="INPUT", socket_type="NodeSocketObject")
    turn = iface.new_socket(POSE_ROTATIONS, in_out="INPUT", socket_type="NodeSocketBool",
                            description="Turn each splat with its triangle (off: rotations stay as imported, "
                                        "for faster playback)")
    turn.default_value = True
    iface.new_socket("Geometry", in_out="OUTPUT", socket_type="NodeSocketGeometry")
    t = _Builder(group)
    inp, out = t.node("NodeGroupInput"), t.node("NodeGroupOutput")

    # 1. The triangle's current vertices, in this object's space
    info = t.node("GeometryNodeObjectInfo", transform_space="RELATIVE")
    t.link(inp.outputs["Target"], info.inputs["Object"])
    position = t.node("GeometryNodeInputPosition").outputs[0]
    p0, p1, p2 = (t.sample(info.outputs["Geometry"], position, t.named("INT", f"bind_v{k}")) for k in range(3))

    # 2. The triangle's frame and the centre
    e1, e2 = t.vec("SUBTRACT", p1, p0), t.vec("SUBTRACT", p2, p0)
    z = t.vec("NORMALIZE", t.vec("CROSS_PRODUCT", e1, e2))
    centre = p0
    for axis, weight in ((e1, "bind_u"), (e2, "bind_v"), (z, "bind_offset")):
        centre = t.vec("ADD", centre, t.vec("SCALE", axis, scale=t.named("FLOAT", weight)))
    x = t.vec("NORMALIZE", e1)
    frame = frame_rotation(t, x, t.vec("CROSS_PRODUCT", z, x), z)

    # 3. The splat's rotation: the frame composed with its own (frame @ local, as the backend poses it)
    posed = t.node("FunctionNodeRotateRotation", rotation_space="LOCAL")
    t.link(frame, posed.inputs["Rotation"])
    local = t.node("FunctionNodeQuaternionToRotation")  # bind_rot_0..3 (wxyz, normalised here)
    for k, socket in enumerate(local.inputs):
        t.link(t.named("FLOAT", f"bind_rot_{k}"), socket)
    t.link(local.outputs[0], posed.inputs["Rotate By"])

    # 4. One evaluation of both fields, then position and rotation written
    capture = t.node("GeometryNodeCaptureAttribute", domain="POINT")
    capture.capture_items.new("VECTOR", "Centre")
    capture.capture_items.new("ROTATION", "Rotation")
    t.link(inp.outputs["Geometry"], capture.inputs["Geometry"])
    t.link(centre, capture.inputs["Centre"])
    t.link(posed.outputs[0], capture.inputs["Rotation"])
    set_position = t.node("GeometryNodeSetPosition")
    t.link(capture.outputs["Geometry"], set_position.inputs["Geometry"])
    t.link(capture.outputs["Centre"], set_position.inputs["Position"])
    store = t.node("GeometryNodeStoreNamedAttribute", data_type="QUATERNION", domain="POINT")
    store.inputs["Name"].default_value = ROTATION
    t.link(set_position.outputs[0], store.inputs["Geometry"])
    t.link(capture.outputs["Rotation"], store.inputs["Value"])

    # 5. Pose Rotations off: positions only (the Switch evaluates only the branch it passes on)
    moved = t.node("GeometryNodeSetPosition")
    t.link(inp.outputs["Geometry"], moved.inputs["Geometry"])
    t.link(centre, moved.inputs["Position"])
    switch = t.node("GeometryNodeSwitch", input_type="GEOMETRY")
    t.link(inp.outputs[POSE_ROTATIONS], switch.inputs["Switch"])
    t.link(moved.outputs[0], switch.inputs["False"])
    t.link(store.outputs[0], switch.inputs["True"])
    t.link(switch.outputs[0], out.inputs["Geometry"])
    t.arrange()
    return group


def frame_rotation(t: "_Builder", x, y, z):
    """The rotation whose columns are the unit vectors x, y, z (a rotation matrix R), by Shepperd's method.

    With q = (w, qx, qy, qz): 4 w q = (t0, a, b, c), 4 qx q = (a, t1, d, e), 4 qy q = (b, d, t2, f),
    4 qz q = (c, e, f, t3), where t0 = 1 + tr R = 4 w^2, t1 = 1 + R00 - R11 - R22 = 4 qx^2, ...,
    a = R21 - R12, b = R02 - R20, c = R10 - R01, d = R01 + R10, e = R02 + R20, f = R12 + R21. The t_k sum to 4,
    so one of them is at least 1: the first such candidate has |q_k| >= 1/2 and its normalised form is accurate
    at every angle (the trace formula alone fails near half turns). The choice is the first t_k >= 1, not the
    largest: fewer nodes, as accurate."""
    (r00, r10, r20), (r01, r11, r21), (r02, r12, r22) = (t.separate(v) for v in (x, y, z))
    s = t.math("ADD", t.math("ADD", r00, r11), r22)
    t0, one_minus_s = t.math("ADD", s, 1.0), t.math("SUBTRACT", 1.0, s)
    t1, t2, t3 = (t.math("MULTIPLY_ADD", r, 2.0, one_minus_s) for r in (r00, r11, r22))  # 1 + 2 R_kk - tr R
    a, b, c = t.math("SUBTRACT", r21, r12), t.math("SUBTRACT", r02, r20), t.math("SUBTRACT", r10, r01)
    d, e, f = t.math("ADD", r01, r10), t.math("ADD", r02, r20), t.math("ADD", r12, r21)
    # candidate k = 0 if t0 >= 1, else 1 if t1 >= 1, else 2 if t2 >= 1, else 3, as one-hot weights h_k from
    # l_i = (t_i < 1): h0 = 1 - l0, h1 = l0 - l0 l1, h2 = l0 l1 - l0 l1 l2, h3 = l0 l1 l2 (a Math node costs
    # about 0.3 ns a point, an Index Switch over fields about 7 ns: bench/blender_nodes.py)
    l0, l1, l2 = (t.math("LESS_THAN", ti, 1.0) for ti in (t0, t1, t2))
    g1 = t.math("MULTIPLY", l0, l1)
    h3 = t.math("MULTIPLY", g1, l2)
    hot = (t.math("SUBTRACT", 1.0, l0), t.math("SUBTRACT", l0, g1), t.math("SUBTRACT", g1, h3), h3)
    quat = t.node("FunctionNodeQuaternionToRotation")  # normalises
    for socket, column in zip(quat.inputs, ((t0, a, b, c), (a, t1, d, e), (b, d, t2, f), (c, e, f, t3))):
        value = t.math("MULTIPLY", hot[0], column[0])
        for h, candidate in zip(hot[1:], column[1:]):
            value = t.math("MULTIPLY_ADD", h, candidate, value)
        t.link(value, socket)
    return quat.outputs[0]


class _Builder:
    """Small helpers that add a node and link its inputs (sockets or constants); outputs are returned."""

    def __init__(self, group: bpy.types.NodeTree):
        self.nodes, self.links = group.nodes, group.links

    def node(self, kind: str, **props):
        node = self.nodes.new(kind)
        for name, value in props.items():
            setattr(node, name, value)
        return node

    def link(self, socket, target) -> None:
        self.links.new(socket, target)

    def _set(self, target, value) -> None:
        if isinstance(value, float):
            target.default_value = value
        else:
            self.links.new(value, target)

    def named(self, data_type: str, name: str):
        node = self.node("GeometryNodeInputNamedAttribute", data_type=data_type)
        node.inputs["Name"].default_value = name
        return node.outputs["Attribute"]

    def sample(self, geometry, value, index):
        node = self.node("GeometryNodeSampleIndex", data_type="FLOAT_VECTOR", domain="POINT")
        self.link(geometry, node.inputs["Geometry"])
        self.link(value, node.inputs["Value"])
        self.link(index, node.inputs["Index"])
        return node.outputs[0]

    def math(self, operation: str, *args):
        node = self.node("ShaderNodeMath", operation=operation)
        for socket, value in zip(node.inputs, args):
            self._set(socket, value)
        return node.outputs[0]

    def vec(self, operation: str, a, b=None, scale=None):
        node = self.node("ShaderNodeVectorMath", operation=operation)
        self.link(a, node.inputs[0])
        if b is not None:
            self.link(b, node.inputs[1])
        if scale is not None:
            self.link(scale, node.inputs["Scale"])
        return node.outputs["Vector"]

    def separate(self, vector):
        node = self.node("ShaderNodeSeparateXYZ")
        self.link(vector, node.inputs[0])
        return node.outputs[0], node.outputs[1], node.outputs[2]

    def arrange(self) -> None:
        """Columns by depth from the inputs, so the tree reads left to right in the node editor."""
        depth: dict = {}
        for node in self.nodes:  # nodes were added in dependency order
            ins = [depth.get(link.from_node.name, 0) for link in self.links if link.to_node == node]
            depth[node.name] = 1 + max(ins, default=-1)
        rows: dict = {}
        for node in self.nodes:
            d = depth[node.name] if node.bl_idname != "NodeGroupOutput" else max(depth.values()) + 1
            node.location = (220 * d, -160 * rows.setdefault(d, 0))
            rows[d] += 1
