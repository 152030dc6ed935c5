"""Blender camera <-> OpenCV pinhole camera, and the nerfstudio transforms.json conventions (pure numpy, no bpy).

Blender: the camera looks down its local -Z with +Y up; `matrix_world` is camera-to-world. The render
frame follows Blender's viewplane (BKE_camera_params_compute_viewplane): the sensor fit picks which
image axis the sensor size spans, shift moves the frame in units of that axis' size, and non-square
pixels (pixel_aspect_y / pixel_aspect_x) stretch the vertical axis.

OpenCV: x right, y down, z forward; K holds pixel intrinsics with (0, 0) at the centre of the top-left
pixel; w2c maps Blender world points (Z up, metres) into camera space.

nerfstudio transforms.json: `transform_matrix` is the camera-to-world as Blender's `matrix_world`
(what nerfstudio's own Blender exporter writes); fl_x, fl_y, cx, cy are in pixels with (0, 0) at the
top-left *corner* of the image (nerfstudio casts rays through pixel centres at i + 0.5), so
cx_nerfstudio = cx_opencv + 0.5.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# Blender camera axes (x right, y up, z backward) -> OpenCV camera axes (x right, y down, z forward).
BLENDER_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])

SENSOR_FITS = ("AUTO", "HORIZONTAL", "VERTICAL")
FRAME_METHODS = ("STRETCH", "FIT", "CROP")


class CameraError(ValueError):
    """A camera parameter outside what a pinhole camera can represent; the message names field and value."""


class PinholeCamera(NamedTuple):
    """An OpenCV pinhole camera as the wire carries it (see protocol.assets.Camera)."""

    K: np.ndarray  # [3,3] float64 pixel intrinsics, (0, 0) = centre of the top-left pixel
    w2c: np.ndarray  # [4,4] float64 world-to-camera, OpenCV axes
    width: int
    height: int


def _matrix(value, shape: tuple[int, ...], field: str) -> np.ndarray:
    m = np.asarray(value, dtype=np.float64)
    if m.shape != shape:
        raise CameraError(f"{field} must have shape {shape}, got {m.shape}")
    if not np.all(np.isfinite(m)):
        raise CameraError(f"{field} has non-finite entries: {m.tolist()}")
    return m


def _positive(value: float, field: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0.0:
        raise CameraError(f"{field} must be a positive number, got {value!r}")
    return value


def render_size(resolution_x: int, resolution_y: int, resolution_percentage: int = 100) -> tuple[int, int]:
    """Output size in pixels, truncated as Blender does (BKE_render_resolution)."""
    if resolution_x < 1 or resolution_y < 1:
        raise CameraError(f"resolution must be at least 1x1, got {resolution_x}x{resolution_y}")
    if resolution_percentage < 1:
        raise CameraError(f"resolution_percentage must be >= 1, got {resolution_percentage}")
    return resolution_x * resolution_percentage // 100, resolution_y * resolution_percentage // 100


def rigid_c2w(matrix_world) -> np.ndarray:
    """[4,4] camera-to-world with the rotation columns normalised (Blender ignores camera object scale)."""
    m = _matrix(matrix_world, (4, 4), "matrix_world").copy()
    norms = np.linalg.norm(m[:3, :3], axis=0)
    if np.any(norms < 1e-12):
        raise CameraError(f"matrix_world has a zero scale axis: column norms {norms.tolist()}")
    m[:3, :3] /= norms
    return m


def blender_to_cv(
    matrix_world,  # [4,4] camera-to-world, Blender camera axes (-Z forward, +Y up)
    lens: float,  # focal length, mm
    sensor_width: float,  # mm
    sensor_height: float,  # mm
    sensor_fit: str,  # "AUTO" | "HORIZONTAL" | "VERTICAL"
    shift_x: float,  # fraction of the fitted frame size
    shift_y: float,
    resolution_x: int,
    resolution_y: int,
    resolution_percentage: int = 100,
    pixel_aspect_x: float = 1.0,
    pixel_aspect_y: float = 1.0,
) -> PinholeCamera:
    """OpenCV K and world-to-camera of a Blender perspective camera rendered at the given settings."""
    if sensor_fit not in SENSOR_FITS:
        raise CameraError(f"sensor_fit must be one of {SENSOR_FITS}, got {sensor_fit!r}")
    lens = _positive(lens, "lens")
    sensor_width = _positive(sensor_width, "sensor_width")
    sensor_height = _positive(sensor_height, "sensor_height")
    aspect_x = _positive(pixel_aspect_x, "pixel_aspect_x")
    aspect_y = _positive(pixel_aspect_y, "pixel_aspect_y")
    width, height = render_size(int(resolution_x), int(resolution_y), int(resolution_percentage))
    if width < 1 or height < 1:
        raise CameraError(f"render size is {width}x{height} pixels at {resolution_percentage}%")

    # 1. Which axis the sensor spans: AUTO picks the longer side of the frame as displayed.
    fit = sensor_fit
    if fit == "AUTO":
        fit = "HORIZONTAL" if width * aspect_x >= height * aspect_y else "VERTICAL"
    sensor = sensor_height if sensor_fit == "VERTICAL" else sensor_width
    ycor = aspect_y / aspect_x
    view = width if fit == "HORIZONTAL" else ycor * height

    # 2. Focal length and principal point in pixels (frame units are x pixels; y pixels are ycor taller).
    fx = lens / sensor * view
    fy = fx / ycor
    cx = (width - 1) / 2.0 - float(shift_x) * view
    cy = (height - 1) / 2.0 + float(shift_y) * view / ycor
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    # 3. Extrinsics: flip the camera axes, then invert.
    c2w_cv = rigid_c2w(matrix_world) @ BLENDER_TO_CV
    return PinholeCamera(K, np.linalg.inv(c2w_cv), width, height)


def project(K, w2c, points) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates [N,2] and depths [N] (along +z) of world points [N,3]."""
    pts = np.asarray(points, dtype=np.float64)
    cam = pts @ np.asarray(w2c)[:3, :3].T + np.asarray(w2c)[:3, 3]
    uvw = cam @ np.asarray(K).T
    return uvw[:, :2] / uvw[:, 2:3], cam[:, 2]


