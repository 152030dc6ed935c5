"""Textured GLB (glTF 2.0 binary) through trimesh, converted between Blender's Z-up and glTF's Y-up.

The axes follow Blender's glTF exporter and importer (DESIGN.md section 4) so a result lands on its
input: glTF (x, y, z) = Blender (x, z, -y) on write, Blender (x, y, z) = glTF (x, -z, y) on read; the
same for normals. UVs: glTF puts (0, 0) at the image's top-left, Blender at its bottom-left, so
v_gltf = 1 - v_blender (trimesh's glTF code does this flip in both directions; we hand it Blender UVs).
glTF stores attributes per vertex, so vertices are split where a corner's UV differs (UV seams); the
normals written are the smooth normals of the unsplit mesh, so seams do not show in shading.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ...protocol.assets import Mesh
from ..stages.views.meshes import as_mesh

_TO_GLTF = np.array([[1, 0, 0], [0, 0, 1], [0, -1, 0]], dtype=np.float64)
"""glTF = _TO_GLTF @ Blender: (x, y, z) -> (x, z, -y)."""


def blender_to_gltf(points: np.ndarray) -> np.ndarray:
    """[..., 3] Blender (Z up) -> glTF (Y up): (x, y, z) -> (x, z, -y)."""
    p = np.asarray(points)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], axis=-1)


def gltf_to_blender(points: np.ndarray) -> np.ndarray:
    """[..., 3] glTF (Y up) -> Blender (Z up): (x, y, z) -> (x, -z, y)."""
    p = np.asarray(points)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], axis=-1)


def _texture_uint8(texture: np.ndarray) -> np.ndarray:
    t = np.asarray(texture)
    if t.ndim != 3 or t.shape[2] not in (3, 4):
        raise ValueError(f"texture must have shape [Ht, Wt, 3|4], got {t.shape}")
    if t.dtype != np.uint8:
        t = np.round(np.clip(t.astype(np.float64), 0, 1) * 255).astype(np.uint8)
    if t.shape[2] == 3:
        t = np.concatenate([t, np.full(t.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return t


def write_glb(mesh: Mesh, texture: np.ndarray | None = None, path: str | Path | None = None) -> bytes:
    """Encode `mesh` (Blender frame, per-corner UVs) with `texture` (default: the mesh's) as GLB bytes.

    texture: [Ht, Wt, 3|4] uint8 or float in [0, 1], rows top-down, embedded as PNG base colour.
    Writes the bytes to `path` too when given.
    """
    import trimesh
    from PIL import Image

    mesh = as_mesh(mesh)
    verts = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    smooth = np.asarray(trimesh.Trimesh(verts, faces, process=False).vertex_normals, dtype=np.float64)
    texture = mesh.texture if texture is None else texture

    if mesh.uvs is not None:
        uvs = np.asarray(mesh.uvs, dtype=np.float64).reshape(-1, 2)
        keys = np.concatenate([faces.reshape(-1, 1).astype(np.float64), uvs], axis=1)
        unique, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        src = faces.reshape(-1)[first]  # original vertex of each split vertex
        out_faces = inverse.reshape(-1, 3)
        visual_uv = uvs[first]
    else:
        src, out_faces, visual_uv = np.arange(len(verts)), faces, None

    visual = None
    if visual_uv is not None and texture is not None:
        material = trimesh.visual.material.PBRMaterial(
            baseColorTexture=Image.fromarray(_texture_uint8(texture), mode="RGBA"),
            metallicFactor=0.0,
            roughnessFactor=1.0,
            doubleSided=False,
        )
        visual = trimesh.visual.TextureVisuals(uv=visual_uv, material=material)
    elif visual_uv is not None:
        visual = trimesh.visual.TextureVisuals(uv=visual_uv)
    tm = trimesh.Trimesh(
        vertices=blender_to_gltf(verts[src]),
        faces=out_faces,
        vertex_normals=blender_to_gltf(smooth[src]),
        visual=visual,
        process=False,
        validate=False,
    )
    data = trimesh.exchange.gltf.export_glb(trimesh.Scene(tm), include_normals=True)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def read_glb(source: bytes | str | Path) -> Mesh:
    """Decode a GLB (ours or any single-mesh file) back to the Blender frame with per-corner UVs.

    Scene-graph transforms are applied; several meshes are concatenated, sharing one base-colour image (several
    different images are an `InvalidAsset` naming two of them: one texture can hold only one of them).
    """
    import trimesh

    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    scene = trimesh.load(io.BytesIO(data), file_type="glb", process=False, force="scene")
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, name = scene.graph[node]
        geom = scene.geometry[name]
        if not isinstance(geom, trimesh.Trimesh):
            continue
        parts.append((geom, transform))
    if not parts:
        raise ValueError("read_glb: the file holds no triangle mesh")
    verts, faces, uvs, texture, offset = [], [], [], None, 0
    for geom, transform in parts:
        v = np.asarray(geom.vertices, dtype=np.float64) @ transform[:3, :3].T + transform[:3, 3]
        f = np.asarray(geom.faces, dtype=np.int64)
        verts.append(gltf_to_blender(v))
        faces.append(f + offset)
        offset += len(v)
        uv = getattr(geom.visual, "uv", None)
        uvs.append(None if uv is None else np.asarray(uv, dtype=np.float64)[f])
        material = getattr(geom.visual, "material", None)
        image = getattr(material, "baseColorTexture", None)
        if image is not None:
            pixels = np.asarray(image.convert("RGBA"), dtype=np.uint8)
            if texture is None:
                texture, first = pixels, getattr(material, "name", None) or name
            elif pixels.shape != texture.shape or not np.array_equal(pixels, texture):
                from ...protocol.errors import InvalidAsset

                raise InvalidAsset(
                    f"mesh.texture: the file has more than one base-colour image (material {first!r} "
                    f"{texture.shape[1]}x{texture.shape[0]} and material {getattr(material, 'name', None) or name!r} "
                    f"{pixels.shape[1]}x{pixels.shape[0]}); a refinement keeps one texture on one UV layout: bake the "
                    "materials into one image (Blender: one material, Bake to an image on a packed UV map) or refine "
                    "each part on its own", field="mesh.texture")
    all_uvs = None if any(u is None for u in uvs) else np.concatenate(uvs).astype(np.float32)
    return Mesh(
        vertices=np.concatenate(verts).astype(np.float32),
        faces=np.concatenate(faces).astype(np.int32),
        uvs=all_uvs,
        texture=texture,
    )
