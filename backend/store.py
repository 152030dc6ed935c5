"""The job store: one folder per job (spec, inputs, log, state, artifacts), written so a crash never leaves
a half-written file behind.

    <root>/jobs/<job id>/spec.json        pipeline, config, created
                         inputs/asset.json + asset.npz
                         log.txt
                         state.json       state, error, artifacts, updated  (replaced atomically)
                         artifacts/<name>
                         work/            the pipeline's scratch space

Job ids and artifact names are made by the server and checked against strict patterns before they touch the
filesystem: no field of a message ever becomes a path.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..protocol.assets import Asset, asset_from_wire, asset_to_wire
from ..protocol.errors import UnknownJob

JOB_ID = re.compile(r"^[0-9]{8}-[0-9]{6}-[0-9a-f]{8}$")
ARTIFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
FINAL_STATES = frozenset({"done", "failed", "cancelled"})
STATES = frozenset({"queued", "running"}) | FINAL_STATES

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


def atomic_write(path: Path, data: bytes) -> None:
    """Write, fsync, rename over the target, fsync the folder: readers see the old or the new file, never half."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True).encode())


class JobStore:
    """Folders under `<root>/jobs`; every public method validates the job id first."""

    def __init__(self, root: Path | str):
        self.root = Path(root).expanduser().resolve()
        self.jobs_dir = self.root / "jobs"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)

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
        job_id = time.strftime("%Y%m%d-%H%M%S", time.gmtime()) + "-" + secrets.token_hex(4)
        tmp = self.jobs_dir / f".{job_id}.tmp"
        (tmp / "inputs").mkdir(parents=True)
        (tmp / "artifacts").mkdir()
        (tmp / "work").mkdir()
        meta, arrays = asset_to_wire(asset)
        atomic_write_json(tmp / "inputs" / "asset.json", meta)
        with open(tmp / "inputs" / "asset.npz", "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        now = time.time()
        atomic_write_json(tmp / "spec.json", {"id": job_id, "pipeline": pipeline, "config": config, "created": now})
        atomic_write_json(tmp / "state.json", {"state": "queued", "updated": now, "artifacts": []})
        os.replace(tmp, self.jobs_dir / job_id)  # the job appears whole or not at all
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

    def job_ids(self) -> list[str]:
        """Every complete job folder, oldest first; leftovers of an interrupted create are removed."""
        ids = []
        for p in sorted(self.jobs_dir.iterdir()):
            if p.name.startswith(".") and p.name.endswith(".tmp"):
                shutil.rmtree(p, ignore_errors=True)
            elif JOB_ID.match(p.name) and (p / "state.json").is_file() and (p / "spec.json").is_file():
                ids.append(p.name)
        return ids

    # -- update -----------------------------------------------------------------------------------------
    def write_state(self, job_id: str, state: str, **extra: Any) -> dict:
        assert state in STATES, state
        current = self.read_state(job_id)
        current.update(extra, state=state, updated=time.time())
        atomic_write_json(self.job_dir(job_id) / "state.json", current)
        return current

    def log(self, job_id: str, text: str) -> None:
        with open(self.job_dir(job_id) / "log.txt", "a", encoding="utf-8") as fh:
            fh.write(time.strftime("%H:%M:%S ") + text.rstrip("\n") + "\n")

    def list_artifacts(self, job_id: str) -> list[dict]:
        """Scan the artifacts folder (after the worker finished) into {name, media_type, size} entries."""
        out = []
        for p in sorted((self.job_dir(job_id) / "artifacts").iterdir()):
            if p.is_file() and ARTIFACT_NAME.match(p.name):
                out.append({"name": p.name, "media_type": media_type(p.name), "size": p.stat().st_size})
        return out
