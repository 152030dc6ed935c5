"""Read a mesh file into the protocol's Mesh in the Blender world frame, as Blender's own importers do by
default: glTF/GLB and OBJ are Y up and become Blender (x, -z, y); PLY is taken as Z up, unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...protocol.assets import Mesh
from ...protocol.errors import InvalidAsset


def _y_up_to_blender(v: np.ndarray) -> np.ndarray:
    return np.stack([v[:, 0], -v[:, 2], v[:, 1]], axis=1)


SUFFIXES = (".glb", ".gltf", ".obj", ".ply")


def check_mesh_path(path: str | Path) -> Path:
    """The mesh file's path, or `invalid_asset` saying what is wrong with it (no mesh is read)."""
    path = Path(path)
    if path.is_dir():
        raise InvalidAsset(f"mesh {path} is a folder, not a mesh file: name the .glb, .gltf, .obj or .ply file itself",
                           field="mesh")
    if not path.is_file():
        raise InvalidAsset(f"mesh file {path} does not exist: check the path", field="mesh")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise InvalidAsset(f"mesh file {path} has suffix {suffix!r}; expected .glb, .gltf, .obj or .ply (export the "
                           "mesh as glTF binary from Blender)", field="mesh")
    if path.stat().st_size == 0:
        raise InvalidAsset(f"mesh file {path} is empty (0 bytes): export the mesh again", field="mesh")
    return path


def read_mesh(path: str | Path, frames: tuple[int, int, int] | None = None, fps: float | None = None) -> Mesh:
    """GLB/glTF, OBJ or PLY -> Mesh (per-corner UVs, base-colour texture when the file has them). A glTF with
    animations comes back animated: `frames` (START, END, STEP) evaluated at `fps` (default 24, Blender's)."""
    path = check_mesh_path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".glb", ".gltf"):
            from .gltf_anim import has_animation, read_animated_gltf
            from .gltf_file import GltfFile

            if has_animation(GltfFile(path)):
                return read_animated_gltf(path, frames, fps or 24.0)
            from ..export.glb import read_glb

            m = read_glb(path) if suffix == ".glb" else _read_trimesh(path, y_up=True)
            return Mesh(np.asarray(m.vertices, np.float32), np.asarray(m.faces, np.int32),
                        None if m.uvs is None else np.asarray(m.uvs, np.float32), m.texture)
        return _read_trimesh(path, y_up=suffix == ".obj")
    except InvalidAsset as exc:
        if str(path) in exc.message:
            raise
        raise InvalidAsset(f"mesh file {path}: {exc.message}: repair the mesh (Blender: Mesh > Clean Up) and export it "
                           "again", field=exc.field) from None
    except Exception as exc:  # trimesh and PIL raise many types for broken files
        if "no triangle mesh" in str(exc):
            raise InvalidAsset(f"mesh file {path} holds no triangle mesh: export the object as a mesh (with faces)",
                               field="mesh") from None
        raise InvalidAsset(f"cannot read mesh {path} ({type(exc).__name__}: {str(exc)[:200]}): the file is damaged or "
                           "not in its suffix's format; export it again", field="mesh") from None


def _read_trimesh(path: Path, y_up: bool) -> Mesh:
    import trimesh

    tm = trimesh.load(path, force="mesh", process=False)
    if not isinstance(tm, trimesh.Trimesh) or len(tm.faces) == 0:
        raise InvalidAsset(f"mesh file {path} holds no triangle mesh: export the object as a mesh (with faces)", field="mesh")
    v = np.asarray(tm.vertices, np.float64)
    f = np.asarray(tm.faces, np.int32)
    if y_up:
        v = _y_up_to_blender(v)
    uv = getattr(tm.visual, "uv", None)
    uvs = None if uv is None or len(uv) != len(v) else np.asarray(uv, np.float32)[f]
    texture = None
    image = getattr(getattr(tm.visual, "material", None), "image", None)
    if image is None:
        image = getattr(getattr(tm.visual, "material", None), "baseColorTexture", None)
    if image is not None:
        texture = np.asarray(image.convert("RGBA"), np.uint8)
    return Mesh(v.astype(np.float32), f, uvs, texture)
