"""What a job refines: a mesh (Blender world space), reference images and their cameras.

Conventions (DESIGN.md section 4): geometry in Blender world space (Z up, metres); cameras in OpenCV axes
(x right, y down, z forward) as K [3,3] + world-to-camera [4,4]; images RGBA, uint8 or float32 in [0, 1],
straight alpha, rows top-down; UVs per triangle corner with Blender's origin at the image's bottom-left.
Every dataclass validates on construction and names the field and the value it rejects.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidAsset, brief

MAX_NAME = 256


def _array(value: Any, where: str, *, dtypes: tuple, ndim: int, last: tuple = ()) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        raise InvalidAsset(f"{where} must be a numpy array, got {type(value).__name__}", field=where)
    if value.dtype not in [np.dtype(d) for d in dtypes]:
        raise InvalidAsset(f"{where} has dtype {value.dtype}; expected one of {[np.dtype(d).name for d in dtypes]}", field=where)
    if value.ndim != ndim or tuple(value.shape[ndim - len(last):]) != last:
        want = "[" + ", ".join(["*"] * (ndim - len(last)) + [str(s) for s in last]) + "]"
        raise InvalidAsset(f"{where} has shape {list(value.shape)}; expected {want}", field=where)
    return value


def _finite(value: np.ndarray, where: str) -> None:
    if value.dtype.kind == "f":
        bad = ~np.isfinite(value)
        if bad.any():
            idx = tuple(int(i) for i in np.argwhere(bad)[0])
            raise InvalidAsset(f"{where}{list(idx)} is {value[idx]} (must be finite)", field=where)


def _image(value: Any, where: str) -> np.ndarray:
    img = _array(value, where, dtypes=(np.uint8, np.float32), ndim=3, last=(4,))
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise InvalidAsset(f"{where} has shape {list(img.shape)}; an image needs at least 1x1 pixels", field=where)
    if img.dtype == np.float32:
        _finite(img, where)
        lo, hi = float(img.min()), float(img.max())
        if lo < 0.0 or hi > 1.0:
            raise InvalidAsset(f"{where} holds float values in [{lo:.4g}, {hi:.4g}]; float images must lie in [0, 1]", field=where)
    return img


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_NAME:
        raise InvalidAsset(f"{where} must be a non-empty string of at most {MAX_NAME} characters, got {brief(value, 80)}", field=where)
    return value


@dataclass(frozen=True)
class Camera:
    """A pinhole camera in OpenCV axes: x right, y down, z forward; pixel (0, 0) is the top-left pixel's centre."""

    K: np.ndarray
    """[3, 3] float64 intrinsics: fx, fy, cx, cy in pixels, zero skew."""
    w2c: np.ndarray
    """[4, 4] float64 world-to-camera in the Blender world frame."""
    width: int
    height: int

    def __post_init__(self) -> None:
        K = np.asarray(self.K, dtype=np.float64)
        w2c = np.asarray(self.w2c, dtype=np.float64)
        if K.shape != (3, 3):
            raise InvalidAsset(f"camera.K has shape {list(K.shape)}; expected [3, 3]", field="camera.K")
        if w2c.shape != (4, 4):
            raise InvalidAsset(f"camera.w2c has shape {list(w2c.shape)}; expected [4, 4]", field="camera.w2c")
        _finite(K, "camera.K")
        _finite(w2c, "camera.w2c")
        for name, v in (("width", self.width), ("height", self.height)):
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not 1 <= int(v) <= 65536:
                raise InvalidAsset(f"camera.{name} must be an int in [1, 65536], got {brief(v, 80)}", field=f"camera.{name}")
        if not (K[0, 0] > 0 and K[1, 1] > 0) or K[2, 2] != 1.0 or np.any(K[2, :2] != 0.0) or K[1, 0] != 0.0:
            raise InvalidAsset(f"camera.K must be [[fx,0,cx],[0,fy,cy],[0,0,1]] with fx, fy > 0, got {K.tolist()}", field="camera.K")
        if K[0, 1] != 0.0:
            raise InvalidAsset(f"camera.K[0][1] (skew) is {float(K[0, 1])}; cameras have no skew: give "
                               f"[[fx,0,cx],[0,fy,cy],[0,0,1]] (rectify the images if the lens had skew)", field="camera.K")
        if np.any(w2c[3] != (0.0, 0.0, 0.0, 1.0)):
            raise InvalidAsset(f"camera.w2c last row must be [0, 0, 0, 1], got {w2c[3].tolist()}", field="camera.w2c")
        R = w2c[:3, :3]
        if not np.allclose(R @ R.T, np.eye(3), atol=1e-4) or np.linalg.det(R) < 0:
            raise InvalidAsset(f"camera.w2c rotation is not a proper rotation (det {np.linalg.det(R):.4f})", field="camera.w2c")
        object.__setattr__(self, "K", K)
        object.__setattr__(self, "w2c", w2c)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    @property
    def c2w(self) -> np.ndarray:
        """[4, 4] camera-to-world, OpenCV axes."""
        return np.linalg.inv(self.w2c)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """[N, 3] world points -> ([N, 2] pixel coordinates, [N] depth along +z)."""
        cam = points @ self.w2c[:3, :3].T + self.w2c[:3, 3]
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam[:, :2] / z[:, None]) * np.diag(self.K)[:2] + self.K[:2, 2]
        return uv, z


