"""The pipeline registry. Each pipeline module is imported on first use: the server front validates configs
with it, and a backend that lacks a pipeline's packages (torch, say) still serves the others and says why."""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from ...protocol.errors import UnknownPipeline
from ..config import config_from_dict


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    config_cls: type
    run: Callable[..., Any]

    def build_config(self, data: Any) -> Any:
        return config_from_dict(self.config_cls, data, "config")


@dataclass(frozen=True)
class _Entry:
    module: str
    config: str
    requires: tuple[str, ...] = ()


_ENTRIES: dict[str, _Entry] = {
    "inspect": _Entry("inspect", "InspectConfig"),
    "selftest": _Entry("selftest", "SelftestConfig"),
    "tire": _Entry("tire", "TireConfig", ("torch", "trimesh", "cv2", "PIL")),
    "customize": _Entry("customize", "CustomizeConfig", ("torch", "trimesh", "cv2", "PIL", "diffusers", "transformers", "peft")),
    "video": _Entry("video", "VideoConfig", ("torch", "PIL", "diffusers", "transformers", "peft", "av")),
}
PIPELINES = tuple(_ENTRIES)


def missing_requirements(name: str) -> list[str]:
    """Packages the pipeline needs that this interpreter lacks (checked without importing them)."""
    return [m for m in _ENTRIES[name].requires if importlib.util.find_spec(m) is None]


def available() -> list[str]:
    return [n for n in _ENTRIES if not missing_requirements(n)]


def get_pipeline(name: Any) -> PipelineSpec:
    entry = _ENTRIES.get(name) if isinstance(name, str) else None
    if entry is None:
        raise UnknownPipeline(f"no pipeline {name!r:.80}; available: {available()}", field="pipeline")
    missing = missing_requirements(name)
    if missing:
        raise UnknownPipeline(f"pipeline {name!r} needs {missing}, which this backend's Python lacks "
                              "(install the backend extra: pip install 'likeness3d[backend]')", field="pipeline")
    mod = importlib.import_module(f"{__name__}.{entry.module}")
    return PipelineSpec(name, mod.DESCRIPTION, getattr(mod, entry.config), mod.run)
