"""Small scenes for the add-on tests, built with real bpy data."""

from __future__ import annotations

import math

import bpy
import numpy as np

from likeness3d.addon.materials import new_node_material


def textured_material(name: str, pixels: np.ndarray, uv_map: str | None = None) -> bpy.types.Material:
    """A Principled material whose Base Color comes (through a Mix node) from an image of `pixels`
    ([H,W,4] float in [0, 1], rows top-down)."""
    height, width = pixels.shape[:2]
    image = bpy.data.images.new(f"{name}_tex", width, height, alpha=True)
    image.pixels.foreach_set(pixels[::-1].astype(np.float32).ravel())
    material = new_node_material(name)
    nodes, links = material.node_tree.nodes, material.node_tree.links
    bsdf = nodes["Principled BSDF"]
    tex = nodes.new("ShaderNodeTexImage")
    tex.image = image
    gamma = nodes.new("ShaderNodeGamma")  # something in between: the lookup must walk upstream
    links.new(tex.outputs["Color"], gamma.inputs["Color"])
    links.new(gamma.outputs["Color"], bsdf.inputs["Base Color"])
    if uv_map:
        uv = nodes.new("ShaderNodeUVMap")
        uv.uv_map = uv_map
        links.new(uv.outputs["UV"], tex.inputs["Vector"])
    return material


def cube(name: str = "Cube", location=(1.0, 2.0, 0.5), rotation=(0.3, 0.2, 1.0), scale=(1.0, 2.0, 0.5)):
    """The default cube (with its UVs) under a transform."""
    mesh = bpy.data.meshes.new(name)
    import bmesh

    bm = bmesh.new()
    bm.loops.layers.uv.new("UVMap")
    bmesh.ops.create_cube(bm, size=2.0, calc_uvs=True)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    obj.location, obj.rotation_euler, obj.scale = location, rotation, scale
    bpy.context.view_layer.update()
    return obj


def mesh_without_uvs(name: str = "Blob") -> bpy.types.Object:
    """An icosphere-like closed mesh with no UV layer."""
    import bmesh

    mesh = bpy.data.meshes.new(name)
    bm = bmesh.new()
    bmesh.ops.create_icosphere(bm, subdivisions=2, radius=1.0, calc_uvs=False)
    bm.to_mesh(mesh)
    bm.free()
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def camera(name: str = "Camera", location=(0.0, -6.0, 1.0), target=(0.0, 0.0, 0.0), lens: float = 50.0):
    data = bpy.data.cameras.new(name)
    data.lens = lens
    obj = bpy.data.objects.new(name, data)
    bpy.context.scene.collection.objects.link(obj)
    obj.location = location
    direction = np.array(target, dtype=float) - np.array(location, dtype=float)
    # a camera looks down -Z; point it at the target with +Y up
    from mathutils import Vector

    obj.rotation_euler = Vector(direction.tolist()).to_track_quat("-Z", "Y").to_euler()
    bpy.context.view_layer.update()
    return obj


def photo(name: str, width: int, height: int, seed: int = 0) -> bpy.types.Image:
    """An RGBA image with random pixels and an opaque disc in the middle."""
    rng = np.random.default_rng(seed)
    px = rng.uniform(size=(height, width, 4)).astype(np.float32)
    yy, xx = np.mgrid[:height, :width]
    px[..., 3] = ((xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2).astype(np.float32)
    image = bpy.data.images.new(name, width, height, alpha=True)
    image.pixels.foreach_set(px[::-1].ravel())
    image.pack()  # as a loaded photo would be: saved with the .blend
    return image


def subject_scene(n_refs: int = 2) -> bpy.types.Object:
    """A textured cube as the target, with `n_refs` cameras around it holding reference photos."""
    scene = bpy.context.scene
    scene.render.resolution_x, scene.render.resolution_y = 64, 48
    obj = cube(location=(0, 0, 0), rotation=(0, 0, 0), scale=(1, 1, 1))
    pixels = np.random.default_rng(1).uniform(size=(8, 8, 4)).astype(np.float32)
    obj.data.materials.append(textured_material("Skin", pixels))
    props = scene.likeness
    props.target, props.class_word = obj, "box"
    for i in range(n_refs):
        angle = 2 * math.pi * i / max(n_refs, 1)
        cam = camera(f"RefCam{i}", location=(6 * math.sin(angle), -6 * math.cos(angle), 1.5))
        ref = props.references.add()
        ref.image, ref.camera = photo(f"photo{i}", 64, 48, seed=i), cam
    return obj
