"""Typed configs: a map from the wire is rebuilt into a tree of frozen dataclasses, an unknown key or a wrong type
fails loudly with the key's dotted path and the value, and every config checks its ranges with `require`.

A pipeline config holds its stages' configs (`TireConfig.fit` is a `FitConfig`), so the map has the shape of
the tree: `{"fit": {"steps": 3000}}`, or `fit.steps=3000` on the command line. A config class may declare
`RENAMED = {"fit_steps": "fit.steps"}`: keys users passed before the tree existed are moved to their new
place (with an optional conversion of the value), so old presets and scripts keep working.

Nothing here imports torch: the server front validates configs with it."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from ..protocol.config_maps import dotted, merge_config  # noqa: F401  (re-exported: one place for both sides)
from ..protocol.errors import BadMessage


class ConfigError(ValueError):
    """A config field whose value breaks its rule; raised by `require` in a config's __post_init__."""

    def __init__(self, owner: str, field: str, rule: str, value: Any):
        self.field, self.rule, self.value = field, rule, value
        super().__init__(f"{owner}.{field} {rule}, got {value!r:.120}")


def require(config: Any, *rules: tuple[bool, str, str]) -> None:
    """Check a config's fields: each rule is (holds, field name, what the field must be), e.g.
    `(self.steps >= 1, "steps", "must be >= 1")`. The first rule that fails raises `ConfigError` naming the
    field, the rule and the value."""
    for ok, field, rule in rules:
        if not ok:
            raise ConfigError(type(config).__name__, field, rule, getattr(config, field, None))


def whole(v: Any, lo: float | None = None, hi: float | None = None) -> bool:
    """`v` is an int (not a bool) within [lo, hi]."""
    return isinstance(v, int) and not isinstance(v, bool) and (lo is None or v >= lo) and (hi is None or v <= hi)


def number(v: Any, lo: float | None = None, hi: float | None = None) -> bool:
    """`v` is a finite real number (not a bool) within [lo, hi]."""
    return (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
            and (lo is None or v >= lo) and (hi is None or v <= hi))


def config_from_dict(cls: type, data: Any, where: str = "config", base: Any = None) -> Any:
    """Build dataclass `cls` from a (possibly nested) map; what is absent comes from `base` (an instance of
    `cls`), else from the class defaults. A nested config starts from its parent's default for that field, so
    `{"fit": {"steps": 3000}}` keeps the rest of `TireConfig.fit`'s own defaults."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadMessage(f"{where} must be a map, got {type(data).__name__}", field=where)
    data = _move_renamed(cls, data, where)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise BadMessage(f"{where}: unknown key {unknown[0]!r:.80}; known keys: {sorted(fields)}",
                         field=f"{where}.{str(unknown[0])[:80]}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        default = getattr(base, name) if base is not None else _field_default(fields[name])
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}", default)
    try:
        return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)
    except ConfigError as exc:
        raise BadMessage(f"{where}.{exc.field} {exc.rule}, got {exc.value!r:.80}", field=f"{where}.{exc.field}") from None
    except (ValueError, TypeError) as exc:  # other __post_init__ checks
        raise BadMessage(f"{where}: {exc}", field=where) from None


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def canonical(cls: type, data: dict, where: str = "config") -> dict:
    """`data` with the old flat names of `cls.RENAMED` moved to their place in the tree, so that it can be merged
    key by key with a preset written in the tree's names (`merge_config`)."""
    return _move_renamed(cls, data, where)


def _move_renamed(cls: type, data: dict, where: str) -> dict:
    """Keys of `cls.RENAMED` moved to their dotted place in the tree (a value converted on the way when the
    entry is (path, convert)); a key given both ways is an error naming both."""
    renamed = getattr(cls, "RENAMED", None)
    if not renamed or not any(k in renamed for k in data):
        return data
    out = {k: v for k, v in data.items() if k not in renamed}
    for old, value in data.items():
        if old not in renamed:
            continue
        entry = renamed[old]
        path, convert = entry if isinstance(entry, tuple) else (entry, None)
        node = out
        *parents, leaf = path.split(".")
        for p in parents:
            child = node.get(p, {})
            if not isinstance(child, dict):
                raise BadMessage(f"{where}.{p} must be a map, got {type(child).__name__}", field=f"{where}.{p}")
            node[p] = child = dict(child)
            node = child
        if leaf in node:
            raise BadMessage(f"{where}: {old!r} is the old name of {path!r}, which is given too (a quality preset may "
                             f"set it): write the setting as {path!r}", field=f"{where}.{old}")
        node[leaf] = convert(value) if convert is not None else value
    return out


def config_to_dict(obj: Any) -> dict:
    """The wire/JSON form of a config dataclass (tuples become lists)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return config_to_dict(v)
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def _coerce(value: Any, hint: Any, where: str, default: Any = None) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where, default)
    if origin is typing.Literal:
        if value not in args:
            raise BadMessage(f"{where} must be one of {list(args)}, got {value!r:.80}", field=where)
        return value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where, default if isinstance(default, hint) else None)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise BadMessage(f"{where} must be a list, got {type(value).__name__} {value!r:.80}", field=where)
        item = args[0] if args else Any
        if len(args) == 2 and args[1] is Ellipsis or len(args) <= 1:
            return tuple(_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise BadMessage(f"{where} must have {len(args)} items, got {len(value)}", field=where)
        return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if hint is Any:
        return value
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise BadMessage(f"{where} must be {getattr(hint, '__name__', hint)}, got {type(value).__name__} {value!r:.80}", field=where)
    return value