def reframe_intrinsics(
    K,  # [3,3] intrinsics of the render frame
    frame_size: tuple[int, int],  # (W, H) of the render frame, pixels
    image_size: tuple[int, int],  # (W, H) of the image shown in that frame, pixels
    method: str = "STRETCH",  # Blender's camera background image frame_method
    pixel_aspect: float = 1.0,  # pixel_aspect_y / pixel_aspect_x of the render frame
) -> np.ndarray:
    """K for an image that a camera background image shows in the render frame (centred, no offset).

    STRETCH maps the image onto the frame; FIT and CROP scale it uniformly (square image pixels against
    the frame as displayed) to fit inside or to cover the frame. Works on pixel edges: edge = centre + 0.5.
    """
    if method not in FRAME_METHODS:
        raise CameraError(f"frame_method must be one of {FRAME_METHODS}, got {method!r}")
    frame_w, frame_h = (float(v) for v in frame_size)
    image_w, image_h = (float(v) for v in image_size)
    if min(frame_w, frame_h, image_w, image_h) <= 0:
        raise CameraError(f"frame size {frame_size} and image size {image_size} must be positive")
    if method == "STRETCH":
        sx, sy = frame_w / image_w, frame_h / image_h  # frame pixels per image pixel
        ox = oy = 0.0
    else:
        # displayed units: one frame x pixel is 1 wide, one frame y pixel is pixel_aspect high
        scale = (min if method == "FIT" else max)(frame_w / image_w, frame_h * pixel_aspect / image_h)
        sx, sy = scale, scale / pixel_aspect
        ox, oy = (frame_w - image_w * sx) / 2.0, (frame_h - image_h * sy) / 2.0
    # frame_edge = o + s * image_edge  =>  image_edge = (frame_edge - o) / s
    A = np.array([[1.0 / sx, 0.0, -ox / sx], [0.0, 1.0 / sy, -oy / sy], [0.0, 0.0, 1.0]])
    to_edge = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    to_centre = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    return to_centre @ A @ to_edge @ _matrix(K, (3, 3), "K")


# ---------------------------------------------------------------------------------------------
# Camera-to-world helpers (nerfstudio transforms.json)


