"""Blender -> arrays: the evaluated target mesh in world space, its UVs and base-colour texture, and cameras.

Everything moves through foreach_get into numpy; no per-vertex Python loops. The user's data is never
modified: a mesh without UVs is unwrapped on a temporary copy in a temporary scene.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import bpy
import numpy as np

from ..protocol.cameras import PinholeCamera, blender_to_cv, reframe_intrinsics
from .images import image_to_array
from .materials import uses_nodes

SMART_UV_ANGLE = math.radians(66.0)  # Blender's default angle limit
SMART_UV_MARGIN = 0.003  # a little room between islands, for texture bleeding when baking


class GatherError(ValueError):
    """Scene data that cannot become a job's input; the message names the object, the field and the value."""


@dataclass
class MeshArrays:
    """The target mesh as the wire wants it (see protocol.assets.Mesh)."""

    vertices: np.ndarray  # [V,3] float32, Blender world space
    faces: np.ndarray  # [F,3] int32, counter-clockwise front faces
    uvs: np.ndarray | None  # [F,3,2] float32 per-corner UVs (Blender loop order)
    texture: np.ndarray | None  # [H,W,4] uint8 or float32 RGBA, rows top-down
    uv_source: str  # "uv:<layer name>" or "smart_uv_project"
    texture_name: str | None  # the bpy image the texture came from


