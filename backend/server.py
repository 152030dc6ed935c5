"""The backend's front: one ROUTER socket and a poller in one thread; recv -> validate -> dispatch -> reply.

GPU work happens under an executor (executor.py): supervised worker processes on this host (workers.py, the
default) or actors of a Ray cluster (ray_executor.py); this loop also watches them: a worker that dies is
replaced and its job ends as `worker_crashed`; a cancel that a pipeline ignores past the grace period is
enforced by ending the worker. `_handle` is the one catch-all: the server never dies of a message;
`_guarded` keeps a fault in the worker bookkeeping (a full disk, a vanished file) from ending the loop.

A submit's inputs are written to the store on a thread (`_storing`): a 64 MB asset never stalls the loop, and
the `accepted` replies go out in the order the submits arrived, each once.
"""

from __future__ import annotations

import logging
import os
import secrets
import sys
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
import numpy as np
import zmq

from .. import __version__
from ..protocol import messages as M
from ..protocol.errors import BadMessage, Internal, ProtocolError
from ..protocol.wake import drain
from ..protocol.framing import DEFAULT_MAX_MESSAGE_BYTES, receive_limit
from .inputs.budget import check_pixel_budget
from .jobs import JobManager
from .owner import claim
from .model_dirs import models_found
from .pipelines import available, get_pipeline
from .security import is_local_address, secure_server_socket, submitted_models
from .store import FINAL_STATES, JobStore, media_type, sync_path
from .executor import Executor, LocalExecutor

log = logging.getLogger("likeness3d.server")

CANCEL_GRACE_S = 1.0
"""A running job that has not stopped this long after `cancel` has its worker ended."""
POLL_MS = 20
RETRY_UNSAVED_S = 1.0
"""How often states that a full disk refused are written again."""


