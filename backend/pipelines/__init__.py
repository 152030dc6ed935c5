"""The pipeline registry. Pipeline modules import nothing heavy at module level (the server front imports
them to validate configs); torch and friends are imported inside `run` through the stages."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ...protocol.errors import UnknownPipeline
from ..config import config_from_dict
from . import inspect, selftest


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    config_cls: type
    run: Callable[..., None]

    def build_config(self, data: Any) -> Any:
        return config_from_dict(self.config_cls, data, "config")


PIPELINES: dict[str, PipelineSpec] = {
    spec.name: spec
    for spec in (
        PipelineSpec("inspect", inspect.DESCRIPTION, inspect.InspectConfig, inspect.run),
        PipelineSpec("selftest", selftest.DESCRIPTION, selftest.SelftestConfig, selftest.run),
    )
}


def get_pipeline(name: Any) -> PipelineSpec:
    spec = PIPELINES.get(name) if isinstance(name, str) else None
    if spec is None:
        raise UnknownPipeline(f"no pipeline {name!r:.80}; available: {sorted(PIPELINES)}", field="pipeline")
    return spec
