"""Contact sheets (PNG, with PIL): a before | after turntable, and reference | render pairs."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

LABEL_WIDTH = 64
"""Pixels left of each row for its label (more when a label is longer)."""


def to_uint8_rgb(images, background: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """[V, H, W, 3|4] uint8 or float in [0, 1] (tensor or array) -> [V, H, W, 3] uint8, RGBA over `background`."""
    a = images.detach().cpu().numpy() if hasattr(images, "detach") else np.asarray(images)
    if a.ndim != 4 or a.shape[-1] not in (3, 4):
        raise ValueError(f"images must have shape [V, H, W, 3|4], got {a.shape}")
    a = a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else np.clip(a.astype(np.float32), 0.0, 1.0)
    if a.shape[-1] == 4:
        a = a[..., :3] * a[..., 3:] + np.asarray(background, np.float32) * (1.0 - a[..., 3:])
    return np.round(a * 255).astype(np.uint8)


def grid_sheet(
    rows: Sequence,
    labels: Sequence[str],
    path: str | Path | None = None,
    gap: int = 2,
    background: tuple[int, int, int] = (255, 255, 255),
) -> bytes:
    """PNG bytes of image rows, one label per row: rows[i] is [V_i, H, W, 3|4] (all of one H, W).

    Writes to `path` too when given.
    """
    from PIL import Image, ImageDraw

    if len(rows) != len(labels) or not rows:
        raise ValueError(f"rows and labels must be non-empty and of one length, got {len(rows)} and {len(labels)}")
    rows = [to_uint8_rgb(r) for r in rows]
    sizes = {r.shape[1:3] for r in rows}
    if len(sizes) != 1:
        raise ValueError(f"every image must have one size, got {sorted(sizes)}")
    h, w = sizes.pop()
    cols = max(len(r) for r in rows)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    label_w = max([LABEL_WIDTH] + [int(measure.textlength(str(t))) + 8 for t in labels])
    sheet = Image.new("RGB", (label_w + cols * (w + gap), len(rows) * (h + gap)), background)
    draw = ImageDraw.Draw(sheet)
    for i, (row, label) in enumerate(zip(rows, labels)):
        y = i * (h + gap)
        draw.text((4, y + h // 2 - 6), str(label), fill=(0, 0, 0))
        for j, img in enumerate(row):
            sheet.paste(Image.fromarray(img, mode="RGB"), (label_w + j * (w + gap), y))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    data = buf.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data


def turntable_sheet(before, after, path: str | Path | None = None,
                    labels: tuple[str, str] = ("before", "after")) -> bytes:
    """Before | after turntable: two rows of V views ([V, H, W, 3|4] each, same V, H, W) as PNG bytes."""
    b, a = to_uint8_rgb(before), to_uint8_rgb(after)
    if b.shape != a.shape:
        raise ValueError(f"before and after must have one shape, got {b.shape} and {a.shape}")
    return grid_sheet([b, a], list(labels), path)
