"""Bad input gets a typed error reply naming the field; the server never dies of a message."""

import random
import time

import msgpack
import numpy as np
import pytest
import zmq

from likeness3d.protocol import PROTOCOL_VERSION
from likeness3d.protocol import messages as M
from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import ERRORS, BadMessage, InvalidAsset, TooLarge, UnknownJob, UnknownPipeline

from fuzz_frames import malformed


class Raw:
    """A bare DEALER socket, to send what our client never would."""

    def __init__(self, address):
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.connect(address)

    def ask(self, frames, timeout=10.0):
        self.sock.send_multipart(frames)
        return self.recv(timeout)

    def recv(self, timeout=10.0):
        if not self.sock.poll(int(timeout * 1000)):
            raise AssertionError("no reply")
        return M.parse(self.sock.recv_multipart())

    def close(self):
        self.sock.close(0)
        self.ctx.term()


@pytest.fixture
def raw(server):
    r = Raw(server.address)
    yield r
    r.close()


def test_version_mismatch(raw):
    rid, reply = raw.ask([msgpack.packb({"v": PROTOCOL_VERSION + 1, "type": "hello", "id": 9})])
    assert isinstance(reply, M.Error) and reply.code == "version_mismatch" and rid == 9
    assert f"version {PROTOCOL_VERSION + 1}" in reply.message


def test_request_errors_are_typed_on_the_client(server, asset):
    with Client(server.address, timeout=20) as c:
        with pytest.raises(UnknownPipeline, match="no pipeline 'nope'"):
            c.submit("nope", asset)
        with pytest.raises(BadMessage, match="config: unknown key 'zzz'") as e:
            c.submit("inspect", asset, {"zzz": 1})
        assert e.value.field == "config.zzz"
        with pytest.raises(BadMessage, match="config.overlay_points must be int"):
            c.submit("inspect", asset, {"overlay_points": "many"})
        with pytest.raises(UnknownJob, match="no job '20990101-000000-deadbeef' on this server") as e:
            c.status("20990101-000000-deadbeef")
        assert e.value.field == "job"
        with pytest.raises(UnknownJob, match="no job '../../etc' on this server"):
            c.fetch("../../etc", "passwd")
        job = c.submit("inspect", asset)
        assert job.wait(300).artifacts[0].name == "inspect.json"
        with pytest.raises(UnknownJob, match="artifact name '../spec.json' is not valid"):
            c.fetch(job.id, "../spec.json")
        with pytest.raises(UnknownJob, match="has no artifact 'spec.json'"):
            c.fetch(job.id, "spec.json")


def test_invalid_asset_reply_names_the_field(raw, asset):
    frames = M.Submit(pipeline="inspect", asset=asset).to_frames(5)
    header = msgpack.unpackb(frames[0])
    faces = np.array([[0, 1, 9], [0, 1, 2], [0, 2, 3], [1, 2, 3]], np.int32)
    i = next(d["frame"] for d in header["arrays"] if d["name"] == "mesh.faces")
    frames[i] = faces.tobytes()
    rid, reply = raw.ask(frames)
    assert rid == 5 and reply.code == InvalidAsset.code and reply.field == "mesh.faces"
    assert "references vertex 9 but the mesh has 4 vertices" in reply.message


def test_too_large(server_factory, tmp_path):
    server = server_factory(extra=["--max-message-mb", "1"])
    big = Raw(server.address)
    try:
        # one frame over the limit: a `too_large` reply to that request (libzmq dropped the connection unanswered)
        for rid_sent, size in ((4, 1_048_577), (5, 2_000_000), (6, 40 << 20)):
            h = {"v": PROTOCOL_VERSION, "type": "ping", "id": rid_sent,
                 "arrays": [{"name": "data", "dtype": "|u1", "shape": [size], "frame": 1}]}
            rid, reply = big.ask([msgpack.packb(h), bytes(size)], timeout=60)
            assert rid == rid_sent and reply.code == TooLarge.code, reply
            assert f"message is {size + len(msgpack.packb(h))} bytes" in reply.message
            assert "the limit is 1048576 bytes (--max-message-mb 1)" in reply.message
        # several frames, each under the limit, together over it: a typed reply to that request
        h = {"v": PROTOCOL_VERSION, "type": "ping", "id": 3,
             "arrays": [{"name": "data", "dtype": "|u1", "shape": [700_000], "frame": 1}]}
        rid, reply = big.ask([msgpack.packb(h), bytes(700_000), bytes(700_000)])
        assert reply.code == TooLarge.code and rid == 3 and "limit is 1048576 bytes (--max-message-mb 1)" in reply.message
        rid, reply = big.ask(M.Ping().to_frames(7))  # the same connection is still served
        assert rid == 7 and isinstance(reply, M.Pong)
    finally:
        big.close()
    from likeness3d.backend.synthetic.example import example_asset

    with Client(server.address, timeout=20) as c:
        # the client refuses, before sending, what this backend would refuse: it learnt the limit in hello
        with pytest.raises(TooLarge, match="accepts at most 1048576 bytes") as e:
            c.submit("inspect", example_asset(image_size=256, texture_size=512))
        assert e.value.field == "asset"
        with pytest.raises(TooLarge, match=r"this ping is \d+ bytes on the wire; the backend .* accepts at most 1048576") as e:
            c.ping_echo(np.zeros(2_000_000, np.uint8))
        assert e.value.field == "data"
        assert c.ping() < 5


