"""The input glTF written back with only its base-colour image replaced: nodes, skins, animations, morph targets
and the other materials stay as they were. The result is one self-contained GLB (every buffer and image in its
binary chunk), so a .gltf with side files comes back as a .glb too."""

from __future__ import annotations

import copy
import json
import struct
from pathlib import Path

from ..inputs.gltf_file import GltfFile


def _pad(data: bytearray, fill: bytes = b"\0") -> None:
    while len(data) % 4:
        data += fill


def replace_base_colour(source: str | Path, png: bytes) -> bytes:
    """GLB bytes of `source` whose meshes' base-colour image is `png` (added to their materials if they had none)."""
    g = GltfFile(source)
    doc = copy.deepcopy(g.json)
    used = sorted({p.get("material") for m in doc.get("meshes", []) for p in m.get("primitives", [])} - {None})
    images = doc.setdefault("images", [])
    target = None
    for mi in used:
        tex = doc["materials"][mi].setdefault("pbrMetallicRoughness", {}).get("baseColorTexture")
        if tex is not None and doc["textures"][tex["index"]].get("source") is not None:
            target = doc["textures"][tex["index"]]["source"]
            break
    if target is None:  # no base-colour image yet: one is added and given to every material the meshes use
        images.append({"name": "likeness3d_base_colour"})
        target = len(images) - 1
        doc.setdefault("textures", []).append({"source": target})
        if not used:
            doc.setdefault("materials", []).append({"name": "likeness3d"})
            used = [len(doc["materials"]) - 1]
            for m in doc.get("meshes", []):
                for p in m.get("primitives", []):
                    p.setdefault("material", used[0])
        for mi in used:
            doc["materials"][mi].setdefault("pbrMetallicRoughness", {})["baseColorTexture"] = {"index": len(doc["textures"]) - 1}
    binary = bytearray()
    views = []
    for bv in doc.get("bufferViews", []):
        start = int(bv.get("byteOffset", 0))
        raw = g.buffers[bv["buffer"]][start: start + int(bv["byteLength"])]
        _pad(binary)
        views.append(dict(bv, buffer=0, byteOffset=len(binary)))
        binary += raw
    doc["bufferViews"] = views

    def embed(data: bytes) -> int:
        _pad(binary)
        doc["bufferViews"].append({"buffer": 0, "byteOffset": len(binary), "byteLength": len(data)})
        binary.extend(data)
        return len(doc["bufferViews"]) - 1

    for i, img in enumerate(images):
        if i == target:
            images[i] = {k: v for k, v in img.items() if k not in ("uri", "bufferView")} | {
                "bufferView": embed(png), "mimeType": "image/png"}
        elif "uri" in img:  # side files and data URIs join the binary chunk
            uri = img["uri"]
            if uri.startswith("data:"):
                import base64

                data = base64.b64decode(uri.split(",", 1)[1])
            else:
                data = (g.path.parent / uri).read_bytes()
            mime = img.get("mimeType") or ("image/png" if data[:4] == b"\x89PNG" else "image/jpeg")
            images[i] = {k: v for k, v in img.items() if k != "uri"} | {"bufferView": embed(data), "mimeType": mime}
    _pad(binary)
    doc["buffers"] = [{"byteLength": len(binary)}]
    js = bytearray(json.dumps(doc, separators=(",", ":")).encode())
    _pad(js, b" ")
    body = struct.pack("<II", len(js), 0x4E4F534A) + bytes(js) + struct.pack("<II", len(binary), 0x004E4942) + bytes(binary)
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body
