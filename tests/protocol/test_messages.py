"""Every message type survives the wire whole; schema violations are typed errors naming the field."""

import copy
import dataclasses

import msgpack
import numpy as np
import pytest

from compare import assert_same
from likeness3d.protocol import PROTOCOL_VERSION
from likeness3d.protocol import messages as M
from likeness3d.protocol.assets import Asset, Camera, Mesh, Reference
from likeness3d.protocol.errors import ERRORS, BadMessage, VersionMismatch, error_from_code

V = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
F = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.int32)


def _float_asset() -> Asset:
    """Float32 texture and photo, a rotated camera with fx != fy and an off-centre principal point."""
    rng = np.random.default_rng(7)
    c, s = np.cos(0.4), np.sin(0.4)
    w2c = np.array([[c, -s, 0, 0.1], [0, 0, -1, 0.2], [s, c, 0, 4.0], [0, 0, 0, 1]])
    cam = Camera(np.array([[21.0, 0, 5.25], [0, 23.5, 3.75], [0, 0, 1]]), w2c, 12, 8)
    photo = rng.random((8, 12, 4), dtype=np.float32)
    mesh = Mesh(V, F, rng.random((4, 3, 2), dtype=np.float32), rng.random((3, 5, 4), dtype=np.float32))
    return Asset(mesh, (Reference("side", photo, cam),), class_word="pebble", name="float asset")


def samples(asset):
    """One or more of every message type; together they set every field to something other than its default."""
    rng = np.random.default_rng(0)
    return [
        M.Hello(client="t"),
        M.Submit(pipeline="inspect", asset=dataclasses.replace(asset, name="tetra"),
                 config={"a": 1, "b": [1, 2.5], "c": {"d": None, "e": True}, "f": "s"}),
        M.Submit(pipeline="tire", asset=_float_asset(), config={}),
        M.Submit(pipeline="selftest", asset=Asset(Mesh(V, F))),  # no UVs, texture or references
        M.Cancel(job="j"), M.Status(), M.Status(job="j"), M.List(), M.Fetch(job="j", name="x.json"),
        M.Attach(job="j"), M.Release(), M.Ping(), M.Ping(data=np.arange(5, dtype=np.float32)),
        M.Ping(data=np.zeros((0, 3), np.int64)),
        M.ServerInfo(version=PROTOCOL_VERSION + 1, server="likeness3d 9", gpus=["H100", "H200"],
                     pipelines=["inspect", "tire"], models={"dir": None, "found": ["inpaint"]},
                     max_message_bytes=12345, workers=[{"device": "cpu", "pid": 7, "state": "idle"}], epoch="18c-ab"),
        M.Accepted(job="j", position=2),
        M.Progress(job="j", seq=3, stage="s", step=1, total=9, text="t", elapsed=0.5,
                   preview=rng.integers(0, 256, (2, 3, 4), dtype=np.uint8)),
        M.Result(job="j", seq=2**40, artifacts=(M.ArtifactInfo("a.json", "application/json", 3),
                                                M.ArtifactInfo("mesh.glb", "model/gltf-binary", 10**9))),
        M.Error(code="invalid_asset", message="m", field="mesh.faces", job="j", seq=5),
        M.Ack(job="j", info={"state": "running"}), M.StatusReply(info={"q": [], "n": 1.25}),
        M.ListReply(jobs=[{"job": "j", "error": {"code": "x"}}]),
        M.Artifact(job="j", name="a", media_type="x", data=np.frombuffer(b"abc", np.uint8)),
        M.Released(info={"released": [0]}), M.Pong(), M.Pong(data=rng.random((3, 2)), epoch="18c-ab"),
    ]


def test_every_type_round_trips_whole(asset):
    for msg in samples(asset):
        rid, back = M.parse(msg.to_frames(41))
        assert rid == 41
        assert_same(back, msg, msg.TYPE)


def test_the_samples_set_every_field_of_every_type(asset):
    """So the round trip compares real values, never only defaults against defaults."""
    by_type: dict[str, list] = {}
    for msg in samples(asset):
        by_type.setdefault(msg.TYPE, []).append(msg)
    assert set(by_type) == set(M.MESSAGES)
    for kind, msgs in by_type.items():
        default = M.MESSAGES[kind]()
        for f in dataclasses.fields(default):
            assert any(_differs(getattr(m, f.name), getattr(default, f.name)) for m in msgs), f"{kind}.{f.name}"


def _differs(a, b) -> bool:
    try:
        assert_same(a, b)
    except AssertionError:
        return True
    return False


