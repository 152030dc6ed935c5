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
    # TIRE: DRAFT is the backend's `fast` preset (minutes on a CPU); STANDARD the authors' 24 x 2 views at 512 px
    "tire": {
        "DRAFT": {"resolution": 96, "azimuths": 12, "elevations_deg": [0.0, 30.0], "gaussians": 2500,
                  "fit_resolution": 64, "fit_steps": 150, "lora_steps": 100, "turntable_views": 6},
        "STANDARD": {},
        "HIGH": {"fit_steps": 6000, "gaussians": 200000, "lora_steps": 800, "consistency_rounds": 2},
    },
    # Customize-It-3D: DRAFT is the backend's `fast` preset; STANDARD the authors' settings at 512 px
    "customize": {
        "DRAFT": {"resolution": 128, "dreambooth_resolution": 256, "dreambooth_steps": [5, 10, 10, 15],
                  "coarse_steps": 150, "coarse_resolution": 64, "gaussians": 5000, "sds_resolution": 256,
                  "points": 30000, "refine_steps": 200, "refine_lr": 0.01, "bake_azimuths": 8, "turntable_views": 6},
        "STANDARD": {},
        "HIGH": {"coarse_steps": 2000, "refine_steps": 5000, "bake_azimuths": 24},
    },
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
