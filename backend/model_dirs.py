"""Where models come from: local folders only (diffusers layout). Nothing here downloads anything."""

from __future__ import annotations

import os
from pathlib import Path


ENV = "LIKENESS3D_MODELS"
TINY = "tiny"
"""`--models tiny`: tiny random-weight models built in code (a smoke test whose output is noise)."""


def configured_models(explicit: str | Path | None = None) -> str | None:
    """The one lookup of the models setting: `--models` / a config's `models` when given, else
    $LIKENESS3D_MODELS, else None (no diffusion weights configured). A folder, or "tiny"."""
    value = str(explicit) if explicit not in (None, "") else os.environ.get(ENV, "")
    return value or None


def models_dir(explicit: str | Path | None = None) -> Path | None:
    """The models folder `configured_models` names, resolved (None when none is configured; "tiny" is no folder)."""
    value = configured_models(explicit)
    return Path(value).expanduser().resolve() if value and value != TINY else None


def models_found(root: Path | None) -> dict:
    """For `hello`: the folder searched and the model folders (diffusers layout) found in it."""
    if root is None:
        return {"dir": None, "found": []}
    found = []
    if root.is_dir():
        found = sorted(p.name for p in root.iterdir() if (p / "model_index.json").is_file() or (p / "config.json").is_file())
    return {"dir": str(root), "found": found}
