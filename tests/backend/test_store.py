"""The job store: whole-or-nothing job folders, atomic state, strict names, recovery after a crash."""

import json
import re

import pytest

from compare import assert_same
from likeness3d.backend.jobs import JobManager
from likeness3d.backend.store import JobStore, atomic_write_json
from likeness3d.protocol.errors import UnknownJob


def test_create_load_and_state(tmp_path, asset):
    store = JobStore(tmp_path)
    job = store.create("inspect", {"overlay_points": 3}, asset)
    assert store.read_spec(job)["config"] == {"overlay_points": 3}
    assert store.read_state(job)["state"] == "queued"
    assert_same(store.load_asset(job), asset)  # mesh, UVs, texture, references and their cameras, exactly
    store.write_state(job, "running", worker=0)
    assert store.read_state(job)["worker"] == 0
    assert not list((tmp_path / "jobs" / job).glob(".*tmp"))  # no temporary files left behind


def test_names_never_become_paths(tmp_path, asset):
    store = JobStore(tmp_path)
    job = store.create("inspect", {}, asset)
    for bad in ("..", "../x", "/etc", "20261121-000000-zzzzzzzz", "", None):
        with pytest.raises(UnknownJob, match="is not a job id of this server") as e:
            store.job_dir(bad)
        assert e.value.field == "job"
    with pytest.raises(UnknownJob, match="no job 20990101-000000-deadbeef in the job store"):
        store.job_dir("20990101-000000-deadbeef")  # well formed, but not in this store
    for bad in ("../spec.json", ".hidden", "a/b/c", "splats/../x", "/splats", "splats/.x"):
        with pytest.raises(UnknownJob, match=re.escape(f"artifact name {bad!r} is not valid")) as e:
            store.artifact_path(job, bad)
        assert e.value.field == "name"
    with pytest.raises(UnknownJob, match="has no artifact 'spec.json'"):  # a valid name, not an artifact
        store.artifact_path(job, "spec.json")


def test_recovery_after_a_crash(tmp_path, asset):
    store = JobStore(tmp_path)
    finished, running, queued = (store.create("inspect", {}, asset) for _ in range(3))
    (store.job_dir(finished) / "artifacts" / "inspect.json").write_text("{}")
    store.write_state(finished, "done", artifacts=store.list_artifacts(finished))
    store.write_state(running, "running", worker=0)
    (tmp_path / "jobs" / ".20261121-000000-00000000.tmp").mkdir()  # an interrupted create
    (tmp_path / "jobs" / finished / ".state.json.1234.tmp").write_text("{half")  # an interrupted write
    mgr = JobManager(JobStore(tmp_path))
    assert mgr.get(finished).state == "done" and mgr.get(finished).final.artifacts[0].name == "inspect.json"
    assert mgr.get(running).state == "failed"
    assert list(mgr.queue) == [queued]
    assert not (tmp_path / "jobs" / ".20261121-000000-00000000.tmp").exists()
    assert json.loads((tmp_path / "jobs" / finished / "state.json").read_text())["state"] == "done"


def test_atomic_write_replaces_whole(tmp_path):
    p = tmp_path / "s.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2})
    assert json.loads(p.read_text()) == {"a": 2}
    assert [x.name for x in tmp_path.iterdir()] == ["s.json"]
