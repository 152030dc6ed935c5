"""Typed configs from the wire: a map is rebuilt into a frozen dataclass, and an unknown key or a wrong type
fails loudly with the key's dotted path and the value."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any

from ..protocol.errors import BadMessage


def config_from_dict(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass `cls` from a (possibly nested) map; defaults fill what is absent."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise BadMessage(f"{where} must be a map, got {type(data).__name__}", field=where)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        raise BadMessage(f"{where}: unknown key {unknown[0]!r}; known keys: {sorted(fields)}", field=f"{where}.{unknown[0]}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:  # __post_init__ range checks
        raise BadMessage(f"{where}: {exc}", field=where) from None


def config_to_dict(obj: Any) -> dict:
    """The wire/JSON form of a config dataclass (tuples become lists)."""
    return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


def _plain(v: Any) -> Any:
    if dataclasses.is_dataclass(v):
        return config_to_dict(v)
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    return v


def _coerce(value: Any, hint: Any, where: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is typing.Literal:
        if value not in args:
            raise BadMessage(f"{where} must be one of {list(args)}, got {value!r:.80}", field=where)
        return value
    if dataclasses.is_dataclass(hint):
        return config_from_dict(hint, value, where)
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
