"""protocol -> Blender: job results and files become objects (textured meshes, splat clouds)."""

from __future__ import annotations

from pathlib import Path

import bpy

from .gltf import UnsupportedGltf, read_glb
from .mesh import hide_source, import_textured_mesh
from .ply import is_3dgs, read_vertex_table
from .splats import DEFAULT_DISPLAY_CAP, import_splat_file
from .video import VIDEO_ARTIFACT, import_video

MESH_ARTIFACT = "mesh.glb"
SPLATS_ARTIFACT = "splats.ply"
IMPORTABLE = (MESH_ARTIFACT, SPLATS_ARTIFACT, VIDEO_ARTIFACT)
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
    """Import the artifacts of a finished job that are geometry; other artifacts stay files."""
    by_name = {Path(p).name: Path(p) for p in paths}
    base = source.name if source is not None else "likeness3d"
    objects = []
    if MESH_ARTIFACT in by_name:
        try:
            objects.append(import_glb_arrays(by_name[MESH_ARTIFACT], source, base))
        except UnsupportedGltf:
            objects += import_gltf_file(by_name[MESH_ARTIFACT], source)
    if SPLATS_ARTIFACT in by_name:
        objects.append(import_splat_file(by_name[SPLATS_ARTIFACT], f"{base}_splats", display_cap=display_cap))
    if VIDEO_ARTIFACT in by_name:
        objects += import_video(paths, source, base)
    return objects


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
