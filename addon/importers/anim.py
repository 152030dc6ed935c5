"""4D results -> Blender: the artist's own object copied with the refined material (their rig drives it), or,
without a scene object, the refined mesh played by a Mesh Cache modifier on `animation.pc2`.

A 4D job's `mesh.glb` splits vertices at UV seams (glTF keeps attributes per vertex); `animation.pc2` holds the
gathered (unsplit) vertices. The exporter orders split vertices by their original vertex, so each original
vertex is one run of equal positions in the GLB: welding the runs gives back the gathered vertex order.
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from ...protocol.errors import InvalidAsset
from ...protocol.pc2 import read_pc2
from ..gather import find_base_color_image
from .gltf import read_glb
from .mesh import MeshImportError, build_mesh, hide_source, textured_material

PC2_ARTIFACT = "animation.pc2"
MESH_CACHE = "Likeness3D Mesh Cache"


def glb_image(path: Path, name: str, glb=None) -> bpy.types.Image | None:
    """The GLB's base-colour image (of `glb`, the file already read, if given), loaded and packed."""
    glb = glb if glb is not None else read_glb(path)
    if glb.image_bytes is None:
        return None
    suffix = ".jpg" if glb.image_mime == "image/jpeg" else ".png"
    image_path = path.with_name(f"{path.stem}_basecolor{suffix}")
    image_path.write_bytes(glb.image_bytes)
    image = bpy.data.images.load(str(image_path))
    image.name = name
    image.pack()
    return image