@dataclass(frozen=True)
class Mesh:
    """A triangle mesh in Blender world space, with optional per-corner UVs and a base-colour texture."""

    vertices: np.ndarray
    """[V, 3] float32, metres, Z up."""
    faces: np.ndarray
    """[F, 3] int32 vertex indices, counter-clockwise front faces."""
    uvs: np.ndarray | None = None
    """[F, 3, 2] float32 per-corner UVs, (0, 0) = bottom-left of the texture."""
    texture: np.ndarray | None = None
    """[H, W, 4] uint8 or float32 RGBA, rows top-down."""
    frames: np.ndarray | None = None
    """[T, V, 3] float32 evaluated vertex positions per frame (Blender world frame); `vertices` stays the rest pose
    the UVs and texture belong to. None for a static mesh."""
    frame_numbers: np.ndarray | None = None
    """[T] int32 strictly increasing scene frame numbers of `frames` (required with `frames`)."""
    fps: float | None = None
    """Scene frames per second of `frames` (optional)."""

    def __post_init__(self) -> None:
        v = _array(self.vertices, "mesh.vertices", dtypes=(np.float32,), ndim=2, last=(3,))
        f = _array(self.faces, "mesh.faces", dtypes=(np.int32,), ndim=2, last=(3,))
        if len(v) == 0 or len(f) == 0:
            raise InvalidAsset(f"mesh needs vertices and faces; got {len(v)} vertices and {len(f)} faces", field="mesh")
        _finite(v, "mesh.vertices")
        lo, hi = int(f.min()), int(f.max())
        if lo < 0:
            raise InvalidAsset(f"mesh.faces holds a negative vertex index {lo}", field="mesh.faces")
        if hi >= len(v):
            raise InvalidAsset(f"mesh.faces references vertex {hi} but the mesh has {len(v)} vertices", field="mesh.faces")
        if self.uvs is not None:
            uv = _array(self.uvs, "mesh.uvs", dtypes=(np.float32,), ndim=3, last=(3, 2))
            if len(uv) != len(f):
                raise InvalidAsset(f"mesh.uvs has {len(uv)} triangles but mesh.faces has {len(f)}", field="mesh.uvs")
            _finite(uv, "mesh.uvs")
        if self.texture is not None:
            _image(self.texture, "mesh.texture")
        _check_frames(self, len(v))

    @property
    def animated(self) -> bool:
        """True when the mesh carries per-frame positions."""
        return self.frames is not None

    @property
    def bounds(self) -> np.ndarray:
        """[2, 3] min and max corner."""
        return np.stack([self.vertices.min(0), self.vertices.max(0)])


