"""What a job may cost in reference pixels: a budget per image (refused with `too_large` before anything is
stored or decoded further), and references downscaled to what the job uses before any heavy work (a 64
megapixel photo for a job that renders 512 px views would otherwise be copied as float32 at every stage).

Numpy and OpenCV only (no torch): the server front, the workers and the CLI call it."""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from ...protocol.assets import Asset, Camera, Reference
from ...protocol.errors import TooLarge

ENV = "LIKENESS3D_MAX_REFERENCE_PIXELS"
MAX_REFERENCE_PIXELS = 64_000_000
"""Default budget of one reference image (width x height); `likeness3d serve --max-reference-megapixels` or
$LIKENESS3D_MAX_REFERENCE_PIXELS change it."""
MIN_KEPT_SIDE = 1024
"""References are never downscaled below this longest side (the bake onto the UVs reads them)."""


def max_reference_pixels() -> int:
    value = os.environ.get(ENV, "")
    return int(value) if value.isdigit() and int(value) > 0 else MAX_REFERENCE_PIXELS


def check_pixel_budget(asset: Asset) -> None:
    """`too_large` naming the first reference over the budget, its size and what to do."""
    budget = max_reference_pixels()
    for i, ref in enumerate(asset.references):
        h, w = ref.image.shape[:2]
        if h * w > budget:
            raise TooLarge(f"references[{i}] ({ref.name!r}) is {w}x{h} = {w * h / 1e6:.1f} megapixels, over this "
                           f"backend's budget of {budget / 1e6:.1f} per image: scale it down (a few megapixels is "
                           "plenty) or ask the operator for --max-reference-megapixels", field=f"references[{i}].image")


def working_side(config) -> int:
    """The longest side a job's references need: twice the largest `resolution` anywhere in its config tree
    (views, DreamBooth, SDS), and at least MIN_KEPT_SIDE."""
    sides = []

    def walk(node, depth=0):
        if depth > 4 or not dataclasses.is_dataclass(node):
            return
        for f in dataclasses.fields(node):
            value = getattr(node, f.name)
            if f.name == "resolution" and isinstance(value, int) and not isinstance(value, bool):
                sides.append(value)
            else:
                walk(value, depth + 1)

    walk(config)
    return max([MIN_KEPT_SIDE] + [2 * s for s in sides])


def downscale_reference(ref: Reference, max_side: int) -> Reference:
    """`ref` with its image shrunk (area filter) so that its longest side is at most `max_side`, and its camera's
    intrinsics scaled to match (pixel centres: c' = (c + 0.5) s - 0.5); unchanged when it is small enough."""
    import cv2

    h, w = ref.image.shape[:2]
    if max(h, w) <= max_side:
        return ref
    s = max_side / max(h, w)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    image = cv2.resize(np.ascontiguousarray(ref.image), (nw, nh), interpolation=cv2.INTER_AREA)
    sx, sy = nw / w, nh / h
    K = ref.camera.K.copy()
    K[0, 0] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return Reference(ref.name, image, Camera(K, ref.camera.w2c, nw, nh), ref.frame)


def fit_references(asset: Asset, config) -> Asset:
    """The asset with every reference no larger than the job uses (see working_side)."""
    side = working_side(config)
    refs = tuple(downscale_reference(r, side) for r in asset.references)
    if all(a is b for a, b in zip(refs, asset.references)):
        return asset
    return dataclasses.replace(asset, references=refs)
