"""Material node trees across Blender versions: before 5.0 a new material has no node tree until
`use_nodes` is set; from 5.0 every material has one and `use_nodes` is deprecated."""

from __future__ import annotations

import bpy

_ALWAYS_NODES = bpy.app.version >= (5, 0, 0)


def new_node_material(name: str) -> bpy.types.Material:
    """A new material with its default node tree (Principled BSDF -> Material Output)."""
    material = bpy.data.materials.new(name)
    if material.node_tree is None:
        material.use_nodes = True
    return material


def uses_nodes(material: bpy.types.Material | None) -> bool:
    if material is None or material.node_tree is None:
        return False
    return _ALWAYS_NODES or material.use_nodes
