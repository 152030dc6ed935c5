"""A few hundred messages of the structure-aware fuzzer (bench/fuzz_protocol.py runs 20,000): every class
of broken request answered once, with its request id, readable; no `internal`; no traceback."""

import zmq

from likeness3d.protocol import messages as M

from fuzz_structured import CLASSES, drive


def test_structured_fuzz_every_class_answered_without_internal(server_factory):
    server = server_factory(extra=["--max-message-mb", "1"])
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(server.address)
    try:
        stats = drive(sock, 400, seed=2026, limit=1 << 20, batch=100)
        sock.send_multipart(M.Ping().to_frames(999_999))
        assert sock.poll(60_000)
        while True:
            rid, reply = M.parse(sock.recv_multipart())
            if rid == 999_999:
                break
    finally:
        sock.close(0)
        ctx.term()
    assert set(stats["classes"]) == set(CLASSES)
    assert stats["unanswered"] == 0 and stats["answered"] == stats["sent"] == 400
    assert stats["internal"] == [] and stats["unreadable"] == [] and stats["wrong_id"] == []
    assert stats["codes"]["oversize_single_frame"] == {"too_large": stats["classes"]["oversize_single_frame"]}
    for name in ("dtype_list", "dtype_map", "shape_2^32x2^32", "shape_2^62+1x4", "shape_2^63x0",
                 "deep_1000_in_a_string_field", "field_name_over_4096"):
        assert set(stats["codes"][name]) == {"bad_message"}, (name, stats["codes"][name])
    assert isinstance(reply, M.Pong) and server.alive()
    log = (server.store / "server.log").read_text()
    assert "Traceback" not in log and "internal error" not in log
