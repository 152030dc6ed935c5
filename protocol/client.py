"""The one client, used by the add-on, headless scripts and the CLI.

A background I/O thread owns the DEALER socket (zmq sockets belong to one thread). Callers hand it
requests through a queue and a wake-up pipe; replies resolve futures; job events go, in order and without
duplicates, to each job's handle and to `client.events`, a thread-safe queue a GUI drains from a timer.
A heartbeat tells a lost backend from a slow one (`client.state`), and on reconnection every unfinished
job handle is re-attached, so its events resume.
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
from typing import Any, Iterator

import zmq

from . import messages as M
from .assets import Asset
from .errors import Cancelled, ProtocolError, Timeout, TooLarge, UnknownJob, error_from_code
from .framing import frame_len

DEFAULT_ADDRESS = "tcp://127.0.0.1:5555"
HEARTBEAT_S = 1.0
_RECV_LIMIT = 1 << 40  # the client trusts its server's replies' size; the server limits what it receives


@dataclass(frozen=True)
class ConnectionState:
    """An event in `client.events` when the link to the backend changes: "connected" or "lost"."""

    state: str


class JobHandle:
    """A job on the backend: its events in order, and its outcome."""

    def __init__(self, client: "Client", job_id: str, pipeline: str = ""):
        self.client = client
        self.id = job_id
        self.pipeline = pipeline
        self._queue: queue.Queue = queue.Queue()
        self.last_seq = 0
        self.last_progress: M.Progress | None = None
        self.final: M.Result | M.Error | None = None
        self._terminal_delivered = False

    @property
    def done(self) -> bool:
        return self.final is not None

    def _deliver(self, event: M.Message) -> bool:
        """Called on the I/O thread; drops replays of events already seen."""
        seq = getattr(event, "seq", None) or 0
        if seq and seq <= self.last_seq:
            return False
        self.last_seq = max(self.last_seq, seq)
        if isinstance(event, M.Progress):
            self.last_progress = event
        else:
            self.final = event
        self._queue.put(event)
        return True

    def events(self, timeout: float | None = None) -> Iterator[M.Progress | M.Result | M.Error]:
        """Yield Progress events, then the Result or the Error (typed in `.code`) that ends the job.
        `timeout` bounds the wait for each next event."""
        while not self._terminal_delivered:
            try:
                ev = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise Timeout(f"no event for job {self.id} within {timeout} s (backend {self.client.state})") from None
            if not isinstance(ev, M.Progress):
                self._terminal_delivered = True
            yield ev

    def wait(self, timeout: float | None = None) -> M.Result:
        """Block until the job ends; return its Result or raise its typed error (Cancelled, WorkerCrashed, ...)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._terminal_delivered:
            while True:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    ev = next(self.events(timeout=left))
                except Timeout:
                    raise Timeout(f"job {self.id} did not finish within {timeout} s") from None
                if not isinstance(ev, M.Progress):
                    break
        if isinstance(self.final, M.Error):
            raise error_from_code(self.final.code, self.final.message, self.final.field)
        return self.final

    def cancel(self) -> None:
        self.client.cancel(self.id)

    def fetch_all(self, out_dir: Path | str) -> list[Path]:
        return self.client.fetch_all(self.id, out_dir)


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
    ):
        self.address = address or os.environ.get("LIKENESS3D_BACKEND") or DEFAULT_ADDRESS
        self.timeout = timeout
        self.heartbeat = heartbeat
        if (server_public_key is None) != (client_secret_key is None):
            raise ValueError("CurveZMQ needs both server_public_key (the server's .key) and client_secret_key (your .key_secret)")
        self._curve = (server_public_key, client_secret_key) if server_public_key is not None else None
        self.events: queue.Queue = queue.Queue()
        self.state = "connecting"
        self.server_info: M.ServerInfo | None = None
        self._ids = itertools.count(1)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[int, tuple[Future, M.Message]] = {}
        self._jobs: dict[str, JobHandle] = {}
        self._job_requests: dict[int, str] = {}  # request id of a submit/attach -> job id, for routing events
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
        frames = msg.to_frames(rid)
        if self.server_info is None:
            self.hello()
        size = sum(frame_len(f) for f in frames)
        if size > self.server_info.max_message_bytes:
            raise TooLarge(
                f"this asset is {size} bytes on the wire; the backend accepts at most {self.server_info.max_message_bytes}",
                field="asset",
            )
        accepted = self._request(msg, frames=frames, rid=rid)
        return self._jobs[accepted.job]

    def attach(self, job_id: str) -> JobHandle:
        handle = self._jobs.get(job_id)
        if handle is None:
            handle = self._jobs.setdefault(job_id, JobHandle(self, job_id))
        self._request(M.Attach(job=job_id))
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
            path = out / Path(name).name
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
        fut: Future = Future()
        self._pending[rid] = (fut, msg)
        self._outbox.put((rid, frames if frames is not None else msg.to_frames(rid), msg))
        self._wake()
        wait = self.timeout if timeout is None else timeout
        try:
            reply = fut.result(timeout=wait)
        except FutureTimeout:
            self._pending.pop(rid, None)
            raise Timeout(f"no reply to {msg.TYPE} from {self.address} within {wait} s (backend {self.state})") from None
        if isinstance(reply, M.Error):
            raise error_from_code(reply.code, reply.message, reply.field)
        return reply

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
        try:
            if self._curve is not None:
                _secure(sock, *self._curve)
            sock.connect(self.address)
        except BaseException as exc:  # surfaced to the constructor
            self._error = exc
            sock.close(0)
            self._ready.set()
            return
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        last_heard = time.monotonic()
        backlog: list[list] = []  # frames zmq could not take yet (no connected peer): retried, never blocking
        heartbeat_id: int | None = None
        heartbeat_sent = 0.0
        try:
            while not self._closed.is_set():
                ready = dict(poller.poll(10 if backlog else int(self.heartbeat * 500)))
                if self._wake_r in ready:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                while True:
                    try:
                        backlog.append(self._outbox.get_nowait()[1])
                    except queue.Empty:
                        break
                while backlog:
                    try:
                        sock.send_multipart(backlog[0], zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    backlog.pop(0)
                if sock in ready:
                    for _ in range(1000):
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        last_heard = time.monotonic()
                        if self.state != "connected":
                            self._set_state("connected", backlog)
                        rid, msg = self._parse(frames)
                        if msg is not None:
                            self._on_message(rid, msg)
                now = time.monotonic()
                if heartbeat_id is not None and heartbeat_id not in self._pending:
                    heartbeat_id = None  # answered
                if now - last_heard > self.heartbeat and heartbeat_id is None:
                    heartbeat_id = next(self._ids)
                    self._pending[heartbeat_id] = (Future(), M.Ping())
                    backlog.append(M.Ping().to_frames(heartbeat_id))
                    heartbeat_sent = now
                if heartbeat_id is not None and now - heartbeat_sent > max(3 * self.heartbeat, 2.0):
                    self._pending.pop(heartbeat_id, None)
                    heartbeat_id = None
                    if self.state != "lost":
                        self._set_state("lost", backlog)
        finally:
            sock.close(0)
            for fut, _ in list(self._pending.values()):
                if not fut.done():
                    fut.set_exception(ProtocolError("the client was closed"))

    def _parse(self, frames: list) -> tuple[int, M.Message | None]:
        try:
            return M.parse(frames, _RECV_LIMIT)
        except ProtocolError as exc:
            self.events.put(M.Error(code=exc.code, message=f"unreadable message from the backend: {exc.message}"))
            return 0, None

    def _set_state(self, state: str, backlog: list) -> None:
        previous, self.state = self.state, state
        self.events.put(ConnectionState(state))
        if state == "connected" and previous == "lost":
            # the backend may have restarted and forgotten this client: follow unfinished jobs again
            for job_id, handle in self._jobs.items():
                if not handle.done:
                    rid = next(self._ids)
                    self._pending[rid] = (Future(), M.Attach(job=job_id))
                    self._job_requests[rid] = job_id
                    backlog.append(M.Attach(job=job_id).to_frames(rid))

    def _on_message(self, rid: int, msg: M.Message) -> None:
        job_id = getattr(msg, "job", None)
        is_event = isinstance(msg, (M.Progress, M.Result)) or (isinstance(msg, M.Error) and msg.seq is not None)
        if is_event and job_id is not None:
            handle = self._jobs.get(job_id)
            if handle is None:
                handle = self._jobs.setdefault(job_id, JobHandle(self, job_id))
            if handle._deliver(msg):
                self.events.put(msg)
            return
        pending = self._pending.pop(rid, None)
        if pending is None:
            return  # a reply to a request that timed out
        fut, request = pending
        if isinstance(msg, M.Accepted) and isinstance(request, M.Submit):
            # register the handle before anyone can see the job id, so no event can miss it
            self._jobs.setdefault(msg.job, JobHandle(self, msg.job, request.pipeline))
        if not fut.done():
            fut.set_result(msg)


def _secure(sock: zmq.Socket, server_public_file: Path | str, client_secret_file: Path | str) -> None:
    """CurveZMQ client side: our key pair plus the server's public key (files made by `likeness3d keys`)."""
    import zmq.auth

    public, secret = zmq.auth.load_certificate(str(client_secret_file))
    if secret is None:
        raise ValueError(f"{client_secret_file} holds no secret key: pass your .key_secret file")
    server_public, _ = zmq.auth.load_certificate(str(server_public_file))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_serverkey = server_public


__all__ = ["Client", "JobHandle", "ConnectionState", "Cancelled", "DEFAULT_ADDRESS"]
