"""3D Gaussian Splatting PLY: writer and reader of the standard layout (pure numpy, no torch).

The layout of the 3DGS reference code, read by every splat viewer: binary little-endian float32 vertex
properties `x y z nx ny nz f_dc_0..2 f_rest_0..44 opacity scale_0..2 rot_0..3`, opacity as a logit, scales
as logs, rotation as a quaternion w x y z. `f_rest` is channel-major: f_rest_{c * (K - 1) + k} is band k + 1
of colour channel c, K = (degree + 1)^2. Positions stay in the Blender world frame (DESIGN.md section 4).
The reader takes any property order, extra properties (kept in `extra`), float or double, and fewer
`f_rest` (a lower SH degree).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
    "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass(frozen=True, eq=False)
class SplatPly:
    """The arrays of a 3DGS PLY (N Gaussians), float32."""

    means: np.ndarray
    """[N, 3] positions."""
    quats: np.ndarray
    """[N, 4] rotations, w x y z."""
    log_scales: np.ndarray
    """[N, 3]."""
    logit_opacities: np.ndarray
    """[N]."""
    sh: np.ndarray
    """[N, K, 3] SH coefficients, band 0 first."""
    normals: np.ndarray | None = None
    """[N, 3] when the file has nx ny nz (3DGS writes zeros)."""
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    """Other vertex properties, by name."""


def _sh_count(degree: int) -> int:
    return (degree + 1) ** 2


def write_ply(
    path: str | Path | None,
    means: np.ndarray,
    quats: np.ndarray,
    log_scales: np.ndarray,
    logit_opacities: np.ndarray,
    sh: np.ndarray,
    pad_to_degree: int = 3,
    extra: dict[str, np.ndarray] | None = None,
) -> bytes:
    """Encode N Gaussians as a 3DGS PLY; write it to `path` when given; return the bytes.

    extra: more per-Gaussian properties after the standard ones ([N] int32 or float32 each; the splats' binding).

    sh: [N, K, 3]; bands above its degree are written as zeros up to `pad_to_degree` (3 gives the usual
    45 f_rest, which some viewers expect).
    """
    means = np.asarray(means, dtype=np.float32)
    n = len(means)
    arrays = {"means": (means, (n, 3)), "quats": (quats, (n, 4)), "log_scales": (log_scales, (n, 3)),
              "logit_opacities": (logit_opacities, (n,))}
    for name, (value, shape) in arrays.items():
        if np.asarray(value).shape != shape:
            raise ValueError(f"{name} must have shape {shape} (N = {n} from means), got {np.asarray(value).shape}")
    sh = np.asarray(sh, dtype=np.float32)
    if sh.ndim != 3 or sh.shape[0] != n or sh.shape[2] != 3 or sh.shape[1] not in (1, 4, 9, 16, 25):
        raise ValueError(f"sh must have shape [N, K, 3] with K a square, got {sh.shape}")
    k = max(sh.shape[1], _sh_count(pad_to_degree))
    if sh.shape[1] < k:
        sh = np.concatenate([sh, np.zeros((n, k - sh.shape[1], 3), np.float32)], axis=1)
    for name, (value, _) in arrays.items():
        if not np.isfinite(np.asarray(value, dtype=np.float32)).all():
            raise ValueError(f"{name} holds non-finite values")
    rest = sh[:, 1:, :].transpose(0, 2, 1).reshape(n, -1)  # channel-major, as 3DGS
    names = (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
             + [f"f_rest_{i}" for i in range(rest.shape[1])]
             + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])
    columns = np.concatenate(
        [means, np.zeros((n, 3), np.float32), sh[:, 0, :], rest,
         np.asarray(logit_opacities, np.float32)[:, None], np.asarray(log_scales, np.float32),
         np.asarray(quats, np.float32)],
        axis=1,
    )
    props = [f"property float {p}" for p in names]
    body = np.ascontiguousarray(columns, dtype="<f4")
    if extra:
        kinds = {np.dtype(np.int32): ("int", "<i4"), np.dtype(np.float32): ("float", "<f4")}
        fields = [(p, "<f4") for p in names]
        for name, value in extra.items():
            value = np.asarray(value)
            if value.shape != (n,) or value.dtype not in kinds:
                raise ValueError(f"extra property {name!r} must be [N] = [{n}] int32 or float32, got {value.dtype} {value.shape}")
            props.append(f"property {kinds[value.dtype][0]} {name}")
            fields.append((name, kinds[value.dtype][1]))
        rec = np.zeros(n, dtype=fields)
        for j, p in enumerate(names):
            rec[p] = body[:, j]
        for name, value in extra.items():
            rec[name] = value
        body = rec
    header = "\n".join(["ply", "format binary_little_endian 1.0", f"element vertex {n}"] + props + ["end_header"]) + "\n"
    data = header.encode("ascii") + body.tobytes()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def _parse_header(data: bytes) -> tuple[int, list[tuple[str, str]], int]:
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise ValueError("not a PLY file: no 'ply' magic or no end_header")
    body_start = data.index(b"\n", end) + 1
    lines = data[:end].decode("ascii", errors="replace").splitlines()
    fmt = next((ln.split() for ln in lines if ln.startswith("format")), None)
    if fmt is None or fmt[1] != "binary_little_endian":
        raise ValueError(f"only binary_little_endian PLY is supported, got format {fmt[1] if fmt else None!r}")
    count, props, element = None, [], None
    for ln in lines:
        parts = ln.split()
        if not parts:
            continue
        if parts[0] == "element":
            if element == "vertex":
                break  # properties of a later element do not concern the vertices
            element = parts[1]
            if element == "vertex":
                count = int(parts[2])
            elif count is None:
                raise ValueError(f"the vertex element must come first, found {element!r} before it")
        elif parts[0] == "property" and element == "vertex":
            if parts[1] == "list":
                raise ValueError(f"list property {parts[-1]!r} in the vertex element is not supported")
            if parts[1] not in _PLY_TYPES:
                raise ValueError(f"unknown PLY property type {parts[1]!r} for {parts[2]!r}")
            props.append((parts[2], _PLY_TYPES[parts[1]]))
    if count is None:
        raise ValueError("PLY has no vertex element")
    return count, props, body_start


def read_ply(source: str | Path | bytes) -> SplatPly:
    """Decode a 3DGS PLY (ours or another tool's)."""
    data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    n, props, start = _parse_header(data)
    dtype = np.dtype([(name, "<" + t) for name, t in props])
    if len(data) - start < n * dtype.itemsize:
        raise ValueError(f"PLY is truncated: {n} vertices need {n * dtype.itemsize} bytes, "
                         f"{len(data) - start} present")
    rec = np.frombuffer(data, dtype=dtype, count=n, offset=start)
    names = set(dtype.names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [r for r in required if r not in names]
    if missing:
        raise ValueError(f"PLY lacks the 3DGS properties {missing}")
    col = lambda *keys: np.stack([rec[k].astype(np.float32) for k in keys], axis=1)  # noqa: E731
    n_rest = 0
    while f"f_rest_{n_rest}" in names:
        n_rest += 1
    if n_rest % 3 or int(round((n_rest // 3 + 1) ** 0.5)) ** 2 != n_rest // 3 + 1:
        raise ValueError(f"PLY has {n_rest} f_rest properties: not 3 x ((degree + 1)^2 - 1)")
    k = n_rest // 3 + 1
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0] = col("f_dc_0", "f_dc_1", "f_dc_2")
    if n_rest:
        rest = col(*[f"f_rest_{i}" for i in range(n_rest)]).reshape(n, 3, k - 1)
        sh[:, 1:] = rest.transpose(0, 2, 1)
    known = set(required) | {"nx", "ny", "nz"} | {f"f_rest_{i}" for i in range(n_rest)}
    return SplatPly(
        means=col("x", "y", "z"),
        quats=col("rot_0", "rot_1", "rot_2", "rot_3"),
        log_scales=col("scale_0", "scale_1", "scale_2"),
        logit_opacities=rec["opacity"].astype(np.float32),
        sh=sh,
        normals=col("nx", "ny", "nz") if {"nx", "ny", "nz"} <= names else None,
        extra={name: np.array(rec[name]) for name in dtype.names if name not in known},
    )
