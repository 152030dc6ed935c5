"""3D Gaussian Splatting PLY -> numpy (no bpy): any standard 3DGS PLY, extra per-vertex fields kept.

The 3DGS layout (Kerbl et al. 2023, as their reference code writes it): `x y z`, optional `nx ny nz`,
`f_dc_0..2` (SH degree-0 coefficients), `f_rest_0..` (higher SH coefficients, channel-major), `opacity`
(logit), `scale_0..2` (log), `rot_0..3` (quaternion wxyz, not necessarily normalised). Likeness3D writes
them in the Blender world frame (Z up). Binary little/big endian and ASCII are read; other elements after
`vertex` are skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
            "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}
_MAX_HEADER = 1 << 16
SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi)); colour = 0.5 + SH_C0 * f_dc


class PlyError(ValueError):
    """A PLY file that is not a readable 3DGS file; the message names the file, the field and the value."""


@dataclass
class Splats:
    """N Gaussians as stored in a 3DGS PLY: the file's vertex table (memory-mapped) and typed views of it.

    Columns are copied out on request, so an importer can move one field at a time into Blender.
    """

    table: np.ndarray  # [N] structured, one field per PLY property
    names: list[str]  # every vertex property, file order
    rest: list[str]  # the f_rest_<i> names, by index

    def __len__(self) -> int:
        return len(self.table)

    def column(self, name: str) -> np.ndarray:
        """[N] one field, contiguous, in its file dtype (native byte order)."""
        values = self.table[name]
        return np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("="))

    def columns(self, fields: list[str]) -> np.ndarray:
        """[N, k] float32 of k fields."""
        out = np.empty((len(self), len(fields)), dtype=np.float32)
        for i, name in enumerate(fields):
            out[:, i] = self.table[name]
        return out

    @property
    def positions(self) -> np.ndarray:  # [N,3]
        return self.columns(["x", "y", "z"])

    @property
    def f_dc(self) -> np.ndarray:  # [N,3] SH degree 0
        return self.columns(["f_dc_0", "f_dc_1", "f_dc_2"])

    @property
    def f_rest(self) -> np.ndarray:  # [N,K] higher SH, file order (channel-major)
        return self.columns(self.rest)

    @property
    def opacity(self) -> np.ndarray:  # [N] logit
        return self.column("opacity").astype(np.float32)

    @property
    def scales(self) -> np.ndarray:  # [N,3] log
        return self.columns(["scale_0", "scale_1", "scale_2"])

    @property
    def rotations(self) -> np.ndarray:  # [N,4] quaternion wxyz
        return self.columns(["rot_0", "rot_1", "rot_2", "rot_3"])

    @property
    def extra(self) -> list[str]:
        """Vertex fields beyond the 3DGS ones (nx ny nz, ...)."""
        known = set(REQUIRED) | set(self.rest)
        return [n for n in self.names if n not in known]

    @property
    def sh_degree(self) -> int:
        degree = 0
        while 3 * ((degree + 1) ** 2 - 1) < len(self.rest):
            degree += 1
        return degree

    def colors(self) -> np.ndarray:
        """[N,4] float32 display RGBA in [0, 1]: SH degree 0 colour and sigmoid(opacity)."""
        rgba = np.empty((len(self), 4), dtype=np.float32)
        rgba[:, :3] = np.clip(0.5 + SH_C0 * self.f_dc, 0.0, 1.0)
        rgba[:, 3] = 1.0 / (1.0 + np.exp(-self.opacity))
        return rgba


@dataclass
class PlyHeader:
    fmt: str  # "binary_little_endian" | "binary_big_endian" | "ascii"
    elements: list[tuple[str, int, list[tuple[str, str]]]]  # (name, count, [(property, numpy type)])
    data_offset: int


def read_header(path: Path, data: bytes) -> PlyHeader:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise PlyError(f"{path}: not a PLY file (no 'ply' magic or no 'end_header' in the first {_MAX_HEADER} bytes)")
    newline = data.find(b"\n", end)
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt, elements = None, []
    for line in lines[1:]:
        words = line.split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format":
            fmt = words[1]
        elif words[0] == "element":
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property":
            if not elements:
                raise PlyError(f"{path}: property {words[-1]!r} before any element")
            if words[1] == "list":
                elements[-1][2].append((words[-1], "list"))
            elif words[1] in _PLY_TYPES:
                elements[-1][2].append((words[2], _PLY_TYPES[words[1]]))
            else:
                raise PlyError(f"{path}: property {words[2]!r} has unknown type {words[1]!r}")
    if fmt not in ("binary_little_endian", "binary_big_endian", "ascii"):
        raise PlyError(f"{path}: unsupported PLY format {fmt!r}")
    return PlyHeader(fmt, elements, newline + 1)


def read_vertex_table(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """The `vertex` element as a structured array (memory-mapped from the file) and its field names."""
    path = Path(path)
    with open(path, "rb") as fh:
        head = fh.read(_MAX_HEADER)
    header = read_header(path, head)
    if not header.elements or header.elements[0][0] != "vertex":
        names = [e[0] for e in header.elements]
        raise PlyError(f"{path}: the first element must be 'vertex', found {names}")
    _, count, props = header.elements[0]
    lists = [name for name, ty in props if ty == "list"]
    if lists:
        raise PlyError(f"{path}: vertex property {lists[0]!r} is a list; 3DGS vertices hold scalars only")
    names = [name for name, _ in props]
    if header.fmt == "ascii":
        table = np.loadtxt(path, dtype=np.float64, skiprows=_header_lines(head), max_rows=count, ndmin=2)
        if table.shape != (count, len(names)):
            raise PlyError(f"{path}: expected {count} x {len(names)} vertex values, read {list(table.shape)}")
        typed = np.empty(count, dtype=np.dtype([(name, "=" + ty) for name, ty in props]))
        for i, name in enumerate(names):  # the declared types, as the binary formats keep them
            typed[name] = table[:, i]
        return typed, names
    order = "<" if header.fmt == "binary_little_endian" else ">"
    dtype = np.dtype([(name, order + ty) for name, ty in props])
    size = path.stat().st_size - header.data_offset
    if size < count * dtype.itemsize:
        raise PlyError(f"{path}: header promises {count} vertices of {dtype.itemsize} bytes "
                       f"but only {size} bytes follow it")
    # mapped, not read: the caller copies out the columns it wants, so the file's bytes are touched once
    table = np.memmap(path, dtype=dtype, mode="r", offset=header.data_offset, shape=(count,))
    return table, names


def _header_lines(head: bytes) -> int:
    return head[: head.find(b"end_header")].count(b"\n") + 1


def _indexed(names: list[str], prefix: str) -> list[str]:
    found = [(int(m.group(1)), n) for n in names if (m := re.fullmatch(re.escape(prefix) + r"(\d+)", n))]
    return [n for _, n in sorted(found)]


def is_3dgs(names: list[str]) -> bool:
    return all(n in names for n in REQUIRED)


def read_splats(path: str | Path) -> Splats:
    """A 3DGS PLY as Splats; missing 3DGS fields are an error naming them."""
    table, names = read_vertex_table(path)
    missing = [n for n in REQUIRED if n not in names]
    if missing:
        raise PlyError(f"{path}: not a 3DGS PLY, vertex fields {missing} are missing (found {names})")
    rest = _indexed(names, "f_rest_")
    if len(rest) % 3:
        raise PlyError(f"{path}: {len(rest)} f_rest fields; 3DGS stores 3 per SH coefficient")
    if len(rest) != 3 * ((Splats(table, names, rest).sh_degree + 1) ** 2 - 1):
        raise PlyError(f"{path}: {len(rest)} f_rest fields match no SH degree (0, 9, 24 or 45 expected)")
    for name in REQUIRED + tuple(rest):
        if table.dtype[name].kind != "f":
            raise PlyError(f"{path}: field {name!r} has type {table.dtype[name]}; 3DGS fields are floats")
    return Splats(table, names, rest)