def _check_frames(mesh: "Mesh", n_vertices: int) -> None:
    if mesh.frames is None:
        if mesh.frame_numbers is not None:
            raise InvalidAsset("mesh.frame_numbers is given without mesh.frames; send both or neither", field="mesh.frame_numbers")
    else:
        fr = _array(mesh.frames, "mesh.frames", dtypes=(np.float32,), ndim=3, last=(3,))
        if fr.shape[0] < 1 or fr.shape[1] != n_vertices:
            raise InvalidAsset(f"mesh.frames has shape {list(fr.shape)}; expected [T >= 1, {n_vertices}, 3] "
                               f"(the same vertex count in every frame as mesh.vertices)", field="mesh.frames")
        _finite(fr, "mesh.frames")
        if mesh.frame_numbers is None:
            raise InvalidAsset("mesh.frames is given without mesh.frame_numbers (the scene frame of each row)",
                               field="mesh.frame_numbers")
        fn = _array(mesh.frame_numbers, "mesh.frame_numbers", dtypes=(np.int32,), ndim=1)
        if len(fn) != len(fr):
            raise InvalidAsset(f"mesh.frame_numbers has {len(fn)} entries but mesh.frames has {len(fr)} frames",
                               field="mesh.frame_numbers")
        steps = np.diff(fn.astype(np.int64))
        if np.any(steps <= 0):
            i = int(np.argmax(steps <= 0))
            raise InvalidAsset(f"mesh.frame_numbers must increase strictly; entry {i + 1} is {int(fn[i + 1])} after "
                               f"{int(fn[i])}", field="mesh.frame_numbers")
    if mesh.fps is not None:
        fps = mesh.fps
        if not isinstance(fps, (int, float, np.floating, np.integer)) or isinstance(fps, bool) or not math.isfinite(fps) or not 0 < fps <= 1000:
            raise InvalidAsset(f"mesh.fps must be a number in (0, 1000], got {brief(fps, 80)}", field="mesh.fps")
        object.__setattr__(mesh, "fps", float(fps))


@dataclass(frozen=True)
class Reference:
    """A photo of the real subject and the camera that saw it."""

    name: str
    image: np.ndarray
    """[H, W, 4] uint8 or float32 RGBA, straight alpha, rows top-down; H, W match the camera."""
    camera: Camera
    frame: int | None = None
    """The scene frame at which the photo was seen (animated meshes); one of the mesh's frame_numbers."""

    def __post_init__(self) -> None:
        _name(self.name, "reference.name")
        if self.frame is not None:
            if not isinstance(self.frame, (int, np.integer)) or isinstance(self.frame, bool) or not -2**31 <= int(self.frame) < 2**31:
                raise InvalidAsset(f"references[{self.name}].frame must be an int32 frame number, got {brief(self.frame, 80)}",
                                   field=f"references[{self.name}].frame")
            object.__setattr__(self, "frame", int(self.frame))
        img = _image(self.image, f"references[{self.name}].image")
        if not isinstance(self.camera, Camera):
            raise InvalidAsset(f"references[{self.name}].camera must be a Camera, got {type(self.camera).__name__}", field="camera")
        if img.shape[:2] != (self.camera.height, self.camera.width):
            raise InvalidAsset(
                f"references[{self.name}].image is {img.shape[1]}x{img.shape[0]} but its camera is "
                f"{self.camera.width}x{self.camera.height}",
                field=f"references[{self.name}].image",
            )


