"""glTF 2.0 files read without a library: the JSON, the binary buffers, typed accessors (sparse too), and the
base-colour image of a material. Problems are `invalid_asset` naming the file and the part."""

from __future__ import annotations

import base64
import json
import struct
from pathlib import Path

import numpy as np

from ...protocol.errors import InvalidAsset

_COMPONENTS = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_WIDTH = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_NORMALISED = {np.int8: 127.0, np.uint8: 255.0, np.int16: 32767.0, np.uint16: 65535.0}


class GltfFile:
    """A parsed .glb or .gltf: `json` (the document) and `buffers` (bytes each)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        data = self.path.read_bytes()
        if data[:4] == b"glTF":
            self.json, binary = self._split_glb(data)
        else:
            try:
                self.json, binary = json.loads(data.decode("utf-8")), None
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise self.error(f"is neither a GLB nor glTF JSON ({exc})", "mesh") from None
        self.buffers = [self._buffer(i, b, binary) for i, b in enumerate(self.json.get("buffers", []))]

    def error(self, what: str, field: str = "mesh") -> InvalidAsset:
        return InvalidAsset(f"glTF file {self.path}: {what}", field=field)

    def _split_glb(self, data: bytes) -> tuple[dict, bytes | None]:
        if len(data) < 20:
            raise self.error("is shorter than a GLB header")
        _, version, length = struct.unpack_from("<4sII", data)
        if version != 2:
            raise self.error(f"is GLB version {version}; glTF 2.0 is read")
        offset, doc, binary = 12, None, None
        while offset + 8 <= min(length, len(data)):
            size, kind = struct.unpack_from("<II", data, offset)
            chunk = data[offset + 8: offset + 8 + size]
            if kind == 0x4E4F534A:
                doc = json.loads(chunk.decode("utf-8"))
            elif kind == 0x004E4942 and binary is None:
                binary = chunk
            offset += 8 + size + (-size % 4)
        if doc is None:
            raise self.error("has no JSON chunk")
        return doc, binary

    def _buffer(self, i: int, spec: dict, binary: bytes | None) -> bytes:
        uri = spec.get("uri")
        if uri is None:
            if binary is None:
                raise self.error(f"buffers[{i}] has no uri and the file no binary chunk", f"buffers[{i}]")
            return binary
        if uri.startswith("data:"):
            return base64.b64decode(uri.split(",", 1)[1])
        target = (self.path.parent / uri).resolve()
        if not target.is_file():
            raise self.error(f"buffers[{i}] names {uri!r}, which is not a file beside it", f"buffers[{i}]")
        return target.read_bytes()

    def view(self, index: int) -> tuple[bytes, int, int | None]:
        """(buffer bytes, byte offset, byte stride) of bufferViews[index]."""
        bv = self.json["bufferViews"][index]
        return self.buffers[bv["buffer"]], int(bv.get("byteOffset", 0)), bv.get("byteStride")

    def accessor(self, index: int) -> np.ndarray:
        """accessors[index] as [count, width] float64 (normalised integers scaled), or int64 for indices/joints."""
        acc = self.json["accessors"][index]
        dtype = np.dtype(_COMPONENTS[acc["componentType"]]).newbyteorder("<")
        width, count = _WIDTH[acc["type"]], int(acc["count"])
        if "bufferView" in acc:
            buf, offset, stride = self.view(acc["bufferView"])
            offset += int(acc.get("byteOffset", 0))
            item = dtype.itemsize * width
            stride = stride or item
            if offset + stride * (count - 1) + item > len(buf):
                raise self.error(f"accessors[{index}] reaches past its buffer", f"accessors[{index}]")
            raw = np.lib.stride_tricks.as_strided(np.frombuffer(buf, np.uint8, offset=offset, count=len(buf) - offset),
                                                  (count, item), (stride, 1))
            out = np.ascontiguousarray(raw).view(dtype).reshape(count, width)
        else:
            out = np.zeros((count, width), dtype)
        if "sparse" in acc:
            sp = acc["sparse"]
            n = int(sp["count"])
            ib, io, _ = self.view(sp["indices"]["bufferView"])
            idx = np.frombuffer(ib, _COMPONENTS[sp["indices"]["componentType"]], n, io + int(sp["indices"].get("byteOffset", 0)))
            vb, vo, _ = self.view(sp["values"]["bufferView"])
            vals = np.frombuffer(vb, dtype, n * width, vo + int(sp["values"].get("byteOffset", 0))).reshape(n, width)
            out = out.copy()
            out[idx.astype(np.int64)] = vals
        if dtype.kind == "f":
            return out.astype(np.float64)
        if acc.get("normalized"):
            return np.maximum(out.astype(np.float64) / _NORMALISED[dtype.type], -1.0)
        return out.astype(np.int64)

    def base_colour_image(self, material: int | None) -> tuple[int | None, np.ndarray | None]:
        """(images index, [H, W, 4] uint8) of a material's base-colour texture, or (None, None)."""
        import io

        from PIL import Image

        if material is None:
            return None, None
        pbr = self.json["materials"][material].get("pbrMetallicRoughness", {})
        tex = pbr.get("baseColorTexture")
        if tex is None:
            return None, None
        source = self.json["textures"][tex["index"]].get("source")
        if source is None:
            return None, None
        img = self.json["images"][source]
        if "bufferView" in img:
            buf, off, _ = self.view(img["bufferView"])
            data = buf[off: off + self.json["bufferViews"][img["bufferView"]]["byteLength"]]
        elif img.get("uri", "").startswith("data:"):
            data = base64.b64decode(img["uri"].split(",", 1)[1])
        else:
            data = (self.path.parent / img["uri"]).read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            return source, np.asarray(im.convert("RGBA"), np.uint8)
