"""Writers for the files the backend produces (3DGS PLY, textured GLB, PNG), in numpy, for tests and bench."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np


def png_bytes(rgba: np.ndarray) -> bytes:
    """[H,W,4] uint8 RGBA rows top-down -> PNG (8-bit RGBA, no filtering)."""
    height, width = rgba.shape[:2]
    raw = np.concatenate([np.zeros((height, 1), np.uint8), rgba.reshape(height, -1)], axis=1).tobytes()

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def random_splats(n: int, sh_degree: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Fields of n random Gaussians, named as a 3DGS PLY names them (plus nx ny nz as INRIA writes)."""
    rng = np.random.default_rng(seed)
    fields = {"x": rng.normal(size=n), "y": rng.normal(size=n), "z": rng.normal(size=n),
              "nx": np.zeros(n), "ny": np.zeros(n), "nz": np.zeros(n)}
    for i in range(3):
        fields[f"f_dc_{i}"] = rng.normal(size=n)
    for i in range(3 * ((sh_degree + 1) ** 2 - 1)):
        fields[f"f_rest_{i}"] = rng.normal(scale=0.1, size=n)
    fields["opacity"] = rng.normal(size=n)
    for i in range(3):
        fields[f"scale_{i}"] = rng.uniform(-6, -3, size=n)
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    for i in range(4):
        fields[f"rot_{i}"] = q[:, i]
    return {k: v.astype(np.float32) for k, v in fields.items()}


def write_ply(path: Path, fields: dict[str, np.ndarray], fmt: str = "binary_little_endian") -> Path:
    """A PLY with one `vertex` element holding `fields` (each [N], their own dtypes)."""
    names = list(fields)
    n = len(fields[names[0]])
    ply_type = {"f4": "float", "f8": "double", "u1": "uchar", "i4": "int", "i2": "short", "u4": "uint"}
    lines = ["ply", f"format {fmt} 1.0", "comment written by the Likeness3D tests", f"element vertex {n}"]
    lines += [f"property {ply_type[fields[k].dtype.str[1:]]} {k}" for k in names]
    lines.append("end_header")
    header = ("\n".join(lines) + "\n").encode("ascii")
    with open(path, "wb") as fh:
        fh.write(header)
        if fmt == "ascii":
            table = np.column_stack([fields[k].astype(np.float64) for k in names])
            np.savetxt(fh, table, fmt="%.9g")
        else:
            order = "<" if fmt == "binary_little_endian" else ">"
            dtype = np.dtype([(k, order + fields[k].dtype.str[1:]) for k in names])
            table = np.empty(n, dtype=dtype)
            for k in names:
                table[k] = fields[k]
            fh.write(table.tobytes())
    return path


def write_glb(path: Path, vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray | None = None,
              png: bytes | None = None, node_translation=(0.0, 0.0, 0.0)) -> Path:
    """A textured GLB as an exporter writes one: Blender-frame vertices [V,3] are converted to glTF's Y up
    ((x, y, z) -> (x, z, -y)), per-vertex UVs [V,2] to glTF's top-left origin (v -> 1 - v)."""
    pos = np.ascontiguousarray(np.column_stack([vertices[:, 0], vertices[:, 2], -vertices[:, 1]]), np.float32)
    idx = np.ascontiguousarray(faces, np.uint32).ravel()
    blobs, views, accessors = [], [], []

    def add(data: bytes, target: int | None = None) -> int:
        offset = sum(len(b) for b in blobs)
        blobs.append(data + b"\0" * (-len(data) % 4))
        view = {"buffer": 0, "byteOffset": offset, "byteLength": len(data)}
        if target:
            view["target"] = target
        views.append(view)
        return len(views) - 1

    accessors.append({"bufferView": add(pos.tobytes(), 34962), "componentType": 5126, "count": len(pos),
                      "type": "VEC3", "min": pos.min(0).tolist(), "max": pos.max(0).tolist()})
    accessors.append({"bufferView": add(idx.tobytes(), 34963), "componentType": 5125, "count": len(idx),
                      "type": "SCALAR"})
    prim = {"attributes": {"POSITION": 0}, "indices": 1, "mode": 4}
    doc = {"asset": {"version": "2.0", "generator": "likeness3d tests"}, "scene": 0,
           "scenes": [{"nodes": [0]}], "nodes": [{"mesh": 0, "translation": list(node_translation)}],
           "meshes": [{"primitives": [prim]}], "accessors": accessors, "bufferViews": views}
    if uv is not None:
        tex = np.ascontiguousarray(np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]), np.float32)
        accessors.append({"bufferView": add(tex.tobytes(), 34962), "componentType": 5126, "count": len(tex),
                          "type": "VEC2"})
        prim["attributes"]["TEXCOORD_0"] = 2
    if png is not None:
        doc["images"] = [{"bufferView": add(png), "mimeType": "image/png"}]
        doc["textures"] = [{"source": 0}]
        doc["materials"] = [{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}]
        prim["material"] = 0
    binary = b"".join(blobs)
    doc["buffers"] = [{"byteLength": len(binary)}]
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942) + binary
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body)
    return path


def grid_mesh(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An n x n quad grid split into 2 n^2 triangles: vertices [V,3] (Z up), faces [F,3], per-vertex uv [V,2]."""
    t = np.linspace(0.0, 1.0, n + 1, dtype=np.float32)
    u, v = np.meshgrid(t, t, indexing="xy")
    vertices = np.column_stack([u.ravel() - 0.5, v.ravel() - 0.5, 0.1 * np.sin(6 * u.ravel())]).astype(np.float32)
    i = np.arange(n)
    a = (i[None, :] + (n + 1) * i[:, None]).ravel()
    faces = np.concatenate([np.column_stack([a, a + 1, a + n + 2]), np.column_stack([a, a + n + 2, a + n + 1])])
    return vertices, faces.astype(np.int32), np.column_stack([u.ravel(), v.ravel()]).astype(np.float32)
