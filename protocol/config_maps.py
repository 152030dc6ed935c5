"""Config maps as the wire carries them: nested maps in the shape of a pipeline's config tree. Shared by the
command line (`--set fit.steps=3000`), the add-on (presets under the artist's extra settings) and the backend."""

from __future__ import annotations

from typing import Any


def merge_config(base: dict, override: dict) -> dict:
    """`override` laid over `base`, maps merged key by key (a preset under the user's settings)."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def dotted(key: str, value: Any) -> dict:
    """`dotted("fit.steps", 3000) == {"fit": {"steps": 3000}}` (the command line's --set KEY=VALUE)."""
    *parents, leaf = key.split(".")
    node: dict = {leaf: value}
    for p in reversed(parents):
        node = {p: node}
    return node
