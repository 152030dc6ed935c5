"""Who holds a job store: one server at a time, each with a new owner epoch.

A server takes the store with `claim(root)`: an exclusive lock on `<root>/.lock` (held as long as the process
lives; the kernel drops it when the process dies, however it dies) and the next epoch, written to
`<root>/owner.json`. Its workers get that epoch and check it before every write into a job
(`JobStore.check_owner`), so a worker left behind by a killed server never writes into a job that the next
server owns. Workers also die with their server (workers.py); the epoch is the guard behind that.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("likeness3d.store")

OWNER_FILE = "owner.json"
LOCK_FILE = ".lock"


class StoreBusy(ValueError):
    """Another live server holds this job store (a ValueError: the command line prints it as one line)."""


@dataclass
class Claim:
    epoch: int | None
    """The new owner epoch; None when it could not be written (a full disk): workers then skip the check."""
    lock_fd: int

    def release(self) -> None:
        try:
            os.close(self.lock_fd)
        except OSError:
            pass


def read_epoch(root: Path) -> int | None:
    """The store's owner epoch, or None when owner.json is missing or unreadable."""
    try:
        data = json.loads((Path(root) / OWNER_FILE).read_text())
        epoch = data.get("epoch") if isinstance(data, dict) else None
        return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None
    except (OSError, ValueError):
        return None


def claim(root: Path) -> Claim:
    """Lock the store for this process and write the next owner epoch; StoreBusy if another server holds it."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system: the epoch still fences off an earlier server's workers
        fcntl = None

    from .store import atomic_write_json

    root = Path(root)
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ValueError(f"the job store {root} cannot be used: {root / LOCK_FILE}: {exc.strerror}; give --store "
                         f"a folder this user can write") from None
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        holder = _read_json(root / OWNER_FILE)
        raise StoreBusy(
            f"the job store {root} is in use by another server (pid {holder.get('pid', '?')}): stop it first, "
            f"or give this one another --store"
        ) from None
    os.set_inheritable(fd, False)
    # after the last epoch, and never one an earlier owner used even when owner.json was lost or damaged
    epoch = max((read_epoch(root) or 0) + 1, time.time_ns() // 1_000_000)
    try:
        atomic_write_json(root / OWNER_FILE, {"epoch": epoch, "pid": os.getpid(), "since": time.time()})
    except OSError as exc:
        log.warning("the job store %s: owner epoch %d not written (%s); workers of an earlier server are "
                    "not fenced off by epoch", root, epoch, exc)
        return Claim(None, fd)
    return Claim(epoch, fd)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}