def gather_mesh(obj: bpy.types.Object, depsgraph: bpy.types.Depsgraph, with_texture: bool = True) -> MeshArrays:
    """The evaluated mesh (modifiers applied) of `obj`, triangulated, in world space."""
    if obj is None or obj.type != "MESH":
        kind = None if obj is None else obj.type
        raise GatherError(f"target must be a mesh object, got {getattr(obj, 'name', None)!r} of type {kind!r}")
    if obj.mode == "EDIT":
        obj.update_from_editmode()  # edit-mode changes are not in the evaluated mesh until synced
    image, uv_name = find_base_color_image(obj) if with_texture else (None, None)
    obj_eval = obj.evaluated_get(depsgraph)
    mesh = obj_eval.to_mesh()
    try:
        mesh.calc_loop_triangles()
        n_tris, n_verts = len(mesh.loop_triangles), len(mesh.vertices)
        if n_tris == 0:
            raise GatherError(f"target {obj.name!r} has no faces after its modifiers ({n_verts} vertices)")

        # 1. Vertices to world space, in float64 for the transform.
        co = np.empty(n_verts * 3, dtype=np.float32)
        mesh.vertices.foreach_get("co", co)
        matrix = np.array(obj_eval.matrix_world, dtype=np.float64)
        world = (co.reshape(-1, 3) @ matrix[:3, :3].T + matrix[:3, 3]).astype(np.float32)

        # 2. Triangles in loop order, with the loop of each corner for per-corner data.
        faces = np.empty(n_tris * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("vertices", faces)
        loops = np.empty(n_tris * 3, dtype=np.int32)
        mesh.loop_triangles.foreach_get("loops", loops)

        # 3. UVs: the layer the texture samples, else the render-active one; else unwrap a copy.
        layer = _uv_layer(mesh, uv_name)
        if layer is not None:
            loop_uvs = np.empty(len(mesh.loops) * 2, dtype=np.float32)
            layer.data.foreach_get("uv", loop_uvs)
            uv_source = f"uv:{layer.name}"
        else:
            loop_uvs = smart_uv_unwrap_copy(mesh)
            uv_source = "smart_uv_project"
        uvs = loop_uvs.reshape(-1, 2)[loops].reshape(n_tris, 3, 2)
    finally:
        obj_eval.to_mesh_clear()

    faces = faces.reshape(n_tris, 3)
    if np.linalg.det(matrix[:3, :3]) < 0:
        # a mirroring transform turns counter-clockwise into clockwise: swap two corners back
        faces = faces[:, [0, 2, 1]]
        uvs = uvs[:, [0, 2, 1]]
    texture = image_to_array(image, f"{obj.name}.material base colour") if image is not None else None
    return MeshArrays(
        world,
        np.ascontiguousarray(faces),
        np.ascontiguousarray(uvs),
        texture,
        uv_source,
        image.name if image is not None else None,
    )


def _uv_layer(mesh: bpy.types.Mesh, name: str | None):
    if not mesh.uv_layers:
        return None
    if name and name in mesh.uv_layers:
        return mesh.uv_layers[name]
    for layer in mesh.uv_layers:
        if layer.active_render:
            return layer
    return mesh.uv_layers.active


def smart_uv_unwrap_copy(mesh: bpy.types.Mesh) -> np.ndarray:
    """[L*2] float32 per-loop UVs from Smart UV Project run on a copy of `mesh` in a temporary scene.

    The copy keeps the loop order (an edit-mode round trip without topology changes does), so the UVs
    index like `mesh.loops`. Nothing of the user's scene or data is touched.
    """
    copy = mesh.copy()
    scene = bpy.data.scenes.new(".likeness3d_unwrap")
    obj = bpy.data.objects.new(".likeness3d_unwrap", copy)
    try:
        scene.collection.objects.link(obj)
        view_layer = scene.view_layers[0]
        view_layer.objects.active = obj
        obj.select_set(True, view_layer=view_layer)
        copy.polygons.foreach_set("select", np.ones(len(copy.polygons), dtype=bool))
        base = dict(scene=scene, view_layer=view_layer, active_object=obj, object=obj,
                    selected_objects=[obj], selected_editable_objects=[obj])
        with bpy.context.temp_override(**base):
            bpy.ops.object.mode_set(mode="EDIT")
        with bpy.context.temp_override(**base, edit_object=obj):
            bpy.ops.uv.smart_project(angle_limit=SMART_UV_ANGLE, island_margin=SMART_UV_MARGIN)
            bpy.ops.object.mode_set(mode="OBJECT")
        if len(copy.loops) != len(mesh.loops) or not copy.uv_layers:
            raise GatherError(f"Smart UV Project changed the loop count ({len(mesh.loops)} -> {len(copy.loops)})")
        uvs = np.empty(len(copy.loops) * 2, dtype=np.float32)
        copy.uv_layers[0].data.foreach_get("uv", uvs)
        return uvs
    finally:
        bpy.data.objects.remove(obj)
        bpy.data.scenes.remove(scene)
        bpy.data.meshes.remove(copy)


def find_base_color_image(obj: bpy.types.Object) -> tuple[bpy.types.Image | None, str | None]:
    """The image feeding the base colour of the object's first node material, and the UV map it samples.

    Follows links upstream from the output's surface shader's "Base Color" (or "Color") input, through
    any nodes in between, to the nearest Image Texture node.
    """
    for slot in obj.material_slots:
        material = slot.material
        if not uses_nodes(material):
            continue
        tree = material.node_tree
        output = next((n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial" and n.is_active_output),
                      None) or next((n for n in tree.nodes if n.bl_idname == "ShaderNodeOutputMaterial"), None)
        if output is None or not output.inputs["Surface"].is_linked:
            continue
        shader = output.inputs["Surface"].links[0].from_node
        socket = shader.inputs.get("Base Color") or shader.inputs.get("Color")
        if socket is None or not socket.is_linked:
            continue
        tex = _upstream_image_node(socket)
        if tex is not None:
            return tex.image, _uv_map_of(tex)
    return None, None


def _upstream_image_node(socket):
    frontier, seen = [link.from_node for link in socket.links], set()
    while frontier:  # breadth first: the nearest image texture wins
        node = frontier.pop(0)
        if node.name in seen:
            continue
        seen.add(node.name)
        if node.bl_idname == "ShaderNodeTexImage" and node.image is not None:
            return node
        for inp in node.inputs:
            frontier += [link.from_node for link in inp.links]
    return None


def _uv_map_of(tex_node) -> str | None:
    vector = tex_node.inputs.get("Vector")
    if vector is not None and vector.is_linked:
        node = vector.links[0].from_node
        if node.bl_idname == "ShaderNodeUVMap" and node.uv_map:
            return node.uv_map
    return None


def gather_camera(
    cam_obj: bpy.types.Object,
    scene: bpy.types.Scene,
    image_size: tuple[int, int] | None = None,
    frame_method: str = "STRETCH",
) -> PinholeCamera:
    """OpenCV camera of a Blender camera object under the scene's render settings.

    With `image_size`, the intrinsics are those of an image of that size shown in the camera frame the way
    a camera background image with `frame_method` shows it (so a reference photo keeps its resolution).
    """
    if cam_obj is None or cam_obj.type != "CAMERA":
        raise GatherError(f"expected a camera object, got {getattr(cam_obj, 'name', None)!r}")
    data = cam_obj.data
    if data.type != "PERSP":
        raise GatherError(f"camera {cam_obj.name!r} has type {data.type!r}; only perspective cameras are supported")
    render = scene.render
    cam = blender_to_cv(
        np.array(cam_obj.matrix_world, dtype=np.float64),
        data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, data.shift_x, data.shift_y,
        render.resolution_x, render.resolution_y, render.resolution_percentage,
        render.pixel_aspect_x, render.pixel_aspect_y,
    )
    if image_size is None or tuple(image_size) == (cam.width, cam.height):
        return cam
    K = reframe_intrinsics(cam.K, (cam.width, cam.height), image_size, frame_method,
                           render.pixel_aspect_y / render.pixel_aspect_x)
    return PinholeCamera(K, cam.w2c, int(image_size[0]), int(image_size[1]))


def background_image_of(cam_obj: bpy.types.Object) -> tuple[bpy.types.Image | None, str]:
    """The first camera background image that holds an image, and its frame method."""
    if cam_obj is None or cam_obj.type != "CAMERA":
        return None, "STRETCH"
    for bg in cam_obj.data.background_images:
        if bg.source == "IMAGE" and bg.image is not None:
            return bg.image, bg.frame_method
    return None, "STRETCH"


def background_user_of(cam_obj: bpy.types.Object) -> bpy.types.ImageUser | None:
    """The image user (movie / sequence frame mapping) of the camera's first background image."""
    for bg in cam_obj.data.background_images:
        if bg.source == "IMAGE" and bg.image is not None:
            return bg.image_user
    return None