def test_fuzz_10k_malformed_messages(server, raw):
    rng = random.Random(1234)
    n, batch, codes, answered = 10_000, 200, {}, 0
    for start in range(0, n, batch):
        for _ in range(batch):
            raw.sock.send_multipart(malformed(rng))
        replies = 0
        while replies < batch:
            assert raw.sock.poll(20_000), f"no reply after {answered} answers"
            _, reply = M.parse(raw.sock.recv_multipart())
            if isinstance(reply, (M.Progress, M.Result)) or getattr(reply, "seq", None) is not None:
                continue  # events of a fuzzed submit that happened to be valid
            replies += 1
            answered += 1
            if isinstance(reply, M.Error):
                assert reply.code in ERRORS, reply
                codes[reply.code] = codes.get(reply.code, 0) + 1
    assert answered == n
    assert codes.get("bad_message", 0) > n // 2
    assert "internal" not in codes, codes  # no malformed message reaches an unexpected exception
    assert server.alive()
    raw.sock.send_multipart(M.Ping().to_frames(77))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        rid, reply = raw.recv()
        if rid == 77:
            assert isinstance(reply, M.Pong)
            break
    else:
        raise AssertionError("no pong after the fuzzing")


def _deep(levels):
    value = "x"
    for _ in range(levels):
        value = [value]
    return value


def _array_ping(rid, dtype, shape, nbytes):
    h = {"v": PROTOCOL_VERSION, "type": "ping", "id": rid, "arrays": [{"name": "data", "dtype": dtype, "shape": shape, "frame": 1}]}
    return [msgpack.packb(h), bytes(nbytes)]


def _header(rid, kind, **fields):
    return [msgpack.packb({"v": PROTOCOL_VERSION, "type": kind, "id": rid, **fields})]


# (frames, the field the reply names, words of its message): each crashed the validation (`internal` and
# a logged traceback) or, for the long field, made a reply the client could not read
VALIDATION_CRASHES = [
    (_array_ping(11, ["<f4"], [1], 4), "data", "dtype ['<f4'] is not one of"),
    (_array_ping(12, {"<f4": 1}, [1], 4), "data", "dtype {'<f4': 1} is not one of"),
    (_array_ping(13, "|u1", [2**32, 2**32], 0), "data", "is 18446744073709551616 bytes but its frame has 0"),
    (_array_ping(14, "|u1", [2**62 + 1, 4], 4), "data", "shape must be a list of at most 8 ints"),  # int64: 4 bytes
    (_array_ping(15, "|u1", [2**63, 0], 0), "data", "shape must be a list of at most 8 ints"),
    (_array_ping(16, "<f4", [2**31] * 7 + [0], 0), "data", "is 0 bytes but its frame has 0"),  # empty, yet vast
    (_header(17, "hello", client=_deep(1000)), "client", "nests lists or maps more than 32 levels deep"),
    (_header(18, "status", job=_deep(1000)), "job", "nests lists or maps more than 32 levels deep"),
    (_header(19, "submit", pipeline="inspect", asset={}, config={"fit": _deep(999)}), "config", "more than 32 levels"),
    (_header(20, "hello", client=_deep(20)), "hello.client", "must be str, got list [[[[[["),
    (_header(21, "hello", **{"k" * 5000: 1}), "k" * 253 + "...", "hello: unknown fields ['kkkk"),
    (_header(22, "ping", data=_deep(5)), "data", "ping.data is an array: it travels as a frame"),
]


def test_validation_crashes_are_bad_message_naming_the_field(server, raw):
    for frames, field, words in VALIDATION_CRASHES:
        want_rid = msgpack.unpackb(frames[0], strict_map_key=False)["id"]
        rid, reply = raw.ask(frames)
        assert isinstance(reply, M.Error) and reply.code == "bad_message", (want_rid, reply)
        assert rid == want_rid and reply.field == field and words in reply.message, (want_rid, reply)
        assert len(reply.field) <= M.MAX_FIELD and len(reply.message) <= M.MAX_STR
    assert server.alive()
    log = (server.store / "server.log").read_text()
    assert "Traceback" not in log and "internal error" not in log
