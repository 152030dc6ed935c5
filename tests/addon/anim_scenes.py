"""Animated scenes for the 4D add-on tests and benchmarks, built with real bpy data: a grid bent by a two-bone
armature, and a grid waved by an animated shape key and moved by a constraint."""

from __future__ import annotations

import bpy
import numpy as np

from scenes import textured_material


def textured_grid(name: str, n: int, location=(0.0, 0.0, 0.0)) -> bpy.types.Object:
    """n x n quads (2 n^2 triangles once triangulated) with a UV map and a textured material."""
    t = np.linspace(0.0, 1.0, n + 1, dtype=np.float32)
    u, v = np.meshgrid(t, t, indexing="xy")
    vertices = np.column_stack([2 * u.ravel() - 1, v.ravel() - 0.5, 0.05 * np.sin(6 * u.ravel())]).astype(np.float32)
    i = np.arange(n)
    a = (i[None, :] + (n + 1) * i[:, None]).ravel()
    quads = np.column_stack([a, a + 1, a + n + 2, a + n + 1]).astype(np.int32)
    mesh = bpy.data.meshes.new(name)
    mesh.vertices.add(len(vertices))
    mesh.vertices.foreach_set("co", vertices.ravel())
    mesh.loops.add(quads.size)
    mesh.loops.foreach_set("vertex_index", quads.ravel())
    mesh.polygons.add(len(quads))
    mesh.polygons.foreach_set("loop_start", np.arange(0, quads.size, 4, dtype=np.int32))
    layer = mesh.uv_layers.new(name="UVMap")
    uv = np.column_stack([u.ravel(), v.ravel()]).astype(np.float32)
    layer.data.foreach_set("uv", uv[quads.ravel()].ravel())
    mesh.update(calc_edges=True)
    pixels = np.random.default_rng(3).uniform(size=(8, 8, 4)).astype(np.float32)
    pixels[..., 3] = 1.0
    mesh.materials.append(textured_material(f"{name}_skin", pixels))
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = location
    return obj


def rigged_grid(n: int = 8, frame_start: int = 1, frame_end: int = 5, name: str = "Rigged") -> bpy.types.Object:
    """A textured grid skinned to a two-bone armature whose second bone swings (and the armature object turns)
    between frame_start and frame_end; the mesh object has its own transform too."""
    obj = textured_grid(name, n, location=(0.3, -0.2, 0.1))
    arm_data = bpy.data.armatures.new(f"{name}_rig")
    rig = bpy.data.objects.new(f"{name}_rig", arm_data)
    bpy.context.scene.collection.objects.link(rig)
    bpy.context.view_layer.objects.active = rig
    with bpy.context.temp_override(active_object=rig, object=rig, selected_objects=[rig]):
        bpy.ops.object.mode_set(mode="EDIT")
        root = arm_data.edit_bones.new("root")
        root.head, root.tail = (-1.0, 0.0, 0.0), (0.0, 0.0, 0.0)
        tip = arm_data.edit_bones.new("tip")
        tip.head, tip.tail, tip.parent = (0.0, 0.0, 0.0), (1.0, 0.0, 0.0), root
        bpy.ops.object.mode_set(mode="OBJECT")
    x = np.empty(len(obj.data.vertices) * 3, np.float32)
    obj.data.vertices.foreach_get("co", x)
    x = x.reshape(-1, 3)[:, 0]
    weight = np.clip((x + 0.3) / 0.6, 0.0, 1.0)  # 0 left of -0.3, 1 right of 0.3, a blend between
    levels = np.round(weight * 10).astype(int)
    groups = {b: obj.vertex_groups.new(name=b) for b in ("root", "tip")}
    for level in range(11):
        index = np.flatnonzero(levels == level).tolist()
        if index:
            groups["tip"].add(index, level / 10, "REPLACE")
            groups["root"].add(index, 1 - level / 10, "REPLACE")
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = rig
    pose = rig.pose.bones["tip"]
    pose.rotation_mode = "XYZ"
    for frame, angle in ((frame_start, 0.0), ((frame_start + frame_end) // 2, 0.6), (frame_end, 1.2)):
        pose.rotation_euler = (angle * 0.3, 0.0, angle)
        pose.keyframe_insert("rotation_euler", frame=frame)
        rig.rotation_euler = (0.0, 0.0, 0.2 * angle)
        rig.keyframe_insert("rotation_euler", frame=frame)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = frame_start, frame_end
    scene.frame_set(frame_start)
    return obj


def shape_key_grid(n: int = 6, frame_start: int = 1, frame_end: int = 4, name: str = "Waved") -> bpy.types.Object:
    """A textured grid with a "Wave" shape key animated 0 -> 1 and a Copy Location constraint to an empty
    that moves over the frames."""
    obj = textured_grid(name, n)
    obj.shape_key_add(name="Basis")
    wave = obj.shape_key_add(name="Wave")
    co = np.empty(len(wave.data) * 3, np.float32)
    wave.data.foreach_get("co", co)
    co = co.reshape(-1, 3)
    co[:, 2] += 0.4 * np.sin(3 * co[:, 0]) * np.cos(4 * co[:, 1])
    wave.data.foreach_set("co", co.ravel())
    for frame, value in ((frame_start, 0.0), (frame_end, 1.0)):
        wave.value = value
        wave.keyframe_insert("value", frame=frame)
    empty = bpy.data.objects.new(f"{name}_mover", None)
    bpy.context.scene.collection.objects.link(empty)
    for frame, loc in ((frame_start, (0.0, 0.0, 0.0)), (frame_end, (0.5, 1.0, -0.25))):
        empty.location = loc
        empty.keyframe_insert("location", frame=frame)
    constraint = obj.constraints.new("COPY_LOCATION")
    constraint.target = empty
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = frame_start, frame_end
    scene.frame_set(frame_start)
    return obj


def turning_cube(frame_start: int = 1, frame_end: int = 4, name: str = "Turning") -> bpy.types.Object:
    """The default cube under a non-uniform scale, squashed by an animated shape key and turning half a turn
    and more about a slanted axis: its triangles' frames take every quaternion branch, exact half turns
    included at the first frame (axis-aligned faces whose tangent points along -x or -y)."""
    from scenes import cube

    obj = cube(name, location=(0.2, -0.1, 0.3), rotation=(0.0, 0.0, 0.0), scale=(1.0, 1.5, 0.75))
    obj.shape_key_add(name="Basis")
    key = obj.shape_key_add(name="Squash")
    co = np.empty(len(key.data) * 3, np.float32)
    key.data.foreach_get("co", co)
    key.data.foreach_set("co", (co.reshape(-1, 3) * [1.3, 1.0, 0.6]).ravel())
    for frame, value, angles in ((frame_start, 0.0, (0.0, 0.0, 0.0)), (frame_end, 1.0, (2.1, 0.7, 3.3))):
        key.value = value
        key.keyframe_insert("value", frame=frame)
        obj.rotation_euler = angles
        obj.keyframe_insert("rotation_euler", frame=frame)
    scene = bpy.context.scene
    scene.frame_start, scene.frame_end = frame_start, frame_end
    scene.frame_set(frame_start)
    return obj


def evaluated_world(obj: bpy.types.Object) -> np.ndarray:
    """[V, 3] float64 world positions of the evaluated mesh at the current frame, the slow, obvious way."""
    ev = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
    mesh = ev.to_mesh()
    mw = ev.matrix_world.copy()
    out = np.array([list(mw @ v.co) for v in mesh.vertices], dtype=np.float64)
    ev.to_mesh_clear()
    return out
