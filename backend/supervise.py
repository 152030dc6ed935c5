"""The server's side of its workers: what they report, a worker that dies, an ignored cancel, dispatch.

A mixin of `Server` (server.py), run on its loop: a worker that dies is replaced and its job ends
`worker_crashed` (or `cancelled` when a cancel was being enforced); a job is handed to an idle worker only
once its `running` state is on disk (a full disk ends it with `storage_full` instead).
"""

from __future__ import annotations

import logging
import time

from .workers import Worker

log = logging.getLogger("likeness3d.server")


class WorkerSupervision:
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
                rec = self.jobs.jobs[job_id]
                refused = self.jobs.started(job_id, w.index)
                if refused is not None:  # the store cannot take it (a full disk): the job ends, nothing runs
                    self._publish(job_id, refused)
                    continue
                w.job = job_id
                if not w.send("run", job_id, rec.pipeline, rec.config):
                    self._worker_died(w)
