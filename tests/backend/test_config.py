"""Configs from the wire: defaults, nested dataclasses, loud failures naming the dotted key."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from likeness3d.backend.config import config_from_dict, config_to_dict
from likeness3d.protocol.errors import BadMessage


@dataclass(frozen=True)
class Inner:
    strength: float = 0.3
    rings: tuple[float, ...] = (20.0, 90.0, 180.0)


@dataclass(frozen=True)
class Outer:
    steps: int = 10
    mode: Literal["lora", "full"] = "lora"
    inner: Inner = field(default_factory=Inner)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")


def test_defaults_and_nesting():
    cfg = config_from_dict(Outer, {"inner": {"strength": 1, "rings": [10, 20]}})
    assert cfg == Outer(inner=Inner(strength=1.0, rings=(10.0, 20.0)))
    assert config_from_dict(Outer, config_to_dict(cfg)) == cfg


@pytest.mark.parametrize(
    "data,field,match",
    [
        ({"nope": 1}, "config.nope", "unknown key 'nope'"),
        ({"inner": {"x": 1}}, "config.inner.x", "unknown key 'x'"),
        ({"steps": "3"}, "config.steps", "must be int"),
        ({"steps": True}, "config.steps", "must be int"),
        ({"mode": "half"}, "config.mode", "one of"),
        ({"inner": {"strength": float("nan")}}, "config.inner.strength", "must be float"),
        ({"inner": {"rings": "abc"}}, "config.inner.rings", "must be a list"),
        ({"steps": 0}, "config", "steps must be >= 1"),
    ],
)
def test_failures_name_the_key(data, field, match):
    with pytest.raises(BadMessage, match=match) as e:
        config_from_dict(Outer, data)
    assert e.value.field == field
