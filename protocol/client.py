"""The one client, used by the add-on, headless scripts and the CLI.

A background I/O thread owns the DEALER socket (zmq sockets belong to one thread). Callers hand it
requests through a queue and a wake-up pipe; replies resolve futures; job events go, in order and without
duplicates, to each job's handle and to `client.events`, a thread-safe queue a GUI drains from a timer.
libzmq's socket monitor (protocol/link.py) reports every drop and new handshake, however short the break:
on each new link the client says hello (the backend's epoch and message limit), re-attaches every
unfinished job and re-sends the idempotent requests in flight. A heartbeat tells a slow backend from a
lost one (`client.state`); its pong's epoch changes when the backend restarted (a fresh event sequence).
A request made while no backend was ever reached fails within `connect_timeout` as `Unreachable`.
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import zmq

from . import messages as M
from .assets import Asset
from .errors import BadMessage, Cancelled, ProtocolError, Timeout, UnknownJob, error_from_code
from .framing import frame_len
from .handles import ConnectionState, JobHandle
from .wake import drain
from .link import LinkWatch, check_header, check_size, secure, timeout_text, unreachable

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
HEARTBEAT_S = 1.0
CONNECT_TIMEOUT_S = 1.5
"""A request waits this long for a first connection before `Unreachable` says nothing answers."""
_RECV_LIMIT = 1 << 40  # the client trusts its server's replies' size; the server limits what it receives
IDEMPOTENT = frozenset({"hello", "status", "list", "fetch", "attach", "ping", "cancel", "release"})
"""Requests sent again on a new link when the old one dropped before their reply (never a submit)."""


@dataclass
class _Pending:
    fut: Future
    msg: M.Message
    since: float
    on_reply: Callable[[M.Message], None] | None = None  # the client's own requests: handled on the I/O thread
    dropped: bool = False  # in flight when the connection dropped


class Client:
    """Connects (lazily, in the background) to a Likeness3D backend."""

    def __init__(
        self,
        address: str | None = None,
        *,
        timeout: float = 30.0,
        server_public_key: Path | str | None = None,
        client_secret_key: Path | str | None = None,
        heartbeat: float = HEARTBEAT_S,
        connect_timeout: float = CONNECT_TIMEOUT_S,
    ):
        self.address = address or os.environ.get("LIKENESS3D_BACKEND") or DEFAULT_ADDRESS
        self.timeout, self.heartbeat, self.connect_timeout = timeout, heartbeat, connect_timeout
        if (server_public_key is None) != (client_secret_key is None):
            raise ValueError("CurveZMQ needs both server_public_key (the server's .key) and client_secret_key (your .key_secret)")
        self._curve = (server_public_key, client_secret_key) if server_public_key is not None else None
        self.events: queue.Queue = queue.Queue()
        self.state = "connecting"
        self.server_info: M.ServerInfo | None = None
        self.epoch: str | None = None  # the backend run last heard from (ServerInfo / Pong)
        self.reconnects = 0  # links after the first: each one re-attached the unfinished jobs
        self._ids = itertools.count(1)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[int, _Pending] = {}
        self._jobs: dict[str, JobHandle] = {}
        self._backlog: list[tuple[int, list]] = []  # (request id, frames) zmq could not take yet (I/O thread)
        self._watch: LinkWatch | None = None
        self._closed = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._ctx = zmq.Context()
        self._thread = threading.Thread(target=self._io_loop, name="likeness3d-client-io", daemon=True)
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    # -- public API -------------------------------------------------------------------------------------
    def hello(self, client_name: str = "likeness3d-client") -> M.ServerInfo:
        self.server_info = self._request(M.Hello(client=client_name))
        return self.server_info

    def submit(self, pipeline: str, asset: Asset, config: dict | None = None) -> JobHandle:
        msg = M.Submit(pipeline=pipeline, asset=asset, config=dict(config or {}))
        rid = next(self._ids)
        accepted = self._request(msg, frames=msg.to_frames(rid), rid=rid)
        return self._jobs[accepted.job]

    def attach(self, job_id: str) -> JobHandle:
        known = job_id in self._jobs
        handle = self._jobs.setdefault(job_id, JobHandle(self, job_id))
        try:
            self._request(M.Attach(job=job_id))
        except ProtocolError:
            if not known:
                self._jobs.pop(job_id, None)  # not a job of this backend: nothing to follow
            raise
        return handle

    def cancel(self, job_id: str) -> dict:
        return self._request(M.Cancel(job=job_id)).info

    def status(self, job_id: str | None = None) -> dict:
        return self._request(M.Status(job=job_id)).info

    def list(self) -> list[dict]:
        return self._request(M.List()).jobs

    def fetch(self, job_id: str, name: str) -> bytes:
        return self._request(M.Fetch(job=job_id, name=name)).data.tobytes()

    def fetch_all(self, job_id: str, out_dir: Path | str) -> list[Path]:
        """Every artifact of a finished job, written to out_dir (created)."""
        info = self.status(job_id)
        if info["state"] != "done":
            raise UnknownJob(f"job {job_id} is {info['state']}; it has no artifacts to fetch", field="job")
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name in info.get("artifacts", []):
            parts = [p for p in str(name).split("/") if p]
            if not parts or len(parts) > 2 or any(p.startswith(".") for p in parts):
                raise BadMessage(f"job {job_id} lists the artifact {name!r:.80}, which is no artifact name", field="artifacts")
            path = out.joinpath(*parts)
            path.parent.mkdir(exist_ok=True)
            path.write_bytes(self.fetch(job_id, name))
            paths.append(path)
        return paths

    def release(self) -> dict:
        return self._request(M.Release()).info

    def ping(self, data=None, timeout: float | None = None) -> float:
        t0 = time.perf_counter()
        self._request(M.Ping(data=data), timeout=timeout)
        return time.perf_counter() - t0

    def ping_echo(self, data, timeout: float | None = None):
        """Send an array and return the echoed array (a throughput probe)."""
        return self._request(M.Ping(data=data), timeout=timeout).data

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        self._wake()
        self._thread.join(5)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._ctx.term()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- request plumbing -------------------------------------------------------------------------------
    def _request(self, msg: M.Message, *, frames: list | None = None, rid: int | None = None, timeout: float | None = None) -> Any:
        """Send `msg` (or its pre-encoded `frames`, built with request id `rid`) and wait for the reply."""
        if self._closed.is_set():
            raise ProtocolError("the client is closed")
        if rid is None:
            rid = next(self._ids)
        if frames is None:
            frames = msg.to_frames(rid)
        if len(frames) > 1 or frame_len(frames[0]) > 1 << 16:
            self._check_size(msg, frames)
        fut: Future = Future()
        self._pending[rid] = _Pending(fut, msg, time.monotonic())
        self._outbox.put((rid, frames))
        self._wake()
        wait = self.timeout if timeout is None else timeout
        try:
            reply = fut.result(timeout=wait)
        except FutureTimeout:
            pending = self._pending.pop(rid, None)
            dropped = pending is not None and pending.dropped
            raise Timeout(timeout_text(msg.TYPE, self.address, wait, self._watch, dropped)) from None
        if isinstance(reply, M.Error):
            raise error_from_code(reply.code, reply.message, reply.field)
        return reply

    def _check_size(self, msg: M.Message, frames: list) -> None:
        """Refuse, before sending, what the backend would refuse: it said its limit in `hello`."""
        check_header(msg, frames)
        if self.server_info is None:
            self.hello()
        check_size(msg, frames, self.server_info.max_message_bytes, self.address)

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full or closed: the I/O thread is awake anyway

    # -- the I/O thread ---------------------------------------------------------------------------------
    def _io_loop(self) -> None:
        sock = self._ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SNDHWM, 100_000)
        sock.setsockopt(zmq.RCVHWM, 100_000)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # queue only to a live link; the backlog holds the rest, in our hands
        try:
            if self._curve is not None:
                secure(sock, *self._curve)
            self._watch = watch = LinkWatch(sock)
            sock.connect(self.address)
        except BaseException as exc:  # surfaced to the constructor
            self._error = exc
            sock.close(0)
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(watch.socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        self._last_heard, self._heartbeat_id, heartbeat_sent = time.monotonic(), None, 0.0
        try:
            while not self._closed.is_set():
                ready = dict(poller.poll(10 if self._backlog else int(min(250, self.heartbeat * 500))))
                if self._wake_r in ready:
                    drain(self._wake_r)
                if watch.socket in ready:
                    for word in watch.poll():
                        self._on_link(word)
                while True:
                    try:
                        self._backlog.append(self._outbox.get_nowait())
                    except queue.Empty:
                        break
                while self._backlog:
                    try:
                        sock.send_multipart(self._backlog[0][1], zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self._backlog.pop(0)
                if sock in ready:
                    for _ in range(1000):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._last_heard = time.monotonic()
                        if self.state == "lost" and watch.linked:
                            self._set_state("connected")
                            self._reattach()  # it stopped answering for a while: follow its jobs again
                        rid, msg = self._parse(frames)
                        if msg is not None:
                            self._on_message(rid, msg)
                now = time.monotonic()
                if watch.hopeless():
                    self._fail_unreachable(now)
                if self._heartbeat_id is not None and self._heartbeat_id not in self._pending:
                    self._heartbeat_id = None  # answered
                if watch.linked and now - self._last_heard > self.heartbeat and self._heartbeat_id is None:
                    self._heartbeat_id = self._send_own(M.Ping(), self._on_pong)
                    heartbeat_sent = now
                if self._heartbeat_id is not None and now - heartbeat_sent > max(3 * self.heartbeat, 2.0):
                    self._pending.pop(self._heartbeat_id, None)
                    self._heartbeat_id = None
                    self._set_state("lost")
        finally:
            watch.close(sock)
            sock.close(0)
            for pending in list(self._pending.values()):
                if not pending.fut.done():
                    pending.fut.set_exception(ProtocolError("the client was closed"))

    def _send_own(self, msg: M.Message, on_reply: Callable[[M.Message], None] | None = None) -> int:
        """A request of the client's own (heartbeat, hello on a new link, re-attach), from the I/O thread."""
        rid = next(self._ids)
        self._pending[rid] = _Pending(Future(), msg, time.monotonic(), on_reply or (lambda _: None))
        self._backlog.append((rid, msg.to_frames(rid)))
        return rid

    def _on_link(self, word: str) -> None:
        """A monitor event: on a drop, note what was in flight; on a new link, pick everything up again."""
        if word == "dropped":
            for rid, pending in list(self._pending.items()):
                if pending.on_reply is not None:
                    self._pending.pop(rid, None)  # our own: sent afresh on the next link
                else:
                    pending.dropped = True
            self._heartbeat_id = None
            self._set_state("lost")
        elif word == "linked":
            self._last_heard = time.monotonic()
            first = self._watch.links == 1
            self._send_own(M.Hello(client="likeness3d-client"), lambda msg: None)
            if not first:
                self.reconnects += 1
                self._reattach()
                for rid, pending in list(self._pending.items()):
                    if pending.dropped and pending.msg.TYPE in IDEMPOTENT:
                        pending.dropped = False
                        self._backlog.append((rid, pending.msg.to_frames(rid)))
            self._set_state("connected")

    def _reattach(self) -> None:
        """Follow every unfinished job again: the backend answers with its state, then its events."""
        for job_id, handle in list(self._jobs.items()):
            if not handle.done:
                self._send_own(M.Attach(job=job_id), lambda msg, h=handle: self._reattached(h, msg))

    def _reattached(self, handle: JobHandle, reply: M.Message) -> None:
        if isinstance(reply, M.Error) and reply.seq is None:
            # a backend that does not know the job (another store?): its outcome is this error, not silence
            final = M.Error(code=reply.code, job=handle.id, field=reply.field,
                            message=f"after reconnecting to {self.address}: {reply.message}")
            if handle._deliver(final):
                self.events.put(final)

    def _on_epoch(self, epoch: str, reattach: bool) -> None:
        if not epoch:
            return
        if self.epoch is not None and epoch != self.epoch:
            for handle in self._jobs.values():
                handle._new_sequence()  # a restarted backend numbers its events afresh
            if reattach:
                self._reattach()
        self.epoch = epoch

    def _on_pong(self, msg: M.Message) -> None:
        if isinstance(msg, M.Pong):
            self._on_epoch(msg.epoch, reattach=True)

    def _fail_unreachable(self, now: float) -> None:
        """No backend was ever reached: requests older than connect_timeout fail now, saying why."""
        failed = set()
        for rid, pending in list(self._pending.items()):
            waited = now - pending.since
            if self._watch.failure is not None or waited > self.connect_timeout:
                self._pending.pop(rid, None)
                failed.add(rid)
                if not pending.fut.done():
                    pending.fut.set_exception(unreachable(self.address, self._watch, waited))
        if failed:  # never sent: a backend that appears later must not run a request its caller gave up on
            self._backlog = [entry for entry in self._backlog if entry[0] not in failed]

    def _parse(self, frames: list) -> tuple[int, M.Message | None]:
        try:
            return M.parse(frames, _RECV_LIMIT)
        except ProtocolError as exc:
            error = M.Error(code=exc.code, message=f"unreadable message from the backend: {exc.message}", field=exc.field)
            rid = getattr(exc, "request_id", 0)
            if rid in self._pending:
                return rid, error  # the request it answers fails with the reason, rather than timing out
            self.events.put(error)
            return 0, None

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.events.put(ConnectionState(state))

    def _on_message(self, rid: int, msg: M.Message) -> None:
        job_id = getattr(msg, "job", None)
        is_event = isinstance(msg, (M.Progress, M.Result)) or (isinstance(msg, M.Error) and msg.seq is not None)
        if is_event and job_id is not None:
            handle = self._jobs.get(job_id) or self._jobs.setdefault(job_id, JobHandle(self, job_id))
            if handle._deliver(msg):
                self.events.put(msg)
            return
        pending = self._pending.pop(rid, None)
        if pending is None:
            return  # a reply to a request that timed out, or a second reply to one sent again
        if isinstance(msg, M.Accepted) and isinstance(pending.msg, M.Submit):
            # register the handle before anyone can see the job id, so no event can miss it
            self._jobs.setdefault(msg.job, JobHandle(self, msg.job, pending.msg.pipeline))
        if isinstance(msg, M.ServerInfo):
            self.server_info = msg
            self._on_epoch(msg.epoch, reattach=pending.on_reply is None)
        if pending.on_reply is not None:
            pending.on_reply(msg)
        if not pending.fut.done():
            pending.fut.set_result(msg)


__all__ = ["Client", "JobHandle", "ConnectionState", "Cancelled", "DEFAULT_ADDRESS"]
