"""Models a worker keeps loaded between jobs, dropped by `release`.

Caching is on in worker processes only (`workers.worker_main` calls `enable()`): a worker lives for many
jobs, so a job that asks for a model an earlier job loaded gets the loaded modules instead of reading
gigabytes from disk again. Everywhere else (`likeness3d refine` and the demo, one job per process; tests;
scripts) it is off and `get_or_load` simply loads: a second job in the same process never comes, and a
library caller keeps the contract that every load returns fresh modules it may change at will.
`LIKENESS3D_MODEL_CACHE=0` in a server's environment turns it off in its workers too (a cached SD-2-sized
model holds about 2.6 GB of GPU memory between jobs).

The life of an entry (keys and values are the caller's; `components.load_components` is the one user):

- the first `get_or_load(key, load, restore)` loads it, keeps it and hands it out;
- within one job a second request for a key already handed out gets a fresh, uncached load, as without a
  cache: the first user may be changing its modules (training an adapter into them);
- at the end of every job, whatever its outcome, `end_job` (called by the worker) runs each entry's
  `restore`, which brings the value back to the state it was loaded in (adapters out, frozen, eval mode);
  an entry whose `restore` says it cannot (its weights changed) or raises is dropped;
- on a hit `restore` runs again before the value is handed out, so a value is never handed out changed;
- `drop_if` forgets the entries a job is about to change for good (`components.weights_changed`);
- `clear` (the worker's `release`) forgets every entry and says how many.

The cache holds the only long-lived reference: once dropped and no job holds a value, it is freed.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Hashable

ENV = "LIKENESS3D_MODEL_CACHE"
"""Set to 0 (or false/no/off) to keep workers from caching models."""


@dataclass
class _Entry:
    value: Any
    restore: Callable[[Any], bool] | None


@dataclass(frozen=True)
class Use:
    """One `get_or_load` call of the current job, for the job's log."""

    key: Hashable
    outcome: str
    """`loaded` (and kept), `reused` (a hit), `loaded, not kept` (the key was in use by this job)."""
    seconds: float


_enabled = False
_cache: dict[Hashable, _Entry] = {}
_in_use: set[Hashable] = set()
_uses: list[Use] = []
_lock = threading.RLock()


def enable(on: bool = True) -> bool:
    """Turn caching on (a worker at start-up) or off (which drops everything); `$LIKENESS3D_MODEL_CACHE=0`
    keeps it off. Returns whether it is on."""
    global _enabled
    with _lock:
        _enabled = bool(on) and os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")
        if not _enabled:
            _cache.clear()
            _in_use.clear()
            _uses.clear()
        return _enabled


def enabled() -> bool:
    return _enabled


def get_or_load(key: Hashable, load: Callable[[], Any], restore: Callable[[Any], bool] | None = None) -> tuple[Any, bool]:
    """(value, hit): the cached value for `key`, or `load()` kept for later jobs.

    `restore(value)` brings a cached value back to the state `load` gave it, returning False when it cannot
    (the entry is then dropped and loaded again). A `load` that raises leaves nothing cached.
    """
    if not _enabled:
        return load(), False
    start = time.perf_counter()
    with _lock:
        if key in _in_use:
            value = load()
            _uses.append(Use(key, "loaded, not kept", time.perf_counter() - start))
            return value, False
        entry = _cache.get(key)
        if entry is not None and entry.restore is not None and not _restored(key, entry):
            entry = None
        hit = entry is not None
        if entry is None:
            entry = _Entry(load(), restore)
            _cache[key] = entry
        _in_use.add(key)
        _uses.append(Use(key, "reused" if hit else "loaded", time.perf_counter() - start))
        return entry.value, hit


def _restored(key: Hashable, entry: _Entry) -> bool:
    """Run the entry's restore; on False or an error the entry is dropped."""
    try:
        ok = bool(entry.restore(entry.value))
    except Exception:  # a value that cannot be restored is not handed out again
        ok = False
    if not ok:
        _cache.pop(key, None)
    return ok


def drop_if(match: Callable[[Any], bool]) -> int:
    """Forget every cached value for which `match(value)` is true; returns how many."""
    with _lock:
        gone = [k for k, e in _cache.items() if match(e.value)]
        for k in gone:
            del _cache[k]
        return len(gone)


def end_job() -> list[Use]:
    """A job ended: restore every cached value (dropping those that cannot be), forget what was in use, and
    return the job's `get_or_load` calls."""
    with _lock:
        for key, entry in list(_cache.items()):
            if entry.restore is not None:
                _restored(key, entry)
        _in_use.clear()
        uses = list(_uses)
        _uses.clear()
        return uses


def cached() -> list[Hashable]:
    """The keys cached now."""
    with _lock:
        return list(_cache)


def clear() -> int:
    """Forget every cached model; returns how many were dropped."""
    with _lock:
        n = len(_cache)
        _cache.clear()
        return n