def refined_copy(source: bpy.types.Object, image: bpy.types.Image) -> bpy.types.Object:
    """A copy of `source` (its modifiers, armature, constraints, parent, shape keys and their animation intact)
    whose base-colour image is the refined one. Materials are copied, never edited; the source is hidden."""
    if source.type != "MESH" or not source.data.uv_layers:
        raise MeshImportError(f"{source.name!r} has no UV map, so a copy of it cannot carry the refined texture")
    obj = source.copy()
    obj.data = source.data.copy()  # its own mesh (and shape keys), so the source stays untouched
    obj.name = obj.data.name = f"{source.name}_refined"
    for collection in source.users_collection or (bpy.context.scene.collection,):
        collection.objects.link(obj)
    old_image, uv_map = find_base_color_image(source)
    replaced = False
    for slot in obj.material_slots:
        material = slot.material
        if material is None or material.node_tree is None or old_image is None:
            continue
        nodes = [n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage" and n.image == old_image]
        if not nodes:
            continue
        slot.material = material = material.copy()
        material.name = f"{source.name}_refined"
        for node in material.node_tree.nodes:
            if node.bl_idname == "ShaderNodeTexImage" and node.image == old_image:
                node.image = image
                replaced = True
    if not replaced:  # no textured material to keep: a new one on the UV map the texture was refined on
        material = textured_material(f"{source.name}_refined", image)
        layer = uv_map or next((la.name for la in obj.data.uv_layers if la.active_render), obj.data.uv_layers[0].name)
        uv_node = material.node_tree.nodes.new("ShaderNodeUVMap")
        uv_node.uv_map = layer
        tex = next(n for n in material.node_tree.nodes if n.bl_idname == "ShaderNodeTexImage")
        material.node_tree.links.new(uv_node.outputs["UV"], tex.inputs["Vector"])
        obj.data.materials.clear()
        obj.data.materials.append(material)
        for slot in obj.material_slots:
            slot.link, slot.material = "DATA", material
    obj["likeness3d_source"] = source.name
    hide_source(source)
    return obj


def weld_runs(vertices: np.ndarray) -> np.ndarray:
    """[V_split] int32: the original vertex of each GLB vertex (a run of equal positions is one vertex)."""
    if len(vertices) == 0:
        return np.zeros(0, np.int32)
    new_run = np.any(vertices[1:] != vertices[:-1], axis=1)
    return np.concatenate([[0], np.cumsum(new_run)]).astype(np.int32)


def cached_mesh(glb_path: Path, pc2_path: Path, name: str,
                collection: bpy.types.Collection | None = None) -> bpy.types.Object:
    """The refined mesh (welded back to the gathered vertices) with a Mesh Cache modifier on `pc2_path`,
    mapped so that scene frame N shows the gathered frame N."""
    cache = read_pc2(pc2_path, mmap=True)
    n_cached = cache.positions.shape[1]
    glb = read_glb(glb_path)
    owner = weld_runs(glb.vertices)
    n_welded = int(owner[-1]) + 1 if len(owner) else 0
    if n_welded != n_cached:
        raise InvalidAsset(f"{pc2_path.name} holds {n_cached} vertices but {glb_path.name} has {n_welded} "
                           f"({len(glb.vertices)} before welding UV seams); they must come from the same job",
                           field="cache")
    first = np.zeros(n_welded, np.int64)
    first[owner[::-1]] = np.arange(len(owner))[::-1]  # the first GLB vertex of each welded vertex
    mesh = build_mesh(name, glb.vertices[first], owner[glb.faces], glb.uvs)
    if glb.image_bytes is not None:
        mesh.materials.append(textured_material(name, glb_image(glb_path, f"{name}_basecolor", glb)))
    obj = bpy.data.objects.new(name, mesh)
    (collection or bpy.context.scene.collection).objects.link(obj)
    add_mesh_cache(obj, pc2_path, cache.start, cache.sampling)
    return obj


def add_mesh_cache(obj: bpy.types.Object, pc2_path: Path, start: float, sampling: float) -> bpy.types.Modifier:
    """Mesh Cache (PC2, FRAME mode). Blender reads cached index = frame_scale * scene frame - frame_start, so
    frame_scale = 1 / sampling and frame_start = start / sampling put cached frame k at scene frame
    start + k * sampling; in between, positions are interpolated linearly."""
    if sampling <= 0:
        raise InvalidAsset(f"{pc2_path.name}: PC2 sampling is {sampling}; it must be positive", field="cache")
    n = len(obj.data.vertices)
    cache = read_pc2(pc2_path, mmap=True)
    if cache.positions.shape[1] != n:
        raise InvalidAsset(f"{pc2_path.name} holds {cache.positions.shape[1]} vertices but mesh {obj.name!r} has "
                           f"{n}", field="cache")
    mod = obj.modifiers.new(MESH_CACHE, "MESH_CACHE")
    mod.cache_format = "PC2"
    mod.filepath = str(pc2_path)
    mod.time_mode, mod.play_mode = "FRAME", "SCENE"
    mod.frame_scale = 1.0 / float(sampling)
    mod.frame_start = float(start) / float(sampling)
    mod.forward_axis, mod.up_axis = "POS_Y", "POS_Z"  # the cache is in Blender's own frame
    mod.interpolation = "LINEAR"
    obj["likeness3d_cache"] = {"file": str(pc2_path), "start": float(start), "sampling": float(sampling),
                               "frames": int(cache.positions.shape[0])}
    return mod


def binding_triangles(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> np.ndarray:
    """[T, 3] the triangles a job's `bind_face` indexes on `obj`: for a cached mesh built from the result (all
    triangles, identity transform) its own face corners; for an artist's object its evaluated loop triangles."""
    mesh = obj.data
    corner_vert = mesh.attributes.get(".corner_vert")
    if "likeness3d_cache" in obj and corner_vert is not None and len(mesh.loops) == 3 * len(mesh.polygons):
        corners = np.empty(len(mesh.loops), np.int32)
        corner_vert.data.foreach_get("value", corners)
        return corners.reshape(-1, 3)
    return evaluated_triangles(obj, depsgraph)


def evaluated_triangles(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph) -> np.ndarray:
    """[T, 3] int32 vertex indices of the evaluated mesh's loop triangles, in the gather's convention (a
    mirroring world transform swaps two corners), so a splat's `bind_face` indexes them."""
    obj_eval = obj.evaluated_get(depsgraph)
    mesh = obj_eval.to_mesh()
    try:
        mesh.calc_loop_triangles()
        faces = np.empty(len(mesh.loop_triangles) * 3, np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
    finally:
        obj_eval.to_mesh_clear()
    faces = faces.reshape(-1, 3)
    if np.linalg.det(np.array(obj_eval.matrix_world)[:3, :3]) < 0:
        faces = faces[:, [0, 2, 1]]
    return np.ascontiguousarray(faces)
