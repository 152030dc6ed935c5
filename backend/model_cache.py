"""Models a worker keeps loaded between jobs (keyed by role, folder and dtype), dropped by `release`."""

from __future__ import annotations

import threading
from typing import Any, Callable, Hashable

_cache: dict[Hashable, Any] = {}
_lock = threading.Lock()


def get_or_load(key: Hashable, load: Callable[[], Any]) -> Any:
    """The cached object for `key`, loading it once."""
    with _lock:
        if key not in _cache:
            _cache[key] = load()
        return _cache[key]


def clear() -> int:
    """Forget every cached model; returns how many were dropped."""
    with _lock:
        n = len(_cache)
        _cache.clear()
        return n
