"""`likeness3d serve` child processes for the store and restart tests: under a command prefix (a user
namespace, a mount namespace holding a small tmpfs), on a chosen address, with the log outside the store."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


class Served:
    def __init__(self, store: Path, log_path: Path, *, prefix: list[str] | None = None, listen: str = "tcp://127.0.0.1:*",
                 extra: list[str] | None = None, timeout: float = 120.0):
        self.store, self.log_path = store, log_path
        cmd = [*(prefix or []), sys.executable, "-m", "likeness3d.backend.cli", "serve", "--listen", listen,
               "--store", str(store), "--gpus", "cpu", *(extra or [])]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            start = log.tell()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            with open(log_path, "rb") as fh:
                fh.seek(start)
                m = re.search(rb"listening on (tcp://\S+|ipc://\S+)", fh.read())
            if m:
                self.address = m.group(1).decode()
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the backend did not start (rc {self.proc.poll()}): {self.log()[-3000:]}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            return self.kill()

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(30)


def can_run(cmd: list[str]) -> tuple[bool, str]:
    """Whether `cmd` runs here (rc 0), and what it said when it did not."""
    if shutil.which(cmd[0]) is None:
        return False, f"{cmd[0]} is not installed"
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"{' '.join(cmd)}: {exc}"
    return r.returncode == 0, (r.stderr or r.stdout).strip()[-300:]


def non_root_prefix() -> list[str] | None:
    """A prefix that runs a command without root's power over permission bits: none needed when not root, a
    user namespace mapping root to an ordinary uid when root; None when neither is possible."""
    if os.geteuid() != 0:
        return []
    prefix = ["unshare", "--user", "--map-user=1000", "--map-group=1000"]
    ok, _ = can_run(prefix + ["true"])
    return prefix if ok else None


def process_gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone: it runs no code)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def wait_for(predicate, timeout: float, what: str, step: float = 0.02):
    """Poll `predicate` until it is truthy (returned) or `timeout` s pass (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"{what}: not within {timeout} s")
