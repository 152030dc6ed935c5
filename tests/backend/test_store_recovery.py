"""A damaged job store: the server starts whatever one job's files say, sets the damaged job aside (failed,
naming the file and the reason), serves every intact job byte for byte and never runs an unknown state."""

import json
import os

import pytest

from damaged_store import KINDS, build, can_deny_reads, restore_perms
from likeness3d.backend.jobs import JobManager
from likeness3d.backend.store import JobStore
from likeness3d.protocol.client import Client
from likeness3d.protocol.messages import Error
from servers import Served, non_root_prefix


def _snapshot(folder):
    out = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return out


def _named(root, job, kind):
    folder = root / "jobs" / job
    return str(folder / kind.names) if kind.names else str(folder)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_a_damaged_job_is_set_aside_and_the_rest_served(tmp_path, asset, kind):
    if kind.name == "unreadable_folder" and not can_deny_reads():
        pytest.skip("running as root, permission bits deny nothing; the server test below runs this kind as an ordinary user")
    root = (tmp_path / "store").resolve()
    damaged, intact, queued = build(root, tmp_path / "outside", asset, [kind])
    outside = _snapshot(tmp_path / "outside")
    job = damaged[kind.name]
    try:
        for start in range(2):  # a second start finds the same and sets nothing aside twice
            mgr = JobManager(JobStore(root))
            rec = mgr.get(job)
            assert rec.state == "failed", (start, rec.state)
            assert isinstance(rec.final, Error) and rec.final.code == "internal"
            assert _named(root, job, kind) in rec.final.message and kind.reason in rec.final.message, rec.final.message
            state_file = root / "jobs" / job / "state.json"
            written = state_file.read_bytes() if state_file.is_file() and not state_file.is_symlink() else None
            if start == 0:
                assert mgr.quarantined == [job]
                first = written
            else:
                assert written == first  # the same state, not set aside again
            assert list(mgr.queue) == queued  # the damaged job does not run, the intact queued one does
            for jid, payload in intact.items():
                assert mgr.get(jid).state == "done"
                assert mgr.store.artifact_path(jid, "inspect.json").read_bytes() == payload
    finally:
        restore_perms(root)
    assert _snapshot(tmp_path / "outside") == outside  # nothing written through a link out of the store
    if kind.names == "state.json" and kind.name not in ("state_missing",):
        # the damaged file is kept beside the state that sets the job aside
        assert (root / "jobs" / job / "state.json.damaged").exists() or json.loads((root / "jobs" / job / "state.json").read_text())["previous"]


def test_the_server_starts_on_a_store_with_every_kind_of_damage(tmp_path, asset):
    prefix = non_root_prefix()
    kinds = [k for k in KINDS if k.name != "unreadable_folder" or prefix is not None]
    assert len(kinds) >= 20
    root = (tmp_path / "store").resolve()
    damaged, intact, queued = build(root, tmp_path / "outside", asset, kinds)
    outside = _snapshot(tmp_path / "outside")
    try:
        for start in range(2):
            server = Served(root, tmp_path / f"server{start}.log", prefix=prefix)
            with Client(server.address, timeout=30) as c:
                listed = {j["job"]: j for j in c.list()}
                for k in kinds:
                    j = listed[damaged[k.name]]
                    assert j["state"] == "failed", (k.name, j)
                    msg = j["error"]["message"]
                    assert _named(root, damaged[k.name], k) in msg and k.reason in msg, (k.name, msg)
                for jid, payload in intact.items():
                    assert listed[jid]["state"] == "done"
                    assert c.fetch(jid, "inspect.json") == payload  # byte for byte
                if start == 0:
                    assert set(c.status()["quarantined"]) == set(damaged.values())
                    assert c.attach(queued[0]).wait(60).artifacts[0].name == "inspect.json"
                assert c.status(queued[0])["state"] == "done"
                unknown = damaged["state_unknown_value"]
                assert c.status(unknown)["state"] == "failed"
            assert server.stop() == 0, server.log()[-2000:]
            assert "Traceback" not in server.log(), server.log()[-3000:]
        log = (root / "jobs" / damaged["state_unknown_value"] / "log.txt").read_text()
        assert "set aside as failed" in log and "running inspect" not in log  # the job with an unknown state never ran
    finally:
        restore_perms(root)
    assert _snapshot(tmp_path / "outside") == outside