def c2w_blender_to_cv(c2w_blender) -> np.ndarray:
    """[4,4] camera-to-world with Blender camera axes -> with OpenCV camera axes."""
    return _matrix(c2w_blender, (4, 4), "c2w_blender") @ BLENDER_TO_CV


def c2w_cv_to_blender(c2w_cv) -> np.ndarray:
    """[4,4] camera-to-world with OpenCV camera axes -> Blender camera axes (a `matrix_world`)."""
    return _matrix(c2w_cv, (4, 4), "c2w_cv") @ BLENDER_TO_CV


def transform_matrix_from_w2c(w2c) -> np.ndarray:
    """nerfstudio `transform_matrix` (Blender camera matrix_world) of an OpenCV world-to-camera."""
    return c2w_cv_to_blender(np.linalg.inv(_matrix(w2c, (4, 4), "w2c")))


def w2c_from_transform_matrix(transform_matrix) -> np.ndarray:
    """OpenCV world-to-camera of a nerfstudio `transform_matrix` (rotation columns normalised)."""
    return np.linalg.inv(rigid_c2w(transform_matrix) @ BLENDER_TO_CV)


def nerfstudio_frame(camera: PinholeCamera) -> dict:
    """Per-frame intrinsics and transform_matrix for transforms.json."""
    K = _matrix(camera.K, (3, 3), "K")
    return {
        "fl_x": float(K[0, 0]),
        "fl_y": float(K[1, 1]),
        "cx": float(K[0, 2]) + 0.5,
        "cy": float(K[1, 2]) + 0.5,
        "w": int(camera.width),
        "h": int(camera.height),
        "transform_matrix": transform_matrix_from_w2c(camera.w2c).tolist(),
    }


def camera_from_nerfstudio(frame: dict, defaults: dict | None = None) -> PinholeCamera:
    """PinholeCamera of a transforms.json frame; intrinsics missing from the frame come from `defaults`."""
    merged = {**(defaults or {}), **frame}
    for key in ("fl_x", "fl_y", "cx", "cy", "w", "h", "transform_matrix"):
        if key not in merged:
            raise CameraError(f"transforms.json frame lacks {key!r} (and no top-level default)")
    K = np.array(
        [
            [_positive(merged["fl_x"], "fl_x"), 0.0, float(merged["cx"]) - 0.5],
            [0.0, _positive(merged["fl_y"], "fl_y"), float(merged["cy"]) - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )
    return PinholeCamera(K, w2c_from_transform_matrix(merged["transform_matrix"]), int(merged["w"]), int(merged["h"]))


def cv_to_blender(camera: PinholeCamera, sensor_width: float = 36.0) -> dict:
    """Blender camera settings that render `camera` exactly (HORIZONTAL fit; fy != fx via pixel aspect).

    Returns matrix_world, lens, sensor_width, sensor_fit, shift_x, shift_y, resolution_x, resolution_y,
    pixel_aspect_x, pixel_aspect_y; the inverse of blender_to_cv at 100 %.
    """
    K = _matrix(camera.K, (3, 3), "K")
    if abs(K[0, 1]) > 1e-9:
        raise CameraError(f"K has skew {K[0, 1]!r}; Blender cameras have none")
    width, height = int(camera.width), int(camera.height)
    fx, fy = _positive(K[0, 0], "K[0,0]"), _positive(K[1, 1], "K[1,1]")
    ycor = fx / fy
    # Blender's pixel aspect keeps both values >= 1
    aspect_x, aspect_y = (1.0, ycor) if ycor >= 1.0 else (1.0 / ycor, 1.0)
    return {
        "matrix_world": c2w_cv_to_blender(np.linalg.inv(_matrix(camera.w2c, (4, 4), "w2c"))),
        "lens": fx * sensor_width / width,
        "sensor_width": sensor_width,
        "sensor_fit": "HORIZONTAL",
        "shift_x": ((width - 1) / 2.0 - K[0, 2]) / width,
        "shift_y": (K[1, 2] - (height - 1) / 2.0) * ycor / width,
        "resolution_x": width,
        "resolution_y": height,
        "pixel_aspect_x": aspect_x,
        "pixel_aspect_y": aspect_y,
    }
