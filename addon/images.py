"""Blender images <-> numpy RGBA arrays (rows top-down, as the wire wants them), through foreach_get/set."""

from __future__ import annotations

import bpy
import numpy as np

# sRGB transfer function (IEC 61966-2-1), for float images stored in scene-linear
_LINEAR_SPACES = {"Linear", "Linear Rec.709", "Linear CIE-XYZ E", "Linear CIE-XYZ D65", "Linear Rec.2020", "ACEScg"}


class ImageError(ValueError):
    """An image that cannot be read; the message names the image and the reason."""


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def image_to_array(image: bpy.types.Image, field: str = "image") -> np.ndarray:
    """[H, W, 4] RGBA, rows top-down: uint8 for byte images; float32 sRGB in [0, 1] for float images."""
    width, height = image.size  # reading the size loads the image from its file or packed data
    if width == 0 or height == 0:
        raise ImageError(f"{field}: image {image.name!r} has no pixels (file {image.filepath!r} missing or unreadable)")
    channels = image.channels
    buf = np.empty(width * height * channels, dtype=np.float32)
    image.pixels.foreach_get(buf)
    px = buf.reshape(height, width, channels)[::-1]  # Blender stores rows bottom-up
    if channels != 4:
        rgba = np.ones((height, width, 4), np.float32)
        rgba[..., : min(channels, 3)] = px[..., :3]
        if channels == 1:
            rgba[..., 1:3] = px[..., :1]
        px = rgba
    if not image.is_float:
        return np.ascontiguousarray(np.round(np.clip(px, 0.0, 1.0) * 255.0).astype(np.uint8))
    out = np.ascontiguousarray(px, dtype=np.float32)
    if image.colorspace_settings.name in _LINEAR_SPACES:
        out[..., :3] = _linear_to_srgb(out[..., :3])
    return np.clip(out, 0.0, 1.0, out=out)  # the wire wants float images in [0, 1]


def array_to_image(name: str, rgba: np.ndarray, pack: bool = True) -> bpy.types.Image:
    """A new byte image (sRGB) holding [H, W, 4] RGBA (uint8, or float in [0, 1]), packed into the .blend."""
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ImageError(f"{name}: expected an [H, W, 4] RGBA array, got shape {list(rgba.shape)}")
    height, width = rgba.shape[:2]
    image = bpy.data.images.new(name, width, height, alpha=True)
    set_pixels(image, rgba)
    if pack:
        image.pack()  # a generated image is packed as PNG
    return image


def set_pixels(image: bpy.types.Image, rgba: np.ndarray) -> None:
    """Overwrite an image's pixels with [H, W, 4] RGBA rows top-down, resizing it when needed."""
    height, width = rgba.shape[:2]
    if tuple(image.size) != (width, height):
        image.scale(width, height)
    px = rgba[::-1].astype(np.float32)
    if rgba.dtype == np.uint8:
        px *= 1.0 / 255.0
    image.pixels.foreach_set(px.ravel())
    image.update()
