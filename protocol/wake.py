"""A self-pipe that wakes a zmq poller from another thread (the client's I/O loop, the server's loop)."""

from __future__ import annotations

import os


def drain(fd: int) -> None:
    """Read a non-blocking wake pipe empty: the wake-ups it holds are all answered by the one poll turn."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass
