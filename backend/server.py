"""The backend's front: one ROUTER socket and a poller in one thread; recv -> validate -> dispatch -> reply.

GPU work happens in supervised worker processes (workers.py); this loop also watches them: a worker that
dies is replaced and its job ends as `worker_crashed`; a cancel that a pipeline ignores past the grace
period is enforced by ending the worker. `_handle` is the one catch-all: the server never dies of a message.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
import numpy as np
import zmq

from .. import __version__
from ..protocol import messages as M
from ..protocol.errors import BadMessage, Internal, ProtocolError
from ..protocol.framing import DEFAULT_MAX_MESSAGE_BYTES
from .inputs.budget import check_pixel_budget
from .jobs import JobManager
from .model_dirs import models_found
from .pipelines import available, get_pipeline
from .security import is_local_address, secure_server_socket, submitted_models
from .store import FINAL_STATES, JobStore, media_type
from .workers import Worker

log = logging.getLogger("likeness3d.server")

CANCEL_GRACE_S = 1.0
"""A running job that has not stopped this long after `cancel` has its worker ended."""
POLL_MS = 20


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
    ):
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
        self.jobs = JobManager(self.store)
        self.max_message_bytes = int(max_message_bytes)
        self.models = models_found(models_dir)
        self.workers = [Worker(i, d, str(self.store.root)) for i, d in enumerate(devices)]
        self.ctx = zmq.Context()
        self.router = self.ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)  # sending to a gone client raises instead of vanishing
        self.router.setsockopt(zmq.SNDHWM, 100_000)
        self.router.setsockopt(zmq.RCVHWM, 100_000)
        # a single frame beyond the limit disconnects its sender in libzmq; whole messages are checked
        # in framing.decode so that a client sending too much in several frames gets a `too_large` reply
        self.router.setsockopt(zmq.MAXMSGSIZE, self.max_message_bytes)
        self.auth = secure_server_socket(self.ctx, self.router, server_secret_key, clients_dir) if secure else None
        self.router.bind(listen)
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
        for w in self.workers:
            w.start()
        try:
            while not self._stop.is_set():
                self._poll_once()
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        for w in self.workers:
            if w.job is not None:
                self.jobs.failed(w.job, "internal", "the server stopped while the job ran")
            w.stop()
        if self.auth is not None:
            self.auth.stop()
        self.router.close(0)
        self.ctx.term()

    def _poll_once(self) -> None:
        fds = {w.conn.fileno(): w for w in self.workers if w.conn is not None and not w.conn.closed}
        if self._poller is None or set(fds) != self._polled_fds:  # rebuilt only when a worker changed
            self._poller = zmq.Poller()
            self._poller.register(self.router, zmq.POLLIN)
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
        for fd, w in fds.items():
            if fd in ready:
                self._drain_worker(w)
        self._supervise()
        self._dispatch()

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
            gpus=[w.info.get("name", w.device) for w in self.workers if w.device != "cpu"],
            pipelines=available(),
            models=self.models,
            max_message_bytes=self.max_message_bytes,
            workers=[w.describe() for w in self.workers],
        )

    def _on_submit(self, identity, rid, msg: M.Submit) -> M.Message:
        spec = get_pipeline(msg.pipeline)
        if msg.asset is None:
            raise BadMessage("submit needs an asset", field="asset")
        check_pixel_budget(msg.asset)  # serve --max-reference-megapixels: too_large before anything is stored
        config = spec.build_config(msg.config)  # an unknown key or a wrong type fails here, before anything is stored
        config_map = submitted_models(msg.config, getattr(config, "models", ""), self.models["dir"])
        rec = self.jobs.submit(spec.name, config_map, msg.asset)
        rec.subscribers[identity] = rid
        self.store.log(rec.id, f"submitted {spec.name}")
        return M.Accepted(job=rec.id, position=self.jobs.position(rec.id))

    def _on_cancel(self, identity, rid, msg: M.Cancel) -> M.Message:
        rec = self.jobs.get(msg.job)
        if rec.state == "queued":
            self._publish(rec.id, self.jobs.cancel_queued(rec.id))
        elif rec.state == "running" and not rec.cancel_requested:
            rec.cancel_requested = True
            w = self.workers[rec.worker]
            w.send("cancel", rec.id)
            w.cancel_deadline = time.monotonic() + CANCEL_GRACE_S
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
        return M.StatusReply(
            info={
                "server": f"likeness3d {__version__}",
                "address": self.address,
                "store": str(self.store.root),
                "queue": list(self.jobs.queue),
                "jobs": counts,
                "workers": [w.describe() for w in self.workers],
            }
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
        asked, busy = [], []
        for w in self.workers:
            if w.ready and w.send("release"):
                (busy if w.job else asked).append(w.index)
        return M.Released(info={"released": asked, "after_current_job": busy})

    def _on_ping(self, identity, rid, msg: M.Ping) -> M.Message:
        return M.Pong(data=msg.data)

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

    # -- workers ----------------------------------------------------------------------------------------
    def _drain_worker(self, w: Worker) -> None:
        try:
            while w.conn.poll(0):
                self._on_worker_message(w, w.conn.recv())
        except (EOFError, OSError):
            self._worker_died(w)

    def _on_worker_message(self, w: Worker, msg: tuple) -> None:
        kind = msg[0]
        if kind == "ready":
            w.ready, w.info = True, msg[1]
        elif kind == "progress" and msg[1] == w.job:
            self._publish(w.job, self.jobs.progress(*msg[1:]))
        elif kind == "done" and msg[1] == w.job:
            job, w.job, w.cancel_deadline = w.job, None, None
            self._publish(job, self.jobs.done(job))
        elif kind == "failed" and msg[1] == w.job:
            job, w.job, w.cancel_deadline = w.job, None, None
            self._publish(job, self.jobs.failed(job, msg[2], msg[3], msg[4] if len(msg) > 4 else None))
        elif kind == "released":
            log.info("worker %d released: %s", w.index, msg[1])
            w.last_release = msg[1]

    def _worker_died(self, w: Worker) -> None:
        if w.process is not None:
            w.process.join(1.0)  # its pipe closes a moment before it can be reaped
        code = w.process.exitcode if w.process is not None else None
        job = w.job
        w.kill()
        if job is not None:
            rec = self.jobs.jobs[job]
            if rec.cancel_requested:
                err = self.jobs.failed(job, "cancelled", "cancelled; the worker did not stop in time and was ended")
            else:
                err = self.jobs.failed(
                    job, "worker_crashed", f"worker {w.index} ({w.device}) died with exit code {code} while running the job; it was restarted"
                )
            self._publish(job, err)
        w.restarts += 1
        if not w.ready and time.monotonic() - w.started_at < 5.0 and w.restarts > 3:
            time.sleep(min(5.0, 0.25 * w.restarts))  # a worker that cannot start: back off, keep serving
        w.start()

    def _supervise(self) -> None:
        now = time.monotonic()
        for w in self.workers:
            if w.cancel_deadline is not None and now > w.cancel_deadline:
                w.cancel_deadline = None
                w.kill()  # enforced cancel: the pipeline ignored it
                self._worker_died(w)
                continue
            proc = w.process
            if proc is not None and not proc.is_alive():
                if not w.conn.closed:
                    self._drain_worker(w)  # read what it said before it died; EOF restarts it
                if w.process is proc:
                    self._worker_died(w)

    def _dispatch(self) -> None:
        for w in self.workers:
            if not self.jobs.queue:
                return
            if w.idle:
                job_id = self.jobs.next_queued()
                spec = self.store.read_spec(job_id)
                self.jobs.started(job_id, w.index)
                w.job = job_id
                if not w.send("run", job_id, spec["pipeline"], spec["config"]):
                    self._worker_died(w)


def serve_in_thread(server: Server) -> threading.Thread:
    """Run `server` on a background thread (tests, the demo); stop with server.stop() then join."""
    t = threading.Thread(target=server.serve_forever, name="likeness3d-server", daemon=True)
    t.start()
    return t
