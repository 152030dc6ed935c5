"""The fidelity benchmark's renderer: real Blender (the bpy wheel, in its own environment), launched by
bench/fidelity.py as a subprocess:

    python bench/fidelity_blender.py JOBS.json

JOBS.json: {"samples": 16, "jobs": [{"glb": PATH, "out": DIR, "lighting": null | {...}, "frames": [...]}]}
where frames are nerfstudio transforms.json frames (file_path = the PNG's name under `out`, fl_x fl_y cx cy
w h, transform_matrix = the camera's matrix_world). Each GLB goes in through Blender's glTF importer, as an
artist's would; every material is replaced by an emission of its base-colour image (sRGB), so a render
shows the texture unlit, with the Standard view transform (no tone mapping) and no dithering: the same
texel gives the same pixel whichever asset it belongs to. With `lighting` ({"direction", "ambient",
"diffuse", "tint"}), the emission is the texture times tint x (ambient + diffuse x max(0, N.L)): a
Lambertian photo under one tinted directional light plus ambient, without sampling noise.
Cycles on the CPU, `samples` per pixel (antialiasing), transparent film, 8-bit RGBA PNG (straight alpha).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import bpy

import addon_utils  # noqa: E402  (importable once bpy is)


def setup_scene(samples: int) -> bpy.types.Scene:
    bpy.ops.wm.read_factory_settings(use_empty=True)
    addon_utils.enable("io_scene_gltf2", default_set=True)
    scene = bpy.context.scene
    scene.render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_adaptive_sampling = False
    scene.cycles.use_denoising = False
    scene.cycles.max_bounces = 0
    scene.cycles.seed = 0
    scene.render.film_transparent = True
    scene.render.dither_intensity = 0.0
    scene.render.resolution_percentage = 100
    scene.render.image_settings.file_format = "PNG"
    scene.render.image_settings.color_mode = "RGBA"
    scene.render.image_settings.color_depth = "8"
    scene.display_settings.display_device = "sRGB"
    scene.view_settings.view_transform = "Standard"
    scene.view_settings.look = "None"
    scene.view_settings.exposure = 0.0
    scene.view_settings.gamma = 1.0
    scene.world = bpy.data.worlds.new("black")
    scene.world.color = (0.0, 0.0, 0.0)
    return scene


def base_colour_image(material: bpy.types.Material) -> bpy.types.Image:
    """The image that feeds the material's Base Color (through any nodes in between)."""
    tree = material.node_tree
    bsdf = next((n for n in tree.nodes if n.type == "BSDF_PRINCIPLED"), None)
    if bsdf is not None:
        stack = [link.from_node for link in bsdf.inputs["Base Color"].links]
        while stack:
            node = stack.pop()
            if node.type == "TEX_IMAGE" and node.image is not None:
                return node.image
            stack += [link.from_node for inp in node.inputs for link in inp.links]
    images = [n.image for n in tree.nodes if n.type == "TEX_IMAGE" and n.image is not None]
    if len(images) != 1:
        raise RuntimeError(f"material {material.name!r}: no base-colour image found ({len(images)} image nodes)")
    return images[0]


