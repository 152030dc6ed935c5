"""Arrays -> a textured Blender mesh, through foreach_set: vertices, loops, per-corner UVs, a packed image.

The result is named `<source>_refined`, carries the source object's transform (its vertices are moved into
the source's local space, so it lands where the world-space arrays say), and the source is kept, hidden.
"""

from __future__ import annotations

import bpy
import numpy as np
from mathutils import Matrix

from ..images import array_to_image
from ..materials import new_node_material


class MeshImportError(ValueError):
    """Arrays that do not form a mesh; the message names the field and the value."""


def check_arrays(vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None, texture: np.ndarray | None) -> None:
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise MeshImportError(f"vertices must have shape [V, 3] with V > 0, got {list(vertices.shape)}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise MeshImportError(f"faces must have shape [F, 3] with F > 0, got {list(faces.shape)}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshImportError(f"faces reference vertex {int(faces.max())} (min {int(faces.min())}) "
                              f"but there are {len(vertices)} vertices")
    if not np.all(np.isfinite(vertices)):
        bad = int(np.argwhere(~np.isfinite(vertices))[0][0])
        raise MeshImportError(f"vertices[{bad}] is {vertices[bad].tolist()} (must be finite)")
    if uvs is not None and uvs.shape != (len(faces), 3, 2):
        raise MeshImportError(f"uvs must have shape [{len(faces)}, 3, 2], got {list(uvs.shape)}")
    if texture is not None and (texture.ndim != 3 or texture.shape[2] != 4):
        raise MeshImportError(f"texture must have shape [H, W, 4], got {list(texture.shape)}")


def build_mesh(name: str, vertices: np.ndarray, faces: np.ndarray, uvs: np.ndarray | None) -> bpy.types.Mesh:
    """A triangle mesh datablock; `vertices` [V,3] in the object's local space, `uvs` [F,3,2] per corner."""
    n_faces = len(faces)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    set_positions(mesh, np.ascontiguousarray(vertices, dtype=np.float32).ravel())
    mesh.loops.add(3 * n_faces)
    corners = np.ascontiguousarray(faces, dtype=np.int32).ravel()
    corner_vert = mesh.attributes.get(".corner_vert")
    if corner_vert is not None:  # the attribute: far faster than mesh.loops' per-item vertex_index
        corner_vert.data.foreach_set("value", corners)
    else:
        mesh.loops.foreach_set("vertex_index", corners)
    mesh.polygons.add(n_faces)
    mesh.polygons.foreach_set("loop_start", np.arange(0, 3 * n_faces, 3, dtype=np.int32))
    if uvs is not None:
        layer = mesh.uv_layers.new(name="UVMap")
        layer.data.foreach_set("uv", np.ascontiguousarray(uvs, dtype=np.float32).ravel())
    mesh.update(calc_edges=True)
    return mesh


def set_positions(mesh: bpy.types.Mesh, flat: np.ndarray) -> None:
    """[V*3] float32 vertex positions through the `position` attribute (far faster than `vertices.co`)."""
    attr = mesh.attributes.get("position")
    if attr is not None:
        attr.data.foreach_set("vector", flat)
    else:
        mesh.vertices.foreach_set("co", flat)


def textured_material(name: str, image: bpy.types.Image) -> bpy.types.Material:
    """Principled BSDF whose base colour (and alpha) come from `image` through the UV map."""
    material = new_node_material(name)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = next(n for n in nodes if n.bl_idname == "ShaderNodeBsdfPrincipled")
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    tex.location = (bsdf.location.x - 400, bsdf.location.y)
    links.new(tex.outputs["Color"], bsdf.inputs["Base Color"])
    return material


def import_textured_mesh(
    name: str,
    vertices: np.ndarray,  # [V,3] Blender world space
    faces: np.ndarray,  # [F,3] int
    uvs: np.ndarray | None = None,  # [F,3,2] per-corner UVs
    texture: np.ndarray | bpy.types.Image | None = None,  # [H,W,4] RGBA rows top-down, or an image
    source: bpy.types.Object | None = None,
    collection: bpy.types.Collection | None = None,
) -> bpy.types.Object:
    """A new object built from world-space arrays; with `source`, it takes the source's transform and
    collection, is named `<source>_refined`, and the source is hidden (kept)."""
    vertices = np.asarray(vertices)
    faces = np.asarray(faces)
    check_arrays(vertices, faces, uvs, texture if isinstance(texture, np.ndarray) else None)
    matrix = np.array(source.matrix_world, dtype=np.float64) if source is not None else np.eye(4)
    if source is not None:
        name = f"{source.name}_refined"
        # world -> the source's local space, so the object can carry the source's transform
        inv = np.linalg.inv(matrix)
        vertices = vertices.astype(np.float64) @ inv[:3, :3].T + inv[:3, 3]
        if np.linalg.det(matrix[:3, :3]) < 0:  # a mirroring transform flips the winding back: pre-flip it
            faces = faces[:, [0, 2, 1]]
            uvs = None if uvs is None else uvs[:, [0, 2, 1]]
    mesh = build_mesh(name, vertices, faces, uvs)
    if texture is not None:
        if isinstance(texture, np.ndarray):
            image = array_to_image(f"{name}_basecolor", texture)
        else:
            image = texture
            if image.packed_file is None:
                image.pack()
        mesh.materials.append(textured_material(name, image))
    if source is not None and source.type == "MESH" and any(p.use_smooth for p in source.data.polygons[:64]):
        mesh.shade_smooth()

    obj = bpy.data.objects.new(name, mesh)
    if collection is None:
        collection = source.users_collection[0] if source is not None and source.users_collection else None
    (collection or bpy.context.scene.collection).objects.link(obj)
    obj.matrix_world = Matrix(matrix.tolist())
    if source is not None:
        obj["likeness3d_source"] = source.name
        hide_source(source)
    return obj


def hide_source(source: bpy.types.Object) -> None:
    """Hide the source in the viewport (eye icon) and in renders; it stays in the file, untouched otherwise."""
    if source.name in bpy.context.view_layer.objects:
        source.hide_set(True)
    source.hide_render = True