class Server:
    def __init__(
        self,
        listen: str,
        store: Path | str,
        devices: list[str],
        *,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        server_secret_key: Path | str | None = None,
        clients_dir: Path | str | None = None,
        insecure: bool = False,
        models_dir: Path | None = None,
        executor=None,
    ):
        """`executor`: None for the local one (a worker per entry of `devices`), else a callable
        `(jobs, publish, store_root, epoch) -> Executor` (the Ray executor's `RayExecutor.factory`)."""
        secure = server_secret_key is not None or clients_dir is not None
        if secure and (server_secret_key is None or clients_dir is None):
            raise ValueError("CurveZMQ needs both --server-key (a .key_secret file) and --clients-dir")
        if not is_local_address(listen) and not secure and not insecure:
            raise ValueError(
                f"refusing to listen on {listen} without CurveZMQ: pass --server-key and --clients-dir "
                "(make keys with `likeness3d keys`), or --insecure if this network is trusted"
            )
        self.listen = listen
        self.store = JobStore(store)
        self.owner = claim(self.store.root)  # one server a store; its workers carry this epoch
        try:
            self.jobs = JobManager(self.store)
            self.max_message_bytes = int(max_message_bytes)
            self.models = models_found(models_dir)
            root = str(self.store.root)
            if executor is None:
                self.executor: Executor = LocalExecutor(self.jobs, self._publish, devices, root, self.owner.epoch)
            else:
                self.executor = executor(self.jobs, self._publish, root, self.owner.epoch)
            self._storer = ThreadPoolExecutor(1, thread_name_prefix="likeness3d-store",  # one: submits keep their order
                                              initializer=_yield_to_the_loop)
            # state files are replaced whole on the loop, and made durable on the store thread: an fsync behind a
            # 64 MB input being written takes a disk's while
            self.store.sync_later = lambda path: self._storer.submit(sync_path, path)
            self._storing: deque[tuple[Future, bytes, int, str, dict]] = deque()
            self._wake_r, self._wake_w = os.pipe()
            os.set_blocking(self._wake_r, False)
            os.set_blocking(self._wake_w, False)
            self._next_retry = 0.0
            self.ctx = zmq.Context()
            self.router = self.ctx.socket(zmq.ROUTER)
            self.router.setsockopt(zmq.LINGER, 0)
            self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a gone client raises instead of vanishing
            self.router.setsockopt(zmq.SNDHWM, 100_000)
            self.router.setsockopt(zmq.RCVHWM, 100_000)
            # libzmq drops, without a reply, a peer whose single frame is over MAXMSGSIZE: the socket reads
            # frames well past the limit and framing.decode answers `too_large` naming it (receive_limit)
            self.router.setsockopt(zmq.MAXMSGSIZE, receive_limit(self.max_message_bytes))
            self.epoch = f"{time.time_ns():x}-{secrets.token_hex(4)}"  # this run; clients notice a restart by it
            self.auth = secure_server_socket(self.ctx, self.router, server_secret_key, clients_dir) if secure else None
            self.router.bind(listen)
        except BaseException:
            self.owner.release()  # a server that did not start (a busy port) holds no store
            raise
        self.address = self.router.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._stop = threading.Event()
        self._poller: zmq.Poller | None = None
        self._polled_fds: set[int] = set()
        self._handlers = {
            "hello": self._on_hello,
            "submit": self._on_submit,
            "cancel": self._on_cancel,
            "status": self._on_status,
            "list": self._on_list,
            "fetch": self._on_fetch,
            "attach": self._on_attach,
            "release": self._on_release,
            "ping": self._on_ping,
        }

    # -- lifecycle --------------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        self.executor.start()
        try:
            while not self._stop.is_set():
                self._poll_once()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        self._storer.shutdown(wait=True)  # a submit being stored lands whole (queued: the next server runs it)
        self._guarded(self._finish_submits)  # ... and its client hears `accepted`, so it never submits twice
        self.store.sync_later = None  # from here every state write syncs itself
        self.executor.stop()
        self.jobs.retry_unsaved()
        if self.auth is not None:
            self.auth.stop()
        self.router.close(0)
        self.ctx.term()
        os.close(self._wake_r)
        os.close(self._wake_w)
        self.owner.release()

    def _poll_once(self) -> None:
        fds = self.executor.poll_fds()
        if self._poller is None or set(fds) != self._polled_fds:  # rebuilt only when a worker changed
            self._poller = zmq.Poller()
            self._poller.register(self.router, zmq.POLLIN)
            self._poller.register(self._wake_r, zmq.POLLIN)
            for fd in fds:
                self._poller.register(fd, zmq.POLLIN)
            self._polled_fds = set(fds)
        ready = dict(self._poller.poll(POLL_MS))
        if self.router in ready:
            for _ in range(1000):  # drain, but let the workers speak between bursts
                try:
                    frames = self.router.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._handle(frames)
        if self._wake_r in ready:
            drain(self._wake_r)
        self._guarded(self._finish_submits)
        for fd, drain_worker in fds.items():
            if fd in ready:
                self._guarded(drain_worker)
        self._guarded(self.executor.step)
        if self.jobs.unsaved and time.monotonic() > self._next_retry:
            self._next_retry = time.monotonic() + RETRY_UNSAVED_S
            self._guarded(self.jobs.retry_unsaved)

    def _guarded(self, fn, *args) -> None:
        """Run a step of the loop; a bug or a store fault in it is logged and the server serves on."""
        try:
            fn(*args)
        except Exception:
            log.exception("internal error in %s; the server carries on", getattr(fn, "__name__", fn))

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full (the loop is awake anyway) or closed (shutting down)

    # -- requests ---------------------------------------------------------------------------------------
    def _handle(self, frames: list) -> None:
        identity = frames[0].bytes
        request_id = 0
        try:
            request_id, msg = M.parse(frames[1:], self.max_message_bytes, allowed=M.REQUESTS)
            reply = self._handlers[msg.TYPE](identity, request_id, msg)
        except ProtocolError as exc:
            request_id = getattr(exc, "request_id", request_id)
            reply = M.error_message(exc)
        except Exception as exc:  # the one catch-all: a bug answers `internal`, the server lives on
            log.exception("internal error handling a message")
            reply = M.error_message(Internal(f"{type(exc).__name__}: {exc}"))
        if reply is not None:
            self._send(identity, reply, request_id)

    def _on_hello(self, identity, rid, msg: M.Hello) -> M.Message:
        return M.ServerInfo(
            version=M.PROTOCOL_VERSION,
            server=f"likeness3d {__version__}",
            gpus=self.executor.gpus(),
            pipelines=available(),
            models=self.models,
            max_message_bytes=self.max_message_bytes,
            workers=self.executor.describe(),
            epoch=self.epoch,
        )

    def _on_submit(self, identity, rid, msg: M.Submit) -> None:
        spec = get_pipeline(msg.pipeline)
        if msg.asset is None:
            raise BadMessage("submit needs an asset", field="asset")
        check_pixel_budget(msg.asset)  # serve --max-reference-megapixels: too_large before anything is stored
        config = spec.build_config(msg.config)  # an unknown key or a wrong type fails here, before anything is stored
        config_map = submitted_models(msg.config, getattr(config, "models", ""), self.models["dir"])
        fut = self._storer.submit(self.store.create, spec.name, config_map, msg.asset)
        self._storing.append((fut, identity, rid, spec.name, config_map))
        fut.add_done_callback(lambda _: self._wake())
        return None  # answered by _finish_submits once the inputs are on disk

    def _finish_submits(self) -> None:
        """Reply to stored submits, oldest first: `accepted` and queued, or the typed error of the store."""
        while self._storing and self._storing[0][0].done():
            fut, identity, rid, pipeline, config = self._storing.popleft()
            exc = fut.exception()
            if exc is not None:
                if not isinstance(exc, ProtocolError):
                    log.error("storing a submit failed", exc_info=exc)
                    exc = Internal(f"{type(exc).__name__}: {exc}")
                self._send(identity, M.error_message(exc), rid)
                continue
            rec = self.jobs.add(fut.result(), pipeline, config)
            rec.subscribers[identity] = rid
            self.store.log(rec.id, f"submitted {pipeline}")
            self._send(identity, M.Accepted(job=rec.id, position=self.jobs.position(rec.id)), rid)

    def _on_cancel(self, identity, rid, msg: M.Cancel) -> M.Message:
        rec = self.jobs.get(msg.job)
        if rec.state == "queued":
            self._publish(rec.id, self.jobs.cancel_queued(rec.id))
        elif rec.state == "running" and not rec.cancel_requested:
            rec.cancel_requested = True
            self.executor.cancel(rec, CANCEL_GRACE_S)
        return M.Ack(job=rec.id, info={"state": rec.state})

    def _on_status(self, identity, rid, msg: M.Status) -> M.Message:
        if msg.job is not None:
            rec = self.jobs.get(msg.job)
            info = rec.summary()
            info["position"] = self.jobs.position(rec.id)
            return M.StatusReply(info=info)
        counts: dict[str, int] = {}
        for r in self.jobs.jobs.values():
            counts[r.state] = counts.get(r.state, 0) + 1
        cluster = self.executor.cluster()
        return M.StatusReply(
            info={
                "server": f"likeness3d {__version__}",
                "address": self.address,
                "store": str(self.store.root),
                "queue": list(self.jobs.queue),
                "jobs": counts,
                "quarantined": list(self.jobs.quarantined),  # damaged job folders set aside at start
                "unsaved": sorted(self.jobs.unsaved),  # jobs whose state the store could not take yet
                "workers": self.executor.describe(),
                "executor": self.executor.kind,
            } | ({"cluster": cluster} if cluster is not None else {})
        )

    def _on_list(self, identity, rid, msg: M.List) -> M.Message:
        return M.ListReply(jobs=self.jobs.listing())

    def _on_fetch(self, identity, rid, msg: M.Fetch) -> M.Message:
        rec = self.jobs.get(msg.job)
        if rec.state != "done":
            raise BadMessage(f"job {rec.id} is {rec.state}; artifacts exist once it is done", field="job")
        path = self.store.artifact_path(rec.id, msg.name)
        data = np.fromfile(path, dtype=np.uint8)
        return M.Artifact(job=rec.id, name=msg.name, media_type=media_type(msg.name), data=data)

    def _on_attach(self, identity, rid, msg: M.Attach) -> None:
        rec = self.jobs.get(msg.job)
        self._send(identity, M.Ack(job=rec.id, info={"state": rec.state}), rid)
        if rec.final is not None:
            self._send(identity, rec.final, rid)
            return None
        if rec.last_progress is not None:
            self._send(identity, rec.last_progress, rid)
        rec.subscribers[identity] = rid
        return None

    def _on_release(self, identity, rid, msg: M.Release) -> M.Message:
        return M.Released(info=self.executor.release())

    def _on_ping(self, identity, rid, msg: M.Ping) -> M.Message:
        return M.Pong(data=msg.data, epoch=self.epoch)

    # -- sending ----------------------------------------------------------------------------------------
    def _send(self, identity: bytes, msg: M.Message, request_id: int) -> bool:
        try:
            self.router.send_multipart([identity, *msg.to_frames(request_id)], zmq.NOBLOCK, copy=False)
            return True
        except zmq.ZMQError as exc:
            if exc.errno in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                return False
            raise

    def _publish(self, job_id: str, msg: M.Message) -> None:
        rec = self.jobs.jobs[job_id]
        gone = [ident for ident, rid in rec.subscribers.items() if not self._send(ident, msg, rid)]
        for ident in gone:
            rec.subscribers.pop(ident, None)  # a dropped client re-attaches; the job carries on
        if rec.state in FINAL_STATES:
            rec.subscribers.clear()


def _yield_to_the_loop() -> None:
    """The store thread runs at a lower CPU priority than the loop (Linux: per-thread niceness), so that on a
    busy machine a 64 MB write never takes the loop's turn to answer a ping."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        except OSError:
            pass


def serve_in_thread(server: Server) -> threading.Thread:
    """Run `server` on a background thread (tests, the demo); stop with server.stop() then join."""
    t = threading.Thread(target=server.serve_forever, name="likeness3d-server", daemon=True)
    t.start()
    return t
