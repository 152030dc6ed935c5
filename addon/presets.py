"""Quality presets: for each pipeline, the config each preset sends (merged under the user's extra settings).

A pipeline missing here runs its own defaults (the paper's) for every preset. Configs are trees in the shape
of the pipeline's config (`{"fit": {"steps": 150}}`); the extra settings merge into them key by key, and a
dotted key there (`"fit.steps": 3000`) reaches into the tree. Keys must be fields of the pipeline's config:
the backend rejects unknown keys, naming them."""

from __future__ import annotations

import json

from ..protocol.config_maps import dotted, merge_config

QUALITY_ITEMS = [
    ("AUTO", "Auto", "Draft on a backend without a GPU (the full settings would run for hours there), Standard on one with GPUs"),
    ("DRAFT", "Draft", "Fast, for checking the setup"),
    ("STANDARD", "Standard", "The pipeline's defaults"),
    ("HIGH", "High", "Slower, for the final asset"),
]

PRESETS: dict[str, dict[str, dict]] = {
    "inspect": {"DRAFT": {"overlay_points": 2000}, "STANDARD": {}, "HIGH": {"overlay_points": 200000}},
    "selftest": {"DRAFT": {"steps": 3}, "STANDARD": {}, "HIGH": {"steps": 30}},
    # TIRE: DRAFT is the backend's `fast` preset (minutes on a CPU); STANDARD the authors' 24 x 2 views at 512 px
    "tire": {
        "DRAFT": {"resolution": 96, "azimuths": 12, "elevations_deg": [0.0, 30.0], "turntable_views": 6,
                  "lora": {"steps": 100}, "resplat": {"gaussians": 2500, "fit_resolution": 64},
                  "fit": {"steps": 150, "refine_start": 37}},
        "STANDARD": {},
        "HIGH": {"fit": {"steps": 6000}, "resplat": {"gaussians": 200000, "rounds": 2}, "lora": {"steps": 800}},
    },
    # Customize-It-3D: DRAFT is the backend's `fast` preset; STANDARD the authors' settings at 512 px
    "customize": {
        "DRAFT": {"resolution": 64, "dreambooth": {"resolution": 64, "steps": [1, 1, 1, 3]},
                  "coarse": {"steps": 12, "resolution": 32, "gaussians": 1000}, "sds": {"resolution": 64},
                  "refine": {"points": 2000, "steps": 16, "learning_rate": 0.01}, "bake_azimuths": 4,
                  "turntable_views": 4},
        "STANDARD": {},
        "HIGH": {"coarse": {"steps": 2000}, "refine": {"steps": 5000}, "bake_azimuths": 24},
    },
    # subject videos: frames and size come from the Subject Video panel; DRAFT trains half and denoises half
    "video": {"DRAFT": {"views": {"size": 256}, "dreambooth": {"steps": 200}, "generate": {"steps": 25}},
              "STANDARD": {}, "HIGH": {"dreambooth": {"steps": 800}}},
}


def effective_quality(quality: str, backend_has_gpu: bool | None) -> str:
    """The preset a job gets: AUTO is DRAFT on a backend without a GPU, else STANDARD (also before the
    backend has said what it has)."""
    if quality != "AUTO":
        return quality
    return "DRAFT" if backend_has_gpu is False else "STANDARD"


class ConfigError(ValueError):
    """Extra settings that are not a JSON object; the message quotes the text."""


def build_config(pipeline: str, quality: str, extra_json: str = "", backend_has_gpu: bool | None = None) -> dict:
    quality = effective_quality(quality, backend_has_gpu)
    config = merge_config({}, PRESETS.get(pipeline, {}).get(quality, {}))
    if extra_json.strip():
        try:
            extra = json.loads(extra_json)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"extra settings are not valid JSON ({exc.msg} at column {exc.colno}): {extra_json!r}") from None
        if not isinstance(extra, dict):
            raise ConfigError(f"extra settings must be a JSON object, got {extra_json!r}")
        for key, value in extra.items():
            config = merge_config(config, dotted(key, value) if "." in key else {key: value})
    return config
