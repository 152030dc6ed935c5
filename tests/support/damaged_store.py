"""Job stores with one damaged job per kind of corruption, beside intact jobs, for the recovery tests.

Each kind is (name, state the job is made in, damage(job folder, outside folder), what the quarantine error
must name). Every damaged job is made whole first by the real JobStore, then damaged the way a crash, a
full disk, a hand edit or another program would.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from likeness3d.backend.store import JobStore


def _write(p: Path, data: bytes | str) -> None:
    p.write_bytes(data.encode() if isinstance(data, str) else data)


def _state(job: Path, **change) -> None:
    st = json.loads((job / "state.json").read_text())
    st.update(change)
    _write(job / "state.json", json.dumps(st))


def _artifact(job: Path, i: int, **change) -> None:
    st = json.loads((job / "state.json").read_text())
    st["artifacts"][i].update(change)
    for k, v in change.items():
        if v is None:
            del st["artifacts"][i][k]
    _write(job / "state.json", json.dumps(st))


def _symlink_out(job: Path, outside: Path) -> None:
    """The job folder replaced by a link to a whole, valid-looking job outside the store."""
    target = outside / "linked_job"
    shutil.copytree(job, target)
    shutil.rmtree(job)
    job.symlink_to(target)


def _stray(job: Path, outside: Path) -> None:
    shutil.rmtree(job)
    _write(job, "not a folder")


def _fifo_state(job: Path, outside: Path) -> None:
    (job / "state.json").unlink()
    os.mkfifo(job / "state.json")  # reading it would block forever


@dataclass(frozen=True)
class Kind:
    name: str
    made_as: str  # "done" or "queued"
    damage: Callable[[Path, Path], None]
    names: str  # the file the error must name (relative to the job folder, or "" for the folder itself)
    reason: str  # a word of the reason the error must give


KINDS = [
    Kind("state_truncated", "done", lambda j, o: _write(j / "state.json", (j / "state.json").read_bytes()[:17]), "state.json", "not valid JSON"),
    Kind("state_empty", "done", lambda j, o: _write(j / "state.json", b""), "state.json", "empty"),
    Kind("state_binary", "done", lambda j, o: _write(j / "state.json", bytes(range(256)) * 4), "state.json", "binary"),
    Kind("state_list", "done", lambda j, o: _write(j / "state.json", "[1, 2, 3]"), "state.json", "JSON list"),
    Kind("state_no_state_key", "done", lambda j, o: _write(j / "state.json", '{"updated": 1.0}'), "state.json", "has no 'state'"),
    Kind("state_wrong_type", "done", lambda j, o: _state(j, state=3), "state.json", "'state' is a number"),
    Kind("state_unknown_value", "queued", lambda j, o: _state(j, state="paused"), "state.json", "unknown state 'paused'"),
    Kind("state_artifacts_not_list", "done", lambda j, o: _state(j, artifacts="inspect.json"), "state.json", "'artifacts' is a string"),
    Kind("state_error_not_map", "done", lambda j, o: _state(j, state="failed", error="boom"), "state.json", "'error' is a string"),
    Kind("state_seq_negative", "done", lambda j, o: _state(j, seq=-4), "state.json", "'seq' is -4"),
    Kind("state_deeply_nested", "done", lambda j, o: _write(j / "state.json", "[" * 100_000 + "]" * 100_000), "state.json", "nested too deeply"),
    Kind("state_missing", "done", lambda j, o: (j / "state.json").unlink(), "state.json", "missing"),
    Kind("state_is_folder", "done", lambda j, o: ((j / "state.json").unlink(), (j / "state.json").mkdir()), "state.json", "not a regular file"),
    Kind("state_is_fifo", "done", _fifo_state, "state.json", "not a regular file"),
    Kind("spec_no_pipeline", "done", lambda j, o: _write(j / "spec.json", '{"created": 1.0, "config": {}}'), "spec.json", "has no 'pipeline'"),
    Kind("spec_unparseable", "queued", lambda j, o: _write(j / "spec.json", '{"pipeline": "inspect", '), "spec.json", "not valid JSON"),
    Kind("spec_created_wrong_type", "done", lambda j, o: _write(j / "spec.json", '{"pipeline": "inspect", "created": "today", "config": {}}'), "spec.json", "'created' is a string"),
    Kind("spec_symlink_out", "done", lambda j, o: ((j / "spec.json").unlink(), _write(o / "spec.json", "{}"), (j / "spec.json").symlink_to(o / "spec.json")), "spec.json", "symbolic link"),
    Kind("artifact_no_media_type", "done", lambda j, o: _artifact(j, 0, media_type=None), "state.json", "has no 'media_type'"),
    Kind("artifact_bad_name", "done", lambda j, o: _artifact(j, 0, name="../spec.json"), "state.json", "not an artifact name"),
    Kind("artifact_file_missing", "done", lambda j, o: (j / "artifacts" / "inspect.json").unlink(), "artifacts/inspect.json", "missing"),
    Kind("artifact_size_mismatch", "done", lambda j, o: _write(j / "artifacts" / "inspect.json", b"{}"), "artifacts/inspect.json", "state.json says"),
    Kind("inputs_missing", "queued", lambda j, o: (j / "inputs" / "asset.npz").unlink(), "inputs/asset.npz", "missing"),
    Kind("inputs_meta_damaged", "queued", lambda j, o: _write(j / "inputs" / "asset.json", "\x00\xff"), "inputs/asset.json", "not"),
    Kind("events_damaged", "done", lambda j, o: _write(j / "events.log", b"\x89PNG\r\n\x1a\n" + os.urandom(64) + b"\n"), "events.log", "binary"),
    Kind("events_bad_line", "done", lambda j, o: _write(j / "events.log", '{"seq": 1, "type": "progress"}\nhello\n'), "events.log", "line 2"),
    Kind("stray_file", "done", _stray, "", "a file where a job folder should be"),
    Kind("symlink_out_of_store", "done", _symlink_out, "", "symbolic link"),
    Kind("unreadable_folder", "done", lambda j, o: os.chmod(j, 0), "", "Permission denied"),
]

ARTIFACT = b'{"intact": true, "bytes": "' + bytes(range(48, 122)) + b'"}'


def make_job(store: JobStore, asset, made_as: str, payload: bytes = ARTIFACT) -> str:
    job = store.create("inspect", {"overlay_points": 3}, asset)
    events = store.job_dir(job) / "events.log"
    events.write_text('{"seq": 1, "type": "progress"}\n')
    if made_as == "done":
        (store.job_dir(job) / "artifacts" / "inspect.json").write_bytes(payload)
        store.write_state(job, "done", artifacts=store.list_artifacts(job), seq=2)
        events.write_text('{"seq": 1, "type": "progress"}\n{"seq": 2, "type": "result"}\n')
    return job


def build(root: Path, outside: Path, asset, kinds: list[Kind]) -> tuple[dict[str, str], dict[str, bytes], list[str]]:
    """A store at `root` with one damaged job per kind, two intact done jobs and one intact queued job.
    Returns kind name -> job id, intact done job id -> its artifact bytes, and the intact queued ids."""
    store = JobStore(root)
    outside.mkdir(parents=True, exist_ok=True)
    intact = {}
    for i in range(2):
        payload = ARTIFACT + f" intact {i}".encode()
        intact[make_job(store, asset, "done", payload)] = payload
    damaged = {}
    for k in kinds:
        job = make_job(store, asset, k.made_as)
        (outside / k.name).mkdir()
        k.damage(root / "jobs" / job, outside / k.name)
        damaged[k.name] = job
    queued = [make_job(store, asset, "queued")]
    return damaged, intact, queued


def can_deny_reads() -> bool:
    """Permission bits hold for this process (not root)."""
    return os.geteuid() != 0


def restore_perms(root: Path) -> None:
    """Let pytest remove the store afterwards."""
    for p in (root / "jobs").iterdir():
        if not p.is_symlink():
            os.chmod(p, 0o755)