def unlit_material(material: bpy.types.Material, lighting: dict | None) -> None:
    image = base_colour_image(material)
    image.colorspace_settings.name = "sRGB"
    tree = material.node_tree
    tree.nodes.clear()
    tex = tree.nodes.new("ShaderNodeTexImage")
    tex.image, tex.interpolation, tex.extension = image, "Linear", "EXTEND"
    uv = tree.nodes.new("ShaderNodeUVMap")
    tree.links.new(uv.outputs["UV"], tex.inputs["Vector"])
    emit = tree.nodes.new("ShaderNodeEmission")
    emit.inputs["Strength"].default_value = 1.0
    out = tree.nodes.new("ShaderNodeOutputMaterial")
    tree.links.new(emit.outputs["Emission"], out.inputs["Surface"])
    if lighting is None:
        tree.links.new(tex.outputs["Color"], emit.inputs["Color"])
        return
    geo = tree.nodes.new("ShaderNodeNewGeometry")
    dot = tree.nodes.new("ShaderNodeVectorMath")
    dot.operation = "DOT_PRODUCT"
    dot.inputs[1].default_value = lighting["direction"]
    tree.links.new(geo.outputs["Normal"], dot.inputs[0])
    lam = tree.nodes.new("ShaderNodeMath")
    lam.operation, lam.use_clamp = "MULTIPLY_ADD", False  # max(0, N.L) * diffuse + ambient
    clamp = tree.nodes.new("ShaderNodeMath")
    clamp.operation = "MAXIMUM"
    clamp.inputs[1].default_value = 0.0
    tree.links.new(dot.outputs["Value"], clamp.inputs[0])
    tree.links.new(clamp.outputs["Value"], lam.inputs[0])
    lam.inputs[1].default_value = lighting["diffuse"]
    lam.inputs[2].default_value = lighting["ambient"]
    tint = tree.nodes.new("ShaderNodeMix")
    tint.data_type, tint.blend_type = "RGBA", "MULTIPLY"
    tint.inputs["Factor"].default_value = 1.0
    tree.links.new(tex.outputs["Color"], tint.inputs["A"])
    tint.inputs["B"].default_value = (*lighting["tint"], 1.0)
    shade = tree.nodes.new("ShaderNodeVectorMath")
    shade.operation = "SCALE"
    tree.links.new(tint.outputs["Result"], shade.inputs[0])
    tree.links.new(lam.outputs["Value"], shade.inputs["Scale"])
    tree.links.new(shade.outputs["Vector"], emit.inputs["Color"])


def set_camera(scene, cam_obj, frame: dict) -> None:
    """A Blender camera rendering the nerfstudio frame exactly: matrix_world = transform_matrix, horizontal
    sensor fit, lens from fl_x, shifts from cx, cy (pixel edges), pixel aspect from fl_x / fl_y."""
    from mathutils import Matrix

    w, h = int(frame["w"]), int(frame["h"])
    fx, fy = float(frame["fl_x"]), float(frame["fl_y"])
    cam = cam_obj.data
    cam.sensor_fit, cam.sensor_width = "HORIZONTAL", 36.0
    cam.lens = fx * cam.sensor_width / w
    ycor = fx / fy
    cam.shift_x = (w / 2.0 - float(frame["cx"])) / w
    cam.shift_y = (float(frame["cy"]) - h / 2.0) * ycor / w
    cam.clip_start, cam.clip_end = 0.01, 1000.0
    scene.render.resolution_x, scene.render.resolution_y = w, h
    scene.render.pixel_aspect_x, scene.render.pixel_aspect_y = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    cam_obj.matrix_world = Matrix(frame["transform_matrix"])


def run_job(job: dict, samples: int) -> int:
    scene = setup_scene(samples)
    bpy.ops.import_scene.gltf(filepath=str(job["glb"]))
    meshes = [o for o in scene.objects if o.type == "MESH"]
    if not meshes:
        raise RuntimeError(f"{job['glb']}: the importer made no mesh object")
    for mat in {m for o in meshes for m in o.data.materials if m is not None}:
        unlit_material(mat, job.get("lighting"))
    cam_obj = bpy.data.objects.new("eval_camera", bpy.data.cameras.new("eval_camera"))
    scene.collection.objects.link(cam_obj)
    scene.camera = cam_obj
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    for frame in job["frames"]:
        set_camera(scene, cam_obj, frame)
        scene.render.filepath = str(out / frame["file_path"])
        bpy.ops.render.render(write_still=True)
    return len(job["frames"])


def main() -> int:
    spec = json.loads(Path(sys.argv[-1]).read_text())
    t0 = time.monotonic()
    n = sum(run_job(job, int(spec.get("samples", 16))) for job in spec["jobs"])
    print(f"fidelity_blender: {n} renders from {len(spec['jobs'])} GLBs in {time.monotonic() - t0:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
