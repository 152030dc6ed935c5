"""A client and a server in two processes: handshake, submit `inspect`, ordered events, result, fetch."""

import json

import numpy as np

from likeness3d.protocol import PROTOCOL_VERSION
from likeness3d.protocol.client import Client
from likeness3d.protocol.messages import Progress, Result


def test_handshake_submit_events_result_fetch(server, asset, tmp_path):
    with Client(server.address, timeout=20) as c:
        info = c.hello()
        assert info.version == PROTOCOL_VERSION
        assert {"inspect", "selftest"} <= set(info.pipelines)
        assert info.workers[0]["device"] == "cpu"
        job = c.submit("inspect", asset)
        events = list(job.events(timeout=30))
        progress = [e for e in events if isinstance(e, Progress)]
        assert [e.step for e in progress] == list(range(1, 4))  # mesh + 2 references, in order
        assert all(e.total == 3 for e in progress)
        assert [e.seq for e in events] == sorted(e.seq for e in events)
        assert progress[1].preview.shape == (16, 16, 4) and progress[1].preview.dtype == np.uint8
        result = events[-1]
        names = ["inspect.json", "reference_00.png", "reference_01.png"]  # the report, the mesh seen by each camera
        assert isinstance(result, Result) and sorted(a.name for a in result.artifacts) == names
        report = json.loads(c.fetch(job.id, "inspect.json"))
        assert report["mesh"]["vertices"] == 4 and report["mesh"]["faces"] == 4
        assert abs(report["mesh"]["surface_area"] - (1.5 + np.sqrt(3) / 2)) < 1e-5
        assert report["references_seeing_mesh"] == ["ref0", "ref1"]
        paths = c.fetch_all(job.id, tmp_path / "out")
        assert sorted(p.name for p in paths) == names
        assert c.status(job.id)["state"] == "done"
        # the GUI queue saw the same events
        queued = []
        while not c.events.empty():
            queued.append(c.events.get_nowait())
        assert [e.seq for e in queued if hasattr(e, "seq")] == [e.seq for e in events]


def test_selftest_progress_is_ordered_with_previews(server, asset):
    with Client(server.address, timeout=20) as c:
        job = c.submit("selftest", asset, {"steps": 25, "step_seconds": 0.0, "preview_size": 8})
        steps = [e.step for e in job.events(timeout=30) if isinstance(e, Progress)]
        assert steps == list(range(1, 26))
        assert json.loads(c.fetch(job.id, "selftest.json"))["steps"] == 25


def test_ping_echoes_arrays(server):
    with Client(server.address, timeout=20) as c:
        a = np.random.default_rng(0).random((1000, 7)).astype(np.float32)
        np.testing.assert_array_equal(c.ping_echo(a), a)
        assert c.ping() < 5


def test_release_reaches_the_workers(server, asset):
    names = ["inspect.json", "reference_00.png", "reference_01.png"]
    with Client(server.address, timeout=20) as c:
        before = c.submit("inspect", asset).wait(300)
        assert sorted(a.name for a in before.artifacts) == names
        info = c.release()
        assert info == {"released": [0], "after_current_job": []}
        after = c.submit("inspect", asset).wait(300)  # the worker keeps serving after a release
        assert sorted(a.name for a in after.artifacts) == names and after.job != before.job
        assert c.status()["workers"][0]["restarts"] == 0  # released in place, not replaced
