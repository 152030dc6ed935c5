"""Small animated glTF files built in code for the tests: a skinned strip (two joints, a rotation and a
translation channel) and a morph-target strip (two targets, weights animated), with any sampler interpolation."""

from __future__ import annotations

import json
import struct

import numpy as np


class _Bin:
    def __init__(self):
        self.data, self.views, self.accessors = bytearray(), [], []

    def add(self, array: np.ndarray, kind: str, component: int = 5126, target: int | None = None, minmax: bool = False) -> int:
        while len(self.data) % 4:
            self.data += b"\0"
        raw = np.ascontiguousarray(array).tobytes()
        view = {"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)}
        if target:
            view["target"] = target
        self.views.append(view)
        self.data += raw
        acc = {"bufferView": len(self.views) - 1, "componentType": component, "count": int(len(array)), "type": kind}
        if minmax:
            acc["min"] = np.asarray(array).min(0).tolist()
            acc["max"] = np.asarray(array).max(0).tolist()
        self.accessors.append(acc)
        return len(self.accessors) - 1


def _strip(rows: int = 6):
    """A vertical strip of quads along +Y (glTF up), 2 vertices a row; UVs per vertex."""
    y = np.linspace(0, 2, rows)
    pos = np.stack([np.repeat([-0.2, 0.2], rows).reshape(2, rows).T.ravel(), np.repeat(y, 2), np.zeros(2 * rows)], 1)
    faces = []
    for r in range(rows - 1):
        a, b, c, d = 2 * r, 2 * r + 1, 2 * r + 3, 2 * r + 2
        faces += [(a, b, c), (a, c, d)]
    uv = np.stack([(pos[:, 0] + 0.2) / 0.4, 1 - pos[:, 1] / 2], 1)
    return pos.astype(np.float32), np.array(faces, np.uint16), uv.astype(np.float32)


def _glb(doc: dict, binary: bytes) -> bytes:
    doc["buffers"] = [{"byteLength": len(binary)}]
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    binary += b"\0" * (-len(binary) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942) + binary
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _material(b: _Bin, doc: dict, size: int = 8) -> int:
    import io

    from PIL import Image

    rng = np.random.default_rng(3)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size, 4), dtype=np.uint8)).save(buf, format="PNG")
    png = buf.getvalue()
    while len(b.data) % 4:
        b.data += b"\0"
    b.views.append({"buffer": 0, "byteOffset": len(b.data), "byteLength": len(png)})
    b.data += png
    doc["images"] = [{"bufferView": len(b.views) - 1, "mimeType": "image/png"}]
    doc["textures"] = [{"source": 0}]
    doc["materials"] = [{"name": "skin", "pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}},
                        {"name": "other", "pbrMetallicRoughness": {"baseColorFactor": [1, 0, 0, 1]}}]
    return 0


def _times(keys: int, duration: float) -> np.ndarray:
    return np.linspace(0, duration, keys).astype(np.float32)


def _cubic(values: np.ndarray, scale: float = 0.5) -> np.ndarray:
    """CUBICSPLINE output: in-tangent, value, out-tangent per key (tangents from neighbours)."""
    tang = np.gradient(values, axis=0) * scale
    return np.stack([tang, values, tang], 1).reshape(-1, values.shape[1]).astype(np.float32)


def skinned_glb(interpolation: str = "LINEAR") -> bytes:
    """A strip skinned to a root joint and a child joint at mid-height; the child rotates about Z and the root moves."""
    pos, faces, uv = _strip()
    b, doc = _Bin(), {"asset": {"version": "2.0"}, "scene": 0}
    mat = _material(b, doc)
    h = pos[:, 1]
    w1 = np.clip((h - 0.6) / 0.8, 0, 1)
    joints = np.tile(np.array([[0, 1, 0, 0]], np.uint8), (len(pos), 1))  # indices into the skin's joint list
    weights = np.stack([1 - w1, w1, np.zeros_like(h), np.zeros_like(h)], 1).astype(np.float32)
    ibm = np.stack([np.eye(4), np.linalg.inv(np.array([[1, 0, 0, 0], [0, 1, 0, 1.0], [0, 0, 1, 0], [0, 0, 0, 1]]))])
    attrs = {"POSITION": b.add(pos, "VEC3", target=34962, minmax=True), "TEXCOORD_0": b.add(uv, "VEC2", target=34962),
             "JOINTS_0": b.add(joints, "VEC4", 5121, 34962), "WEIGHTS_0": b.add(weights, "VEC4", target=34962)}
    prim = {"attributes": attrs, "indices": b.add(faces.reshape(-1, 1), "SCALAR", 5123, 34963), "material": mat}
    ibm_acc = b.add(ibm.transpose(0, 2, 1).reshape(2, 16).astype(np.float32), "MAT4")
    keys = 5
    t = _times(keys, 1.0)
    ang = np.radians(np.array([0, 40, 70, 20, -30]))
    rot = np.stack([np.zeros(keys), np.zeros(keys), np.sin(ang / 2), np.cos(ang / 2)], 1).astype(np.float32)
    move = np.stack([np.linspace(0, 0.5, keys), np.zeros(keys), np.sin(np.linspace(0, 3, keys)) * 0.2], 1).astype(np.float32)
    if interpolation == "CUBICSPLINE":
        rot, move = _cubic(rot), _cubic(move)
    samplers = [{"input": b.add(t.reshape(-1, 1), "SCALAR", minmax=True), "output": b.add(rot, "VEC4"), "interpolation": interpolation},
                {"input": b.add(t.reshape(-1, 1), "SCALAR", minmax=True), "output": b.add(move, "VEC3"), "interpolation": interpolation}]
    doc.update({
        "nodes": [{"name": "strip", "mesh": 0, "skin": 0}, {"name": "root", "children": [2], "translation": [0.1, 0, 0]},
                  {"name": "bend", "translation": [0, 1.0, 0]}, {"name": "rig", "children": [1, 0]}],
        "scenes": [{"nodes": [3]}],
        "meshes": [{"name": "strip", "primitives": [prim]}],
        "skins": [{"joints": [1, 2], "inverseBindMatrices": ibm_acc, "skeleton": 1}],
        "animations": [{"name": "bend", "samplers": samplers,
                        "channels": [{"sampler": 0, "target": {"node": 2, "path": "rotation"}},
                                     {"sampler": 1, "target": {"node": 1, "path": "translation"}}]}],
    })
    doc.update({"bufferViews": b.views, "accessors": b.accessors})
    return _glb(doc, bytes(b.data))


def morph_glb(interpolation: str = "LINEAR") -> bytes:
    """A strip with two morph targets (bulge out along Z, lean along X), their weights animated, under a moved node."""
    pos, faces, uv = _strip()
    b, doc = _Bin(), {"asset": {"version": "2.0"}, "scene": 0}
    mat = _material(b, doc)
    h = pos[:, 1]
    bulge = np.stack([np.zeros_like(h), np.zeros_like(h), np.sin(h * np.pi / 2) * 0.3], 1).astype(np.float32)
    lean = np.stack([h * h * 0.2, np.zeros_like(h), np.zeros_like(h)], 1).astype(np.float32)
    attrs = {"POSITION": b.add(pos, "VEC3", target=34962, minmax=True), "TEXCOORD_0": b.add(uv, "VEC2", target=34962)}
    targets = [{"POSITION": b.add(bulge, "VEC3", minmax=True)}, {"POSITION": b.add(lean, "VEC3", minmax=True)}]
    prim = {"attributes": attrs, "indices": b.add(faces.reshape(-1, 1), "SCALAR", 5123, 34963), "material": mat,
            "targets": targets}
    keys = 4
    t = _times(keys, 1.0)
    w = np.array([[0, 0], [1, 0.2], [0.3, 1], [0, 0.5]], np.float32)
    out = _cubic(w) if interpolation == "CUBICSPLINE" else w
    doc.update({
        "nodes": [{"name": "strip", "mesh": 0, "translation": [0.3, 0.1, -0.2], "rotation": [0, 0.3826834, 0, 0.9238795]}],
        "scenes": [{"nodes": [0]}],
        "meshes": [{"name": "strip", "primitives": [prim], "weights": [0, 0]}],
        "animations": [{"name": "morph", "samplers": [{"input": b.add(t.reshape(-1, 1), "SCALAR", minmax=True),
                                                       "output": b.add(out.reshape(-1, 1), "SCALAR"),
                                                       "interpolation": interpolation}],
                        "channels": [{"sampler": 0, "target": {"node": 0, "path": "weights"}}]}],
    })
    doc.update({"bufferViews": b.views, "accessors": b.accessors})
    return _glb(doc, bytes(b.data))
