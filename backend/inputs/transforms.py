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
from ...protocol.errors import InvalidAsset
from ..stages.common.images import to_u8

_DISTORTION = ("k1", "k2", "k3", "k4", "p1", "p2")


def _load_image(path: Path, where: str) -> np.ndarray:
    from PIL import Image

    if not path.is_file():
        raise InvalidAsset(f"{where}: image file {path} does not exist", field=where)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGBA"))
    except OSError as exc:
        raise InvalidAsset(f"{where}: cannot read image {path}: {exc}", field=where) from None


def read_transforms(path: str | Path) -> list[Reference]:
    """References (image + camera) of a transforms.json; every problem names the frame and the field."""
    path = Path(path)
    try:
        meta = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidAsset(f"cannot read {path} as JSON: {exc}", field="transforms") from None
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise InvalidAsset(f"{path}: 'frames' must be a non-empty list", field="frames")
    defaults = {k: v for k, v in meta.items() if k != "frames"}
    refs, names = [], set()
    for i, frame in enumerate(frames):
        where = f"{path.name}: frames[{i}]"
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise InvalidAsset(f"{where} needs a 'file_path' string", field=f"frames[{i}].file_path")
        merged = {**defaults, **frame}
        model = merged.get("camera_model", "PINHOLE")
        bad = {k: merged[k] for k in _DISTORTION if abs(float(merged.get(k, 0.0) or 0.0)) > 1e-12}
        if model not in ("PINHOLE", "OPENCV") or bad:
            raise InvalidAsset(f"{where}: camera_model {model} with distortion {bad} is not supported; undistort the images first",
                               field=f"frames[{i}].camera_model")
        try:
            pin = camera_from_nerfstudio(frame, defaults)
            cam = Camera(pin.K, pin.w2c, pin.width, pin.height)
        except (CameraError, InvalidAsset, TypeError, ValueError) as exc:
            raise InvalidAsset(f"{where}: {exc}", field=f"frames[{i}]") from None
        image = _load_image(path.parent / frame["file_path"], f"{where}.file_path")
        if isinstance(frame.get("mask_path"), str):
            mask = _load_image(path.parent / frame["mask_path"], f"{where}.mask_path")
            if mask.shape[:2] != image.shape[:2]:
                raise InvalidAsset(f"{where}: mask is {mask.shape[1]}x{mask.shape[0]} but the image is "
                                   f"{image.shape[1]}x{image.shape[0]}", field=f"frames[{i}].mask_path")
            image = image.copy()
            image[..., 3] = mask[..., 0]
        name = Path(frame["file_path"]).stem
        while name in names:
            name += "_"
        names.add(name)
        try:
            refs.append(Reference(name, image, cam))
        except InvalidAsset as exc:
            raise InvalidAsset(f"{where}: {exc.message}", field=f"frames[{i}]") from None
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
        frames.append({"file_path": rel, **nerfstudio_frame(PinholeCamera(c.K, c.w2c, c.width, c.height))})
    path.write_text(json.dumps({"camera_model": "PINHOLE", "frames": frames}, indent=1))
    return path
