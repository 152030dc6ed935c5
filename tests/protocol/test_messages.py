"""Every message type survives the wire; schema violations are typed errors naming the field."""

import msgpack
import numpy as np
import pytest

from likeness3d.protocol import PROTOCOL_VERSION
from likeness3d.protocol import messages as M
from likeness3d.protocol.errors import BadMessage, VersionMismatch, error_from_code, ERRORS


def samples(asset):
    return [
        M.Hello(client="t"),
        M.Submit(pipeline="inspect", asset=asset, config={"a": 1, "b": [1, 2]}),
        M.Cancel(job="j"), M.Status(), M.Status(job="j"), M.List(), M.Fetch(job="j", name="x.json"),
        M.Attach(job="j"), M.Release(), M.Ping(), M.Ping(data=np.arange(5, dtype=np.float32)),
        M.ServerInfo(gpus=["H100"], pipelines=["inspect"], models={"dir": None}),
        M.Accepted(job="j", position=2),
        M.Progress(job="j", seq=3, stage="s", step=1, total=9, text="t", elapsed=0.5, preview=np.zeros((2, 3, 4), np.uint8)),
        M.Result(job="j", seq=4, artifacts=(M.ArtifactInfo("a.json", "application/json", 3),)),
        M.Error(code="invalid_asset", message="m", field="mesh.faces", job="j", seq=5),
        M.Ack(job="j", info={"state": "running"}), M.StatusReply(info={"q": []}), M.ListReply(jobs=[{"job": "j"}]),
        M.Artifact(job="j", name="a", media_type="x", data=np.frombuffer(b"abc", np.uint8)),
        M.Released(info={}), M.Pong(),
    ]


def test_every_type_round_trips(asset):
    seen = set()
    for msg in samples(asset):
        rid, back = M.parse(msg.to_frames(41))
        assert rid == 41 and type(back) is type(msg)
        seen.add(msg.TYPE)
        for name in ("job", "seq", "text", "code", "info", "jobs", "pipelines", "artifacts", "config"):
            if hasattr(msg, name):
                assert getattr(back, name) == getattr(msg, name)
        for name in ("preview", "data"):
            if getattr(msg, name, None) is not None:
                np.testing.assert_array_equal(getattr(back, name), getattr(msg, name))
    assert seen == set(M.MESSAGES)


def _raw(**header):
    return [msgpack.packb({"v": PROTOCOL_VERSION, "id": 1, **header})]


def test_schema_violations():
    with pytest.raises(VersionMismatch, match="version 99"):
        M.parse([msgpack.packb({"v": 99, "type": "ping", "id": 1})])
    with pytest.raises(BadMessage, match="unknown fields") as e:
        M.parse(_raw(type="ping", surprise=1))
    assert e.value.field == "surprise" and e.value.request_id == 1
    with pytest.raises(BadMessage, match="cancel.job must be str, got int"):
        M.parse(_raw(type="cancel", job=5))
    with pytest.raises(BadMessage, match="field 'type'"):
        M.parse(_raw(type="welcome"), allowed=M.REQUESTS)
    with pytest.raises(BadMessage, match="'id' must be a non-negative int"):
        M.parse([msgpack.packb({"v": PROTOCOL_VERSION, "type": "ping", "id": -3})])
    with pytest.raises(BadMessage, match="missing field 'asset'"):
        M.parse(_raw(type="submit", pipeline="inspect"))


def test_errors_keep_their_class_across_the_wire():
    for code, cls in ERRORS.items():
        msg = M.error_message(cls("boom", field="f"))
        _, back = M.parse(msg.to_frames())
        exc = error_from_code(back.code, back.message, back.field)
        assert type(exc) is cls and exc.message == "boom" and exc.field == "f"
