"""Reading the job store back at start: leftovers removed, every job folder checked, damaged ones set aside.

A server must start whatever one job's files say. `scan` walks `<root>/jobs`: leftovers of an interrupted
write (`.*.tmp`, whole or inside a job) are removed; each job folder is checked (spec.json, state.json, its
artifacts when done, its inputs when it would run, its events.log) without following a link out of the store
or blocking on a special file. `quarantine` ends a damaged job as `failed` with an error that names the file
and the reason; the damaged file is kept beside (`state.json.damaged`), never deleted.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .store import ARTIFACT_NAME, JOB_ID, STATES, JobStore, _remove, atomic_write_json

log = logging.getLogger("likeness3d.store")

MAX_JSON_BYTES = 64 << 20
"""A spec or state file larger than this is not read (a damaged or foreign file, not a job's)."""


class Damage(Exception):
    def __init__(self, file: Path, reason: str):
        super().__init__(f"{file}: {reason}")
        self.file, self.reason = Path(file), reason


@dataclass
class Entry:
    """One job folder as found: its spec and state when readable, the last seq it sent, and its damage."""

    job_id: str
    path: Path
    spec: dict | None = None
    state: dict | None = None
    seq: int = 0
    damage: Damage | None = None


def scan(store: JobStore) -> tuple[list[Entry], list[str]]:
    """Every job folder, oldest first, checked; returns them and the leftovers removed."""
    entries: list[Entry] = []
    removed: list[str] = []
    try:
        names = sorted(os.listdir(store.jobs_dir))
    except OSError as exc:
        raise ValueError(f"the job store folder {store.jobs_dir} cannot be read ({exc.strerror}): check its "
                         f"permissions, or give the server another --store") from None
    for name in names:
        path = store.jobs_dir / name
        if name.startswith(".") and name.endswith(".tmp"):
            _remove(path)
            removed.append(name)
        elif not JOB_ID.match(name):
            log.warning("the job store %s: %s is not a job folder; left alone", store.root, path)
        else:
            entries.append(_check(Entry(name, path), removed))
    return entries, removed


def _check(e: Entry, removed: list[str]) -> Entry:
    p = e.path
    try:
        if p.is_symlink():
            raise Damage(p, f"is a symbolic link (to {os.readlink(p)}); the store never follows a link out of it")
        if not p.is_dir():
            raise Damage(p, "is a file where a job folder should be")
        for folder in (p, p / "artifacts"):
            if folder.is_dir() and not folder.is_symlink():
                for leftover in folder.glob(".*.tmp"):
                    _remove(leftover)
                    removed.append(f"{e.job_id}/{leftover.relative_to(p)}")
        e.state = _json_map(p / "state.json")
        _check_state(e.state, p / "state.json")
        e.spec = _json_map(p / "spec.json")
        _check_spec(e.spec, p / "spec.json")
        e.seq = max(e.state.get("seq", 0), _events_seq(p / "events.log"))
        if e.state["state"] == "done":
            _check_artifacts(e.state, p)
        elif e.state["state"] in ("queued", "running"):
            _json_map(p / "inputs" / "asset.json")
            _regular(p / "inputs" / "asset.npz")
    except Damage as d:
        e.damage = d
    except OSError as exc:  # unreadable (permissions), or gone while we looked
        e.damage = Damage(Path(exc.filename or p), f"cannot be read ({exc.strerror or exc})")
    return e


def _regular(path: Path) -> os.stat_result:
    if path.is_symlink():
        raise Damage(path, "is a symbolic link; the store never follows a link out of it")
    if not path.exists():
        raise Damage(path, "is missing")
    if not path.is_file():
        raise Damage(path, "is not a regular file")
    return path.stat()


def _json_map(path: Path) -> dict:
    st = _regular(path)
    if st.st_size > MAX_JSON_BYTES:
        raise Damage(path, f"is {st.st_size} bytes, more than a job file can be ({MAX_JSON_BYTES})")
    data = path.read_bytes()
    if not data.strip():
        raise Damage(path, "is empty")
    try:
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise Damage(path, "is not text (binary data)") from None
    except json.JSONDecodeError as exc:
        raise Damage(path, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise Damage(path, "is nested too deeply to be a job file") from None
    if not isinstance(obj, dict):
        raise Damage(path, f"holds a JSON {_kind(obj)} where a map was expected")
    return obj


def _kind(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    return {dict: "map", list: "list", str: "string", int: "number", float: "number", type(None): "null"}.get(type(v), type(v).__name__)


def _need(obj: dict, key: str, types: tuple, what: str, path: Path) -> Any:
    if key not in obj:
        raise Damage(path, f"has no {key!r}")
    v = obj[key]
    if not isinstance(v, types) or isinstance(v, bool):
        raise Damage(path, f"{key!r} is a {_kind(v)} ({v!r:.60}); expected {what}")
    return v


def _check_spec(spec: dict, path: Path) -> None:
    if not _need(spec, "pipeline", (str,), "a pipeline name", path):
        raise Damage(path, "'pipeline' is empty")
    _need(spec, "created", (int, float), "a time in seconds", path)
    _need(spec, "config", (dict,), "a map of settings", path)


def _check_state(state: dict, path: Path) -> None:
    value = _need(state, "state", (str,), f"one of {sorted(STATES)}", path)
    if value not in STATES:
        raise Damage(path, f"has the unknown state {value!r:.60} (expected one of {sorted(STATES)}); the job is not run again")
    if "seq" in state:
        seq = _need(state, "seq", (int,), "a whole number", path)
        if seq < 0:
            raise Damage(path, f"'seq' is {seq}; expected a whole number >= 0")
    if "artifacts" in state:
        _need(state, "artifacts", (list,), "a list", path)
    if state.get("error") is not None:
        err = _need(state, "error", (dict,), "a map with 'code' and 'message'", path)
        _need(err, "code", (str,), "an error code", path)
        _need(err, "message", (str,), "a message", path)


def _check_artifacts(state: dict, job: Path) -> None:
    path = job / "state.json"
    for i, a in enumerate(state.get("artifacts", [])):
        if not isinstance(a, dict):
            raise Damage(path, f"artifact entry {i} is a {_kind(a)}; expected a map with name, media_type and size")
        name = _need(a, "name", (str,), "an artifact name", path)
        if not ARTIFACT_NAME.match(name):
            raise Damage(path, f"artifact entry {i} has the name {name!r:.60}, which is not an artifact name")
        _need(a, "media_type", (str,), "a media type", path)
        size = _need(a, "size", (int,), "a size in bytes", path)
        file = job / "artifacts" / name
        actual = _regular(file).st_size
        if actual != size:
            raise Damage(file, f"is {actual} bytes; state.json says {size} (a changed or truncated result file)")


def _events_seq(path: Path) -> int:
    """The highest seq in events.log (0 if there is none); a partial last line is a write a crash cut short."""
    if not path.exists() and not path.is_symlink():
        return 0
    _regular(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise Damage(path, "is not text (binary data)") from None
    best = 0
    lines = text.split("\n")
    for i, line in enumerate(lines[:-1], 1):  # the last piece has no newline yet: written in part, if at all
        try:
            rec = json.loads(line)
            seq = rec["seq"]
            if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
                raise TypeError(seq)
        except (ValueError, KeyError, TypeError):
            raise Damage(path, f"line {i} is not an event record ({line!r:.60})") from None
        best = max(best, seq)
    return best


def quarantine(store: JobStore, e: Entry) -> dict:
    """End a damaged job as failed; returns its state (written to state.json where the folder allows it)."""
    d = e.damage
    assert d is not None
    if e.state is not None and e.state.get("state") == "failed" and e.state.get("quarantined"):
        return e.state  # set aside at an earlier start: nothing new to write
    message = (f"the job store file {d.file} is damaged: {d.reason}. The job was set aside as failed; its files are "
               f"kept in {e.path} (remove that folder once it is no longer needed)")
    state: dict[str, Any] = {
        "state": "failed",
        "error": {"code": "internal", "message": message},
        "quarantined": {"file": str(d.file), "reason": d.reason},
        "updated": time.time(),
        "seq": e.seq + 1,
        "artifacts": [],
    }
    if isinstance(e.state, dict):
        state["previous"] = e.state
    p = e.path
    if p.is_symlink() or not p.is_dir():
        log.warning("quarantined %s in memory only: %s", e.job_id, message)
        return state
    try:
        target = p / "state.json"
        if d.file == target and (target.exists() or target.is_symlink()):
            os.replace(target, p / "state.json.damaged")  # kept for whoever looks into it
        atomic_write_json(target, state)
        log.warning("quarantined job %s: %s", e.job_id, message)
        store.log(e.job_id, f"set aside as failed: {message}")
    except OSError as exc:
        log.warning("quarantined %s in memory only (%s): %s", e.job_id, exc, message)
    return state


def spec_fields(e: Entry) -> tuple[str, float, dict]:
    """Pipeline, creation time and config of an entry, with stand-ins for a damaged spec."""
    spec = e.spec if isinstance(e.spec, dict) else {}
    pipeline = spec.get("pipeline") if isinstance(spec.get("pipeline"), str) else "?"
    created = spec.get("created")
    if not isinstance(created, (int, float)) or isinstance(created, bool):
        try:
            created = e.path.lstat().st_mtime
        except OSError:
            created = 0.0
    config = spec.get("config") if isinstance(spec.get("config"), dict) else {}
    return pipeline, float(created), config
