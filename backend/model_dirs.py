"""Where models come from: local folders only (diffusers layout). Nothing here downloads anything."""

from __future__ import annotations

import os
from pathlib import Path


def models_dir(explicit: str | Path | None = None) -> Path | None:
    """`--models DIR`, else $LIKENESS3D_MODELS, else None (no diffusion weights configured)."""
    value = explicit or os.environ.get("LIKENESS3D_MODELS")
    return Path(value).expanduser().resolve() if value else None


def models_found(root: Path | None) -> dict:
    """For `hello`: the folder searched and the model folders (diffusers layout) found in it."""
    if root is None:
        return {"dir": None, "found": []}
    found = []
    if root.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "model_index.json").is_file() or (p / "config.json").is_file())
    return {"dir": str(root), "found": found}