def _mutants(value, where):
    """(path, a copy of `value` changed at that path) for every leaf, every array's dtype and shape, and
    every container's length."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            for path, changed in _mutants(getattr(value, f.name), f"{where}.{f.name}"):
                twin = copy.copy(value)
                object.__setattr__(twin, f.name, changed)  # no validation: the comparison is under test
                yield path, twin
    elif isinstance(value, np.ndarray):
        changed = value.copy()
        if changed.size:
            changed.flat[changed.size // 2] = changed.flat[changed.size // 2] + 1 if value.dtype != bool else True
            yield f"{where} (a value)", changed
        yield f"{where} (dtype)", value.astype(np.float64 if value.dtype != np.float64 else np.float32)
        yield f"{where} (shape)", value.reshape(-1, 1)
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            for path, changed in _mutants(item, f"{where}[{i}]"):
                yield path, type(value)([*value[:i], changed, *value[i + 1:]])
        yield f"{where} (length)", type(value)([*value, 0])
        if type(value) in (tuple, list):
            yield f"{where} (type)", (list if isinstance(value, tuple) else tuple)(value)
    elif isinstance(value, dict):
        for k, item in value.items():
            for path, changed in _mutants(item, f"{where}[{k!r}]"):
                yield path, {**value, k: changed}
        yield f"{where} (keys)", {**value, "extra": 0}
    elif isinstance(value, bool):
        yield where, not value
    elif isinstance(value, (int, float)):
        yield where, value + 1
        yield f"{where} (type)", float(value) if isinstance(value, int) else int(value)
    elif isinstance(value, str):
        yield where, value + "x"
    elif value is None:
        yield where, 0


def test_the_comparison_sees_every_field(asset):
    """A change anywhere in a message (a field, an asset's camera, an array's dtype) fails the comparison."""
    paths = set()
    for msg in samples(asset):
        for path, changed in _mutants(msg, msg.TYPE):
            with pytest.raises(AssertionError) as e:
                assert_same(changed, msg, msg.TYPE)
            assert str(e.value).startswith(path.split(" (")[0] + ":"), (path, str(e.value))  # it says where
            paths.add(path)
    # the fields the old whitelist never compared, down to the cameras inside a Submit's asset
    assert {"submit.asset.mesh.uvs (a value)", "submit.asset.mesh.texture (dtype)", "submit.asset.name",
            "submit.asset.references[1].camera.w2c (a value)", "submit.asset.references[0].camera.width",
            "submit.asset.references[0].image (shape)", "progress.stage", "progress.step", "progress.total",
            "error.field", "artifact.name", "result.artifacts[1].size", "welcome.workers[0]['pid']"} <= paths


def _raw(**header):
    return [msgpack.packb({"v": PROTOCOL_VERSION, "id": 1, **header})]


def test_schema_violations():
    with pytest.raises(VersionMismatch, match="version 99") as e:
        M.parse([msgpack.packb({"v": 99, "type": "ping", "id": 1})])
    assert e.value.field == "v"
    with pytest.raises(BadMessage, match="unknown fields") as e:
        M.parse(_raw(type="ping", surprise=1))
    assert e.value.field == "surprise" and e.value.request_id == 1
    with pytest.raises(BadMessage, match="cancel.job must be str, got int 5") as e:
        M.parse(_raw(type="cancel", job=5))
    assert e.value.field == "cancel.job"
    with pytest.raises(BadMessage, match="field 'type' is 'welcome'") as e:
        M.parse(_raw(type="welcome"), allowed=M.REQUESTS)
    assert e.value.field == "type"
    with pytest.raises(BadMessage, match="'id' must be a non-negative int, got -3") as e:
        M.parse([msgpack.packb({"v": PROTOCOL_VERSION, "type": "ping", "id": -3})])
    assert e.value.field == "id"
    with pytest.raises(BadMessage, match="missing field 'asset'") as e:
        M.parse(_raw(type="submit", pipeline="inspect"))
    assert e.value.field == "asset"
    with pytest.raises(BadMessage, match=r"result.artifacts\[0\] must be \{name, media_type, size\}") as e:
        M.parse(_raw(type="result", job="j", artifacts=[{"name": "a"}]))
    assert e.value.field == "artifacts"


def test_errors_keep_their_class_across_the_wire():
    for code, cls in ERRORS.items():
        msg = M.error_message(cls("boom", field="f"), job="j", seq=3)
        assert_same(msg, M.Error(code=code, message="boom", field="f", job="j", seq=3))
        _, back = M.parse(msg.to_frames())
        assert_same(back, msg, code)
        exc = error_from_code(back.code, back.message, back.field)
        assert type(exc) is cls and exc.message == "boom" and exc.field == "f"
