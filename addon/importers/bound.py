"""Splats bound to a mesh follow it live: a Geometry Nodes modifier samples the target's evaluated vertex
positions at each splat's three triangle vertices and poses the splat on that triangle, centre and rotation.

The binding of a 4D `splats.ply` (`bind_face`, `bind_u`, `bind_v`, `bind_offset`, `bind_rot_0..3`,
`bind_scale_0..2`) arrives as point attributes of the splat object; at import the triangle's vertex indices are
stored as integer point attributes `bind_v0`, `bind_v1`, `bind_v2` (the rotation in the triangle's frame is read
from `bind_rot_0..3`, checked here), so evaluation is three Sample Index nodes and float maths per point
(bound_nodes.py):

    centre   = (1 - u - v) * P[v0] + u * P[v1] + v * P[v2] + offset * unit((P[v1] - P[v0]) x (P[v2] - P[v0]))
    rotation = [x y z] bind_rot, x = unit(P[v1] - P[v0]), z = that unit normal, y = z x x

The binding's scale is the splat's own log scale (the triangle's frame is not scaled), so `scale` stays as
imported at every frame.
"""

from __future__ import annotations

import bpy
import numpy as np

from ...protocol.errors import InvalidAsset
from .bound_nodes import bound_node_group

BIND_MODIFIER = "Likeness3D Binding"
BIND_FIELDS = ("bind_face", "bind_u", "bind_v", "bind_offset")
ROT_FIELDS = ("bind_rot_0", "bind_rot_1", "bind_rot_2", "bind_rot_3")


def is_bound(names) -> bool:
    return all(name in names for name in BIND_FIELDS)


def _values(mesh: bpy.types.Mesh, name: str, dtype) -> np.ndarray:
    """[N] a point attribute (integer or float, as the PLY stored it) as `dtype`."""
    attr = mesh.attributes[name]
    values = np.empty(len(attr.data), np.int32 if attr.data_type == "INT" else np.float32)
    attr.data.foreach_get("value", values)
    return values.astype(dtype)


def bind_splats(splats: bpy.types.Object, target: bpy.types.Object, triangles: np.ndarray) -> bpy.types.Modifier:
    """Drive the points of `splats` by `target`'s evaluated mesh; `triangles` [T, 3] are the target's triangles
    as the job's `bind_face` indexes them. The modifier goes first, before the display modifier."""
    mesh = splats.data
    if "bind_face" not in mesh.attributes:
        raise InvalidAsset(f"splats {splats.name!r} have no bind_face attribute: they are not bound to a mesh",
                           field="splats.ply")
    face = _values(mesh, "bind_face", np.int64)
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
    _check_bind_rot(splats)
    mod = splats.modifiers.new(BIND_MODIFIER, "NODES")
    mod.node_group = bound_node_group()
    socket = next(i.identifier for i in mod.node_group.interface.items_tree
                  if i.item_type == "SOCKET" and i.in_out == "INPUT" and i.name == "Target")
    mod[socket] = target
    splats.modifiers.move(len(splats.modifiers) - 1, 0)  # before the display modifier (points -> cloud)
    splats["likeness3d_bound_to"] = target.name
    return mod


def _check_bind_rot(splats: bpy.types.Object) -> None:
    """bind_rot_0..3 (wxyz, any length) must be there and make a rotation for every splat; the node tree
    normalises them (Quaternion to Rotation)."""
    mesh = splats.data
    missing = [name for name in ROT_FIELDS if name not in mesh.attributes]
    if missing:
        raise InvalidAsset(f"splats {splats.name!r} are bound (bind_face) but have no {', '.join(missing)}: the "
                           "splats.ply lacks the rotation of its binding; export it again with Likeness3D",
                           field="splats.ply")
    q = np.stack([_values(mesh, name, np.float64) for name in ROT_FIELDS], axis=1)
    length = np.linalg.norm(q, axis=1)
    bad = np.flatnonzero(~np.isfinite(length) | (length < 1e-12))
    if len(bad):
        raise InvalidAsset(f"splats.ply: bind_rot of splat {int(bad[0])} is {q[bad[0]].tolist()}, not a rotation; "
                           "a bound splat needs a non-zero finite quaternion (wxyz)", field="splats.ply")

