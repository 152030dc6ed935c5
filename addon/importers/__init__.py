"""protocol -> Blender: job results and files become objects (textured meshes, splat clouds)."""

from __future__ import annotations

from pathlib import Path

import bpy

from .anim import PC2_ARTIFACT, binding_triangles, cached_mesh, glb_image, refined_copy
from .bound import bind_splats, is_bound
from .gltf import UnsupportedGltf, read_glb
from .mesh import hide_source, import_textured_mesh
from .ply import is_3dgs, read_vertex_table
from .sequence import import_sequence, sequence_files
from .splats import DEFAULT_DISPLAY_CAP, import_splat_file
from .video import VIDEO_ARTIFACT, import_video

MESH_ARTIFACT = "mesh.glb"
SPLATS_ARTIFACT = "splats.ply"
IMPORTABLE = (MESH_ARTIFACT, SPLATS_ARTIFACT, VIDEO_ARTIFACT, PC2_ARTIFACT)
"""Artifacts a finished job is imported for (the rest stay files)."""


def import_glb_arrays(path: Path, source: bpy.types.Object | None, name: str) -> bpy.types.Object:
    """A GLB result through the numpy reader and foreach_set; its embedded image is packed into the .blend."""
    glb = read_glb(path)
    image = None
    if glb.image_bytes is not None:
        suffix = ".jpg" if glb.image_mime == "image/jpeg" else ".png"
        image_path = path.with_name(f"{path.stem}_basecolor{suffix}")
        image_path.write_bytes(glb.image_bytes)
        image = bpy.data.images.load(str(image_path))
        image.name = f"{source.name}_refined_basecolor" if source is not None else f"{name}_basecolor"
        image.pack()
    return import_textured_mesh(name, glb.vertices, glb.faces, glb.uvs, image, source)


def import_gltf_file(path: Path, source: bpy.types.Object | None = None) -> list[bpy.types.Object]:
    """Blender's own glTF importer (it converts glTF's Y up to Z up); the new objects."""
    before = set(bpy.data.objects)
    result = bpy.ops.import_scene.gltf(filepath=str(path))
    if "FINISHED" not in result:
        raise RuntimeError(f"Blender's glTF importer did not import {path} ({result})")
    objects = [o for o in bpy.data.objects if o not in before]
    if source is not None:
        hide_source(source)
    return objects


def import_result(paths: list[Path], source: bpy.types.Object | None, display_cap: int = DEFAULT_DISPLAY_CAP
                  ) -> list[bpy.types.Object]:
    """Import the artifacts of a finished job that are geometry; other artifacts stay files.

    4D (an `animation.pc2` is among them): the source object copied with the refined material, or without a
    source the refined mesh on a Mesh Cache modifier; bound splats follow that mesh through Geometry Nodes;
    an unbound `frame_NNNN.ply` sequence plays through the frame-change handler."""
    by_name = {Path(p).name: Path(p) for p in paths}
    base = source.name if source is not None else "likeness3d"
    objects, carrier = [], None
    if PC2_ARTIFACT in by_name and MESH_ARTIFACT in by_name:
        carrier = import_animated_mesh(by_name[MESH_ARTIFACT], by_name[PC2_ARTIFACT], source, base)
        objects.append(carrier)
    elif MESH_ARTIFACT in by_name:
        try:
            carrier = import_glb_arrays(by_name[MESH_ARTIFACT], source, base)
            objects.append(carrier)
        except UnsupportedGltf:
            objects += import_gltf_file(by_name[MESH_ARTIFACT], source)
    sequence = sequence_files(paths)
    if SPLATS_ARTIFACT in by_name:
        _, names = read_vertex_table(by_name[SPLATS_ARTIFACT])
        if is_bound(names) and carrier is not None:
            splats = import_splat_file(by_name[SPLATS_ARTIFACT], f"{base}_splats", display_cap=display_cap)
            bind_splats(splats, carrier, binding_triangles(carrier, bpy.context.evaluated_depsgraph_get()))
            objects.append(splats)
        elif sequence:
            objects.append(import_sequence(paths, f"{base}_splats", display_cap))
        else:
            objects.append(import_splat_file(by_name[SPLATS_ARTIFACT], f"{base}_splats", display_cap=display_cap))
    elif sequence:
        objects.append(import_sequence(paths, f"{base}_splats", display_cap))
    if VIDEO_ARTIFACT in by_name:
        objects += import_video(paths, source, base)
    return objects


def import_animated_mesh(glb: Path, pc2: Path, source: bpy.types.Object | None, base: str) -> bpy.types.Object:
    """The artist's object copied with the refined image (their rig drives it), when the job came from a scene
    object with a UV map; else the refined mesh with a Mesh Cache modifier on `pc2`."""
    if source is not None and source.type == "MESH" and source.data.uv_layers:
        image = glb_image(glb, f"{source.name}_refined_basecolor")
        if image is not None:
            return refined_copy(source, image)
    obj = cached_mesh(glb, pc2, f"{base}_refined" if source is not None else base)
    if source is not None:
        obj["likeness3d_source"] = source.name
        obj["likeness3d_note"] = (f"{source.name!r} has no UV map (the texture was refined on an automatic "
                                  "unwrap), so the result is a new mesh played by a Mesh Cache, not a copy of it")
        hide_source(source)
    return obj


def import_file(path: str | Path, display_cap: int = DEFAULT_DISPLAY_CAP) -> list[bpy.types.Object]:
    """"Import from file": a GLB/glTF through Blender's glTF importer; a 3DGS PLY as splats; another PLY
    through Blender's PLY importer."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".glb", ".gltf"):
        return import_gltf_file(path)
    if suffix == ".ply":
        _, names = read_vertex_table(path)
        if is_3dgs(names):
            return [import_splat_file(path, display_cap=display_cap)]
        before = set(bpy.data.objects)
        bpy.ops.wm.ply_import(filepath=str(path))
        return [o for o in bpy.data.objects if o not in before]
    raise ValueError(f"cannot import {path.name!r}: expected a .glb, .gltf or .ply file")
