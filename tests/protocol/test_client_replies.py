"""A reply the client cannot read fails the request it answers, at once, rather than leaving it to time out
(a backend of another version, or one that names a field in more than 4096 characters)."""

import threading

import msgpack
import pytest
import zmq

from likeness3d.protocol import PROTOCOL_VERSION
from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import BadMessage


def _answer_once(router: zmq.Socket, reply: dict, done: threading.Event) -> None:
    """A ROUTER that answers each request with `reply`, carrying the request's id."""
    poller = zmq.Poller()
    poller.register(router, zmq.POLLIN)
    while not done.is_set():
        if not poller.poll(50):
            continue
        identity, header, *_ = router.recv_multipart()
        rid = msgpack.unpackb(header)["id"]
        router.send_multipart([identity, msgpack.packb({"v": PROTOCOL_VERSION, "id": rid, **reply})])


def test_an_error_naming_a_5000_character_field_fails_its_request_at_once():
    ctx = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    done = threading.Event()
    reply = {"type": "error", "code": "bad_message", "message": "hello: unknown fields", "field": "f" * 5000}
    thread = threading.Thread(target=_answer_once, args=(router, reply, done), daemon=True)
    thread.start()
    try:
        with Client(f"tcp://127.0.0.1:{port}", timeout=60) as c:
            with pytest.raises(BadMessage, match="unreadable message from the backend: error.field must be str"):
                c.hello()  # used to wait the whole timeout: the reply was dropped as unreadable
    finally:
        done.set()
        thread.join(5)
        router.close(0)
        ctx.term()
