"""The client's view of its connection: libzmq's socket monitor read as link events, the words for each
way a backend can be out of reach, and the backend's message limit applied before sending.

libzmq reconnects a DEALER silently, however short the break; the monitor is what tells the client that
its connection dropped and came back (perhaps to a restarted backend that knows nothing of it), so that
it re-attaches its jobs at once rather than after a missed heartbeat.
"""

from __future__ import annotations

from pathlib import Path

import zmq
from zmq.utils.monitor import recv_monitor_message

from . import messages as M
from .errors import TooLarge, Unreachable
from .framing import MAX_HEADER_BYTES, frame_len, limit_text

MONITORED = (
    zmq.EVENT_CONNECTED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
FAILED = {
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "protocol",
    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL: "protocol",
    zmq.EVENT_HANDSHAKE_FAILED_AUTH: "auth",
}


class LinkWatch:
    """What the monitor of one socket has said: is a peer linked now, was one ever, how did the last
    handshake fail. `poll()` returns the events read since the last call, as words:
    "tcp" (a connection opened), "linked" (its handshake succeeded), "dropped", "failed"."""

    def __init__(self, sock: zmq.Socket):
        self.socket = sock.get_monitor_socket(MONITORED)
        self.tcp_seen = False
        self.links = 0  # handshakes that succeeded
        self.linked = False
        self.failure: str | None = None  # "protocol" or "auth", from the last failed handshake

    def poll(self) -> list[str]:
        out = []
        while True:
            try:
                event = recv_monitor_message(self.socket, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return out
            if event == zmq.EVENT_CONNECTED:
                self.tcp_seen = True
                out.append("tcp")
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.links += 1
                self.linked, self.failure = True, None
                out.append("linked")
            elif event == zmq.EVENT_DISCONNECTED:
                if self.linked:
                    self.linked = False
                    out.append("dropped")
            elif event in FAILED:
                self.failure = FAILED[event]
                out.append("failed")

    def close(self, sock: zmq.Socket) -> None:
        try:
            sock.disable_monitor()
        except zmq.ZMQError:
            pass
        self.socket.close(0)

    def hopeless(self) -> bool:
        """A request made now cannot be answered soon: no backend was ever reached, and either nothing
        accepts a connection at the address or what does failed the handshake."""
        return self.links == 0 and (not self.tcp_seen or self.failure is not None)


def unreachable(address: str, watch: LinkWatch, waited: float) -> Unreachable:
    """The error for a request no backend can answer: what is (not) at the address and what to do."""
    if watch.failure == "auth":
        text = (f"the backend at {address} refused this client's CurveZMQ key: ask its operator to put your "
                f"public key (.key) in the server's --clients-dir, and check --server-key names that server's .key")
    elif watch.failure == "protocol":
        text = (f"something listens at {address} but it is not a Likeness3D backend (the ZeroMQ handshake "
                "failed): check the address and port, or whether that backend needs CurveZMQ keys "
                "(--server-key and --client-key)")
    else:
        text = (f"nothing answers at {address} (no connection within {waited:.1f} s): no Likeness3D backend is "
                f"running there. Start one with `likeness3d serve --listen {address}`{_where(address)}, or point "
                "--connect (or $LIKENESS3D_BACKEND) at a running backend")
    return Unreachable(text, field="address")


def _where(address: str) -> str:
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    local = address.startswith(("ipc://", "inproc://")) or host in ("127.0.0.1", "localhost", "[::1]", "::1")
    return "" if local else " on that machine (with CurveZMQ keys or --insecure)"


def timeout_text(request: str, address: str, wait: float, watch: LinkWatch, dropped: bool) -> str:
    """Why a request had no reply in time, in the words of what the client knows of its backend."""
    if watch.linked:
        why = "the backend is connected but did not answer in time (busy with a large message?)"
    elif watch.links:
        why = "backend lost: it was connected and went away; it may be restarting, and its jobs resume when it is back"
    else:
        why = "a connection opened but the backend never completed the handshake"
    text = f"no reply to {request} from {address} within {wait} s: {why}"
    if dropped and request == "submit":
        text += "; the connection dropped while the submit was in flight, so the job may have been accepted (`likeness3d list` shows the jobs)"
    return text


def check_header(msg: M.Message, frames: list) -> None:
    head = frame_len(frames[0])
    if head > MAX_HEADER_BYTES:
        raise TooLarge(f"this {msg.TYPE}'s header is {head} bytes; the protocol allows at most {MAX_HEADER_BYTES} "
                       "(a config map that large is not a config)", field="header")


def check_size(msg: M.Message, frames: list, limit: int, address: str) -> None:
    """The client's side of the backend's message limit: refuse to send what it would refuse."""
    size = sum(frame_len(f) for f in frames)
    if size > limit:
        raise TooLarge(
            f"this {msg.TYPE} is {size} bytes on the wire; the backend at {address} accepts at most "
            f"{limit_text(limit)}: send smaller images or a smaller mesh, or start the backend with a larger "
            "--max-message-mb",
            field="asset" if isinstance(msg, M.Submit) else "data",
        )


def secure(sock: zmq.Socket, server_public_file: Path | str, client_secret_file: Path | str) -> None:
    """CurveZMQ client side: our key pair plus the server's public key (files made by `likeness3d keys`)."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(str(client_secret_file))
    if secret is None:
        raise ValueError(f"{client_secret_file} holds no secret key: pass your .key_secret file")
    server_public, _ = zmq.auth.load_certificate(str(server_public_file))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public
