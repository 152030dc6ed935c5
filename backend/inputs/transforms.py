"""nerfstudio transforms.json camera sets <-> References.

`transform_matrix` is the camera-to-world exactly as Blender's camera `matrix_world` (camera looks down -Z,
+Y up) in the Blender world frame (Z up); intrinsics fl_x, fl_y, cx, cy, w, h sit at the top level or per
frame (per frame wins). nerfstudio's cx/cy count from the image edge; ours from the first pixel's centre,
so cx_ours = cx - 0.5 (protocol/cameras.py does the conversion). Images are RGBA with straight alpha; an
image without alpha is fully opaque unless the frame names a `mask_path` (white = subject).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...protocol.assets import Camera, Reference
from ...protocol.cameras import CameraError, PinholeCamera, camera_from_nerfstudio, nerfstudio_frame
from ...protocol.errors import InvalidAsset, TooLarge
from ..stages.common.images import to_u8
from .budget import ENV as BUDGET_ENV, max_reference_pixels

_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


def _load_image(path: Path, where: str, field: str) -> np.ndarray:
    from PIL import Image

    if path.is_dir():
        raise InvalidAsset(f"{where}: {path} is a folder, not an image: name the image file", field=field)
    if not path.is_file():
        raise InvalidAsset(f"{where}: image file {path} does not exist: fix the path (relative to the "
                           "transforms.json folder) or add the image", field=field)
    budget = max_reference_pixels()
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > budget:
                raise TooLarge(f"{where}: image {path} is {w}x{h} = {w * h / 1e6:.1f} megapixels, over the budget of "
                               f"{budget / 1e6:.1f}: scale it down (a few megapixels is plenty) or raise "
                               f"{BUDGET_ENV}", field=field)
            Image.MAX_IMAGE_PIXELS = None  # the budget above is the check
            return np.asarray(im.convert("RGBA"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise InvalidAsset(f"{where}: cannot read image {path} ({type(exc).__name__}: {exc}): save it as PNG or JPEG",
                           field=field) from None


def _check_numbers(merged: dict, where: str, field: str) -> None:
    """Intrinsics and distortion are numbers, w and h whole pixels, transform_matrix 4 x 4 numbers: else the
    frame and the key are named (nothing is truncated or guessed)."""
    import math

    def real(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    for key in ("fl_x", "fl_y", "cx", "cy") + _DISTORTION:
        if key in merged and merged[key] is not None and not real(merged[key]):
            raise InvalidAsset(f"{where}.{key} is {merged[key]!r:.60}; it must be a finite number", field=f"{field}.{key}")
    for key in ("w", "h"):
        v = merged.get(key)
        if v is not None and not (real(v) and float(v).is_integer() and v >= 1):
            raise InvalidAsset(f"{where}.{key} is {v!r:.60}; the image {'width' if key == 'w' else 'height'} must be a "
                               "whole number of pixels >= 1 (the image's own size)", field=f"{field}.{key}")
    m = merged.get("transform_matrix")
    if m is not None and not (isinstance(m, list) and len(m) == 4 and all(isinstance(r, list) and len(r) == 4
                                                                          and all(real(x) for x in r) for r in m)):
        raise InvalidAsset(f"{where}.transform_matrix is {m!r:.80}; it must be 4 rows of 4 finite numbers (the camera's "
                           "matrix_world)", field=f"{field}.transform_matrix")


def read_transforms(path: str | Path) -> list[Reference]:
    """References (image + camera) of a transforms.json; every problem names the frame and the field."""
    path = Path(path)
    if path.is_dir():
        if not (path / "transforms.json").is_file():
            raise InvalidAsset(f"{path} is a folder without a transforms.json: name the camera file (nerfstudio "
                               "transforms.json)", field="transforms")
        path = path / "transforms.json"
    if not path.is_file():
        raise InvalidAsset(f"camera file {path} does not exist: name a nerfstudio transforms.json", field="transforms")
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InvalidAsset(f"cannot read {path} as JSON ({type(exc).__name__}: {exc}): write it as nerfstudio's "
                           "transforms.json", field="transforms") from None
    if not isinstance(meta, dict):
        raise InvalidAsset(f"{path} holds a JSON {type(meta).__name__}; transforms.json is a map with 'frames'",
                           field="transforms")
    frames = meta.get("frames")
    if not isinstance(frames, list) or not frames:
        raise InvalidAsset(f"{path}: 'frames' must be a non-empty list of frames (a file_path and a "
                           "transform_matrix each)", field="frames")
    defaults = {k: v for k, v in meta.items() if k != "frames"}
    refs, names = [], set()
    for i, frame in enumerate(frames):
        where = f"{path}: frames[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise InvalidAsset(f"{where} needs a 'file_path' string", field=f"frames[{i}].file_path")
        merged = {**defaults, **frame}
        _check_numbers(merged, where, f"frames[{i}]")
        model = merged.get("camera_model", "PINHOLE")
        bad = {k: merged[k] for k in _DISTORTION if abs(float(merged.get(k, 0.0) or 0.0)) > 1e-12}
        if model not in ("PINHOLE", "OPENCV") or bad:
            what = f"camera_model {model}" + (f" with distortion {bad}" if bad else "")
            raise InvalidAsset(f"{where}: {what} is not supported (pinhole cameras only): undistort the images first "
                               "and write camera_model PINHOLE without k1..p2", field=f"frames[{i}].camera_model")
        try:
            pin = camera_from_nerfstudio(frame, defaults)
            cam = Camera(pin.K, pin.w2c, pin.width, pin.height)
        except (CameraError, InvalidAsset, TypeError, ValueError) as exc:
            raise InvalidAsset(f"{where}: {exc}: give fl_x, fl_y, cx, cy (pixels), w, h and transform_matrix (the "
                               "camera's matrix_world) in the frame or at the top level", field=f"frames[{i}]") from None
        image = _load_image(path.parent / frame["file_path"], f"{where}.file_path", f"frames[{i}].file_path")
        if isinstance(frame.get("mask_path"), str):
            mask = _load_image(path.parent / frame["mask_path"], f"{where}.mask_path", f"frames[{i}].mask_path")
            if mask.shape[:2] != image.shape[:2]:
                raise InvalidAsset(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                   f"{image.shape[1]}x{image.shape[0]}: save the mask at the image's size",
                                   field=f"frames[{i}].mask_path")
            image = image.copy()
            image[..., 3] = mask[..., 0]
        name = Path(frame["file_path"]).stem
        while name in names:
            name += "_"
        names.add(name)
        try:
            refs.append(Reference(name, image, cam))
        except InvalidAsset as exc:
            hint = "; set w and h to the image's size in pixels" if "but its camera is" in exc.message else ""
            raise InvalidAsset(f"{where}: {exc.message}{hint}", field=f"frames[{i}]") from None
    return refs


def write_transforms(path: str | Path, references: list[Reference], images_dir: str = "images") -> Path:
    """Write references as transforms.json + PNG images (per-frame intrinsics), as nerfstudio reads them."""
    from PIL import Image

    path = Path(path)
    (path.parent / images_dir).mkdir(parents=True, exist_ok=True)
    frames = []
    for ref in references:
        rel = f"{images_dir}/{ref.name}.png"
        img = to_u8(ref.image)
        Image.fromarray(img, "RGBA").save(path.parent / rel)
        c = ref.camera
        frames.append({"file_path": rel, **nerfstudio_frame(PinholeCamera(c.K, c.w2c, c.width, c.height)),
                       **({"frame": ref.frame} if ref.frame is not None else {})})
    path.write_text(json.dumps({"camera_model": "PINHOLE", "frames": frames}, indent=1))
    return path