@dataclass(frozen=True)
class Asset:
    """Everything a job refines: the mesh, the references, the subject's class word."""

    mesh: Mesh
    references: tuple[Reference, ...] = field(default_factory=tuple)
    class_word: str = "object"
    """The subject's class ("cat", "sneaker"): prompts say "a photo of sks <class_word>"."""
    name: str = "asset"

    def __post_init__(self) -> None:
        if not isinstance(self.mesh, Mesh):
            raise InvalidAsset(f"asset.mesh must be a Mesh, got {type(self.mesh).__name__}", field="mesh")
        refs = tuple(self.references)
        for r in refs:
            if not isinstance(r, Reference):
                raise InvalidAsset(f"asset.references holds a {type(r).__name__}, not a Reference", field="references")
        names = [r.name for r in refs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise InvalidAsset(f"reference names must be unique; repeated: {sorted(dup)}", field="references")
        for i, r in enumerate(refs):
            if r.frame is None:
                continue
            fn = self.mesh.frame_numbers
            if fn is None:
                raise InvalidAsset(f"references[{i}].frame is {r.frame} but the mesh is static (no mesh.frames); drop "
                                   f"the frame or send the animation", field=f"references[{i}].frame")
            if r.frame not in set(int(x) for x in fn):
                raise InvalidAsset(f"references[{i}].frame is {r.frame}, which is not one of the mesh's frames "
                                   f"({int(fn[0])}..{int(fn[-1])}, {len(fn)} frames); give a gathered frame",
                                   field=f"references[{i}].frame")
        object.__setattr__(self, "references", refs)
        _name(self.class_word, "class_word")
        _name(self.name, "name")


# --- wire form: a msgpack-able map plus named arrays ------------------------------------------------------


def asset_to_wire(asset: Asset) -> tuple[dict, dict[str, np.ndarray]]:
    """Asset -> (meta map, arrays). Array names: mesh.vertices, ..., ref.<i>.image."""
    m = asset.mesh
    arrays: dict[str, np.ndarray] = {"mesh.vertices": m.vertices, "mesh.faces": m.faces}
    if m.uvs is not None:
        arrays["mesh.uvs"] = m.uvs
    if m.texture is not None:
        arrays["mesh.texture"] = m.texture
    if m.frames is not None:
        arrays["mesh.frames"] = m.frames
        arrays["mesh.frame_numbers"] = m.frame_numbers
    refs = []
    for i, r in enumerate(asset.references):
        arrays[f"ref.{i}.image"] = r.image
        c = r.camera
        ref = {"name": r.name, "K": c.K.reshape(-1).tolist(), "w2c": c.w2c.reshape(-1).tolist(), "width": c.width, "height": c.height}
        if r.frame is not None:
            ref["frame"] = r.frame
        refs.append(ref)
    meta = {"name": asset.name, "class_word": asset.class_word, "references": refs}
    if m.fps is not None:
        meta["fps"] = m.fps
    return meta, arrays


def asset_from_wire(meta: Any, arrays: dict[str, np.ndarray]) -> Asset:
    """Inverse of asset_to_wire; every problem is an InvalidAsset naming the field."""
    if not isinstance(meta, dict):
        raise InvalidAsset(f"asset must be a map, got {type(meta).__name__}", field="asset")
    unknown = set(meta) - {"name", "class_word", "references", "fps"}
    if unknown:
        raise InvalidAsset(f"asset has unknown fields {sorted(unknown)}", field="asset")
    for key in ("mesh.vertices", "mesh.faces"):
        if key not in arrays:
            raise InvalidAsset(f"asset is missing the array {key!r}", field=key)
    mesh = Mesh(arrays["mesh.vertices"], arrays["mesh.faces"], arrays.get("mesh.uvs"), arrays.get("mesh.texture"),
                arrays.get("mesh.frames"), arrays.get("mesh.frame_numbers"), meta.get("fps"))
    refs_meta = meta.get("references", [])
    if not isinstance(refs_meta, list):
        raise InvalidAsset(f"asset.references must be a list, got {type(refs_meta).__name__}", field="references")
    refs = []
    for i, r in enumerate(refs_meta):
        where = f"references[{i}]"
        if not isinstance(r, dict) or not {"name", "K", "w2c", "width", "height"} <= set(r) <= {"name", "K", "w2c", "width", "height", "frame"}:
            raise InvalidAsset(f"{where} must be a map with name, K, w2c, width, height and optionally frame; got {brief(r, 200)}", field=where)
        for key, n in (("K", 9), ("w2c", 16)):
            vals = r[key]
            if not isinstance(vals, list) or len(vals) != n or not all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vals
            ):
                raise InvalidAsset(f"{where}.{key} must be {n} finite numbers, got {brief(vals, 200)}", field=f"{where}.{key}")
        image = arrays.get(f"ref.{i}.image")
        if image is None:
            raise InvalidAsset(f"{where} has no image array 'ref.{i}.image'", field=where)
        cam = Camera(np.array(r["K"], np.float64).reshape(3, 3), np.array(r["w2c"], np.float64).reshape(4, 4), r["width"], r["height"])
        frame = r.get("frame")
        if frame is not None and (not isinstance(frame, int) or isinstance(frame, bool)):
            raise InvalidAsset(f"{where}.frame must be an int frame number, got {brief(frame, 80)}", field=f"{where}.frame")
        refs.append(Reference(r["name"], image, cam, frame))
    known = {"mesh.vertices", "mesh.faces", "mesh.uvs", "mesh.texture", "mesh.frames", "mesh.frame_numbers"} | {f"ref.{i}.image" for i in range(len(refs))}
    extra = sorted(set(arrays) - known)
    if extra:
        raise InvalidAsset(f"arrays {extra} belong to no part of the asset", field="asset")
    return Asset(mesh, tuple(refs), meta.get("class_word", "object"), meta.get("name", "asset"))
