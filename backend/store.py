"""The job store: one folder per job (spec, inputs, log, state, artifacts), written so a crash never leaves
a half-written file behind.

    <root>/jobs/<job id>/spec.json        pipeline, config, created
                         inputs/asset.json + asset.npz
                         log.txt
                         state.json       state, error, artifacts, updated  (replaced atomically)
                         artifacts/<name>
                         work/            the pipeline's scratch space

                         events.log       one JSON line per event sent (its seq), appended
         <root>/owner.json                 the owner epoch of the server that holds the store (owner.py)

Job ids and artifact names are made by the server and checked against strict patterns before they touch the
filesystem: no field of a message ever becomes a path. A write that fails because the disk is full raises
`StorageFull` naming the store, and leaves nothing half-written; recovery and quarantine of damaged job
folders at start are in store_scan.py.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol.assets import Asset, asset_from_wire, asset_to_wire
from ..protocol.errors import Internal, StorageFull, UnknownJob

log = logging.getLogger("likeness3d.store")

JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$")
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}(/[A-Za-z0-9][A-Za-z0-9._-]{0,127})?$")
"""A file name, or one folder and a file name (`splats/frame_0001.ply`); no part starts with a dot."""
FINAL_STATES = frozenset({"done", "failed", "cancelled"})
STATES = frozenset({"queued", "running"}) | FINAL_STATES
FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

MEDIA_TYPES = {
    ".json": "application/json",
    ".png": "image/png",
    ".exr": "image/x-exr",
    ".glb": "model/gltf-binary",
    ".ply": "application/x-ply",
    ".pc2": "application/x-pc2",
    ".safetensors": "application/x-safetensors",
    ".txt": "text/plain",
    ".mp4": "video/mp4",
    ".npz": "application/x-npz",
}


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def is_full(exc: BaseException) -> bool:
    """True for an OSError saying the disk (or the quota) is full."""
    return isinstance(exc, OSError) and exc.errno in FULL_ERRNOS


def storage_error(exc: OSError, root: Path, doing: str) -> StorageFull | Internal:
    """The typed error for a failed write into the store at `root`: `storage_full` when the disk is full."""
    where = getattr(exc, "filename", None) or root
    if is_full(exc):
        return StorageFull(
            f"the job store {root} is full ({exc.strerror}) while {doing}: free space on that disk, or start "
            f"the server with --store on a disk with room; nothing half-written was kept"
        )
    return Internal(f"the job store {root} could not be written while {doing}: {where}: {exc.strerror or exc}")


def atomic_write(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Write, fsync, rename over the target, fsync the folder: readers see the old or the new file, never half.
    With `sync=False` the two fsyncs are left to the caller (`sync_path`, later, off the server loop): the
    file is still replaced whole. A failed write (a full disk) removes its temporary file and raises."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            if sync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise
    if sync:
        _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def sync_path(path: Path) -> None:
    """Make a file written with `sync=False` durable (the file, then its folder's entry); best effort."""
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(path.parent)
    except OSError as exc:  # replaced again meanwhile (that write syncs itself), or the folder is gone
        log.debug("sync of %s skipped: %s", path, exc)


def atomic_write_json(path: Path, obj: Any, *, sync: bool = True) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode(), sync=sync)


def write_npz(fh, arrays: dict[str, np.ndarray]) -> None:
    """`np.savez`'s format (read back by `np.load`) without its copies: each array's bytes go from its own
    memory to the file, and the CRC and the write release the GIL, so that a 64 MB asset stored on a thread
    leaves the server loop free (`np.savez` copies in 16 MiB chunks holding the GIL)."""
    import zipfile

    from numpy.lib import format as npformat

    with zipfile.ZipFile(fh, "w", zipfile.ZIP_STORED, allowZip64=True) as zf:
        for name, arr in arrays.items():
            arr = np.ascontiguousarray(arr)
            if arr.dtype.hasobject:
                raise ValueError(f"array {name!r} holds Python objects; the store keeps plain arrays only")
            with zf.open(name + ".npy", "w", force_zip64=True) as out:
                npformat.write_array_header_1_0(out, npformat.header_data_from_array_1_0(arr))
                if arr.size:
                    out.write(memoryview(arr.reshape(-1).view(np.uint8)))


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()
    except OSError:
        pass


class StaleOwner(BaseException):
    """A worker of a server that no longer holds the store tried to write into it (BaseException: no
    pipeline's catch-all swallows it; the worker ends without writing)."""


