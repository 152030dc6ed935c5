"""Quality presets: for each pipeline, the config each preset sends (merged under the user's extra settings).

A pipeline missing here runs its own defaults (the paper's) for every preset; each pipeline's issue adds
its presets here. Keys must be fields of the pipeline's config: the backend rejects unknown keys."""

from __future__ import annotations

import json

QUALITY_ITEMS = [
    ("DRAFT", "Draft", "Fast, for checking the setup"),
    ("STANDARD", "Standard", "The pipeline's defaults"),
    ("HIGH", "High", "Slower, for the final asset"),
]

PRESETS: dict[str, dict[str, dict]] = {
    "inspect": {"DRAFT": {"overlay_points": 2000}, "STANDARD": {}, "HIGH": {"overlay_points": 200000}},
    "selftest": {"DRAFT": {"steps": 3}, "STANDARD": {}, "HIGH": {"steps": 30}},
}


class ConfigError(ValueError):
    """Extra settings that are not a JSON object; the message quotes the text."""


def build_config(pipeline: str, quality: str, extra_json: str = "") -> dict:
    config = dict(PRESETS.get(pipeline, {}).get(quality, {}))
    if extra_json.strip():
        try:
            extra = json.loads(extra_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"extra settings are not valid JSON ({exc.msg} at column {exc.colno}): {extra_json!r}") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"extra settings must be a JSON object, got {extra_json!r}")
        config.update(extra)
    return config
