"""A textured GLB (as the backend exports `mesh.glb`) -> numpy arrays in Blender's frame (no bpy).

Reads triangle primitives (POSITION, TEXCOORD_0, indices) of every mesh node of the default scene, with
node transforms, and the one base-colour image they share. Converts exactly as Blender's glTF importer
does: Blender (x, y, z) = glTF (x, -z, y); UV v_blender = 1 - v_gltf (glTF's origin is the top-left).
Anything outside that subset raises UnsupportedGltf, and the caller hands the file to Blender's importer.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
# glTF (Y up) -> Blender (Z up): (x, y, z) -> (x, -z, y)
GLTF_TO_BLENDER = np.array([[1.0, 0, 0, 0], [0, 0, -1.0, 0], [0, 1.0, 0, 0], [0, 0, 0, 1.0]])


class UnsupportedGltf(ValueError):
    """The file is valid glTF but outside what this reader handles; the message says what."""


@dataclass
class GltfMesh:
    vertices: np.ndarray  # [V,3] float32 Blender world frame
    faces: np.ndarray  # [F,3] int32
    uvs: np.ndarray | None  # [F,3,2] float32 per corner, Blender UV convention
    image_bytes: bytes | None  # the encoded base-colour image (PNG or JPEG)
    image_mime: str | None


def read_glb(path: str | Path) -> GltfMesh:
    path = Path(path)
    data = path.read_bytes()
    magic, version, length = struct.unpack_from("<4sII", data, 0)
    if magic != b"glTF" or version != 2:
        raise UnsupportedGltf(f"{path}: not a binary glTF 2.0 file (magic {magic!r}, version {version})")
    doc, binary, offset = None, b"", 12
    while offset < min(length, len(data)):
        chunk_len, chunk_type = struct.unpack_from("<II", data, offset)
        chunk = data[offset + 8 : offset + 8 + chunk_len]
        if chunk_type == 0x4E4F534A:  # JSON
            doc = json.loads(chunk)
        elif chunk_type == 0x004E4942:  # BIN
            binary = chunk
        offset += 8 + chunk_len
    if doc is None:
        raise UnsupportedGltf(f"{path}: no JSON chunk")
    return _read_doc(path, doc, binary)


def _accessor(doc: dict, binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    if "sparse" in acc or "bufferView" not in acc:
        raise UnsupportedGltf(f"accessor {index} is sparse or has no bufferView")
    view = doc["bufferViews"][acc["bufferView"]]
    if view.get("buffer", 0) != 0:
        raise UnsupportedGltf(f"accessor {index} reads an external buffer")
    dtype = np.dtype(_COMPONENTS[acc["componentType"]])
    width = _WIDTH[acc["type"]]
    start = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = view.get("byteStride", dtype.itemsize * width)
    count = acc["count"]
    if stride == dtype.itemsize * width:  # tightly packed: read it in place
        out = np.frombuffer(binary, dtype=dtype, count=count * width, offset=start).reshape(count, width)
    else:
        raw = np.frombuffer(binary, dtype=np.uint8, count=(count - 1) * stride + dtype.itemsize * width, offset=start)
        rows = np.lib.stride_tricks.as_strided(raw, shape=(count, dtype.itemsize * width), strides=(stride, 1))
        out = np.ascontiguousarray(rows).view(dtype).reshape(count, width)
    if acc.get("normalized") and dtype.kind in "iu":
        out = np.maximum(out.astype(np.float32) / np.iinfo(dtype).max, -1.0)
    return out


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major in the file
    t = np.eye(4)
    t[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    r = np.eye(4)
    r[:3, :3] = [
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ]
    s = np.diag([*node.get("scale", (1.0, 1.0, 1.0)), 1.0])
    return t @ r @ s


def _mesh_nodes(doc: dict):
    scenes = doc.get("scenes") or [{"nodes": list(range(len(doc.get("nodes", []))))}]
    stack = [(i, np.eye(4)) for i in scenes[doc.get("scene", 0)].get("nodes", [])]
    while stack:
        index, parent = stack.pop()
        node = doc["nodes"][index]
        world = parent @ _node_matrix(node)
        if "mesh" in node:
            yield node["mesh"], world
        stack += [(c, world) for c in node.get("children", [])]


def _read_doc(path: Path, doc: dict, binary: bytes) -> GltfMesh:
    vertices, faces, uvs, images = [], [], [], set()
    base = 0
    for mesh_index, world in _mesh_nodes(doc):
        to_blender = GLTF_TO_BLENDER @ world
        for prim in doc["meshes"][mesh_index]["primitives"]:
            if prim.get("mode", 4) != 4:
                raise UnsupportedGltf(f"{path}: primitive mode {prim.get('mode')} is not triangles")
            pos = _accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
            idx = (_accessor(doc, binary, prim["indices"]).reshape(-1, 3).astype(np.int64)
                   if "indices" in prim else np.arange(len(pos)).reshape(-1, 3))
            if np.linalg.det(world[:3, :3]) < 0:
                idx = idx[:, [0, 2, 1]]
            vertices.append(pos @ to_blender[:3, :3].T + to_blender[:3, 3])
            faces.append(idx + base)
            if "TEXCOORD_0" in prim["attributes"]:
                uv = _accessor(doc, binary, prim["attributes"]["TEXCOORD_0"]).astype(np.float32)
                uv[:, 1] = 1.0 - uv[:, 1]
                uvs.append(uv[idx])
            else:
                uvs.append(None)
            images.add(_base_color_image(doc, prim))
            base += len(pos)
    if not faces:
        raise UnsupportedGltf(f"{path}: no triangle meshes in the default scene")
    if len(images) > 1:
        raise UnsupportedGltf(f"{path}: primitives use {len(images)} different base-colour images")
    image = images.pop()
    image_bytes = mime = None
    if image is not None:
        img = doc["images"][image]
        if "bufferView" not in img:
            raise UnsupportedGltf(f"{path}: image {image} is not embedded")
        view = doc["bufferViews"][img["bufferView"]]
        start = view.get("byteOffset", 0)
        image_bytes, mime = bytes(binary[start : start + view["byteLength"]]), img.get("mimeType", "image/png")
    all_uvs = None if any(u is None for u in uvs) else np.concatenate(uvs).astype(np.float32)
    return GltfMesh(
        np.concatenate(vertices).astype(np.float32),
        np.concatenate(faces).astype(np.int32),
        all_uvs,
        image_bytes,
        mime,
    )


def _base_color_image(doc: dict, prim: dict) -> int | None:
    if "material" not in prim:
        return None
    pbr = doc["materials"][prim["material"]].get("pbrMetallicRoughness", {})
    if "baseColorTexture" not in pbr:
        return None
    return doc["textures"][pbr["baseColorTexture"]["index"]].get("source")