class JobStore:
    """Folders under `<root>/jobs`; every public method validates the job id first.

    `epoch` is set in a worker: every write it makes into a job first checks that its server still holds the
    store (owner.py); a worker left behind by a killed server raises StaleOwner instead of writing."""

    def __init__(self, root: Path | str, *, epoch: int | None = None):
        self.root = Path(root).expanduser().resolve()
        self.jobs_dir = self.root / "jobs"
        try:
            self.jobs_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"the job store {self.root} cannot be made: {exc.filename or self.jobs_dir}: "
                             f"{exc.strerror}; give --store a folder this user can write") from None
        self.epoch = epoch
        self._warned: set[tuple[str, str]] = set()
        self.sync_later: Any = None
        """Set by the server: a callable that fsyncs a state file off its loop (`sync_path` on its store
        thread); None: every state write syncs before it returns."""

    def check_owner(self) -> None:
        """Raise StaleOwner when this store handle's epoch is not the store's owner epoch (workers only)."""
        if self.epoch is None:
            return
        from .owner import read_epoch

        current = read_epoch(self.root)
        if current != self.epoch:
            raise StaleOwner(f"the job store {self.root} is held by owner epoch {current}, not {self.epoch}")

    # -- paths ------------------------------------------------------------------------------------------
    def job_dir(self, job_id: str) -> Path:
        if not isinstance(job_id, str) or not JOB_ID.match(job_id):
            raise UnknownJob(f"job id {job_id!r:.80} is not a job id of this server", field="job")
        path = self.jobs_dir / job_id
        if not path.is_dir():
            raise UnknownJob(f"no job {job_id} in the job store", field="job")
        return path

    def artifact_path(self, job_id: str, name: str) -> Path:
        if not isinstance(name, str) or not ARTIFACT_NAME.match(name):
            raise UnknownJob(f"artifact name {name!r:.80} is not valid", field="name")
        listed = {a["name"] for a in self.read_state(job_id).get("artifacts", [])}
        if name not in listed:
            raise UnknownJob(f"job {job_id} has no artifact {name!r}; it has {sorted(listed)}", field="name")
        return self.job_dir(job_id) / "artifacts" / name

    # -- create -----------------------------------------------------------------------------------------
    def create(self, pipeline: str, config: dict, asset: Asset) -> str:
        """Write a queued job whole (spec, inputs, state) and return its id; on a failure (a full disk) nothing
        of it is left and a typed error (StorageFull) is raised."""
        job_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)
        tmp = self.jobs_dir / f".{job_id}.tmp"
        try:
            (tmp / "inputs").mkdir(parents=True)
            (tmp / "artifacts").mkdir()
            (tmp / "work").mkdir()
            meta, arrays = asset_to_wire(asset)
            atomic_write_json(tmp / "inputs" / "asset.json", meta)
            with open(tmp / "inputs" / "asset.npz", "wb") as fh:
                write_npz(fh, arrays)
                fh.flush()
                os.fsync(fh.fileno())
            now = time.time()
            atomic_write_json(tmp / "spec.json", {"id": job_id, "pipeline": pipeline, "config": config, "created": now})
            atomic_write_json(tmp / "state.json", {"state": "queued", "updated": now, "artifacts": [], "seq": 0})
            os.replace(tmp, self.jobs_dir / job_id)  # the job appears whole or not at all
        except OSError as exc:
            _remove(tmp)
            raise storage_error(exc, self.root, "storing a submitted job's inputs") from None
        except BaseException:
            _remove(tmp)
            raise
        return job_id

    # -- read -------------------------------------------------------------------------------------------
    def read_spec(self, job_id: str) -> dict:
        return json.loads((self.job_dir(job_id) / "spec.json").read_text())

    def read_state(self, job_id: str) -> dict:
        return json.loads((self.job_dir(job_id) / "state.json").read_text())

    def load_asset(self, job_id: str) -> Asset:
        d = self.job_dir(job_id) / "inputs"
        meta = json.loads((d / "asset.json").read_text())
        with np.load(d / "asset.npz") as npz:
            arrays = {k: npz[k] for k in npz.files}
        return asset_from_wire(meta, arrays)

    # -- update -----------------------------------------------------------------------------------------
    def write_state(self, job_id: str, state: str, **extra: Any) -> dict:
        """Replace state.json atomically (raises the OSError of a failed write; nothing half-written)."""
        assert state in STATES, state
        try:
            current = self.read_state(job_id)
        except (ValueError, FileNotFoundError):  # damaged or removed while the server ran: written anew
            current = {}
        current.update(extra, state=state, updated=time.time())
        path = self.job_dir(job_id) / "state.json"
        atomic_write_json(path, current, sync=self.sync_later is None)
        if self.sync_later is not None:
            self.sync_later(path)
        return current

    def log(self, job_id: str, text: str) -> bool:
        """Append a line to the job's log; best effort (a full disk loses the line, never the job or the
        server): returns whether it was written."""
        self.check_owner()
        try:
            with open(self.job_dir(job_id) / "log.txt", "a", encoding="utf-8") as fh:
                fh.write(time.strftime("%H:%M:%S ") + text.rstrip("\n") + "\n")
            return True
        except (OSError, UnknownJob) as exc:
            self._warn_once(job_id, "log", f"job {job_id}: log lines are not being written ({exc}); first lost: {text:.200}")
            return False

    def append_event(self, job_id: str, seq: int, kind: str) -> bool:
        """Record that event `seq` of the job was sent, so that a restarted server numbers on from it (best
        effort like the log; no fsync: it serves a server restart, the page cache survives a killed process)."""
        try:
            with open(self.job_dir(job_id) / "events.log", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"seq": seq, "type": kind}) + "\n")
            return True
        except (OSError, UnknownJob) as exc:
            self._warn_once(job_id, "events", f"job {job_id}: events are not being recorded ({exc}); first lost: {seq}")
            return False

    def _warn_once(self, job_id: str, what: str, text: str) -> None:
        """One warning per job and kind of lost write (a full disk would otherwise log every progress event)."""
        if (job_id, what) not in self._warned:
            self._warned.add((job_id, what))
            log.warning("%s", text)

    def list_artifacts(self, job_id: str) -> list[dict]:
        """Scan the artifacts folder (after the worker finished) into {name, media_type, size} entries."""
        out = []
        root = self.job_dir(job_id) / "artifacts"
        for p in sorted(root.iterdir()):
            files = sorted(p.iterdir()) if p.is_dir() and not p.is_symlink() else [p]  # one folder level (splats/)
            for f in files:
                name = f.relative_to(root).as_posix()
                if f.is_file() and not f.is_symlink() and ARTIFACT_NAME.match(name):
                    out.append({"name": name, "media_type": media_type(name), "size": f.stat().st_size})
        return out
