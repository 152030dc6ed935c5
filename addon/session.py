"""The add-on's one connection to the backend, and the main-thread pump that keeps Blender responsive.

Network I/O never runs on Blender's main thread: the protocol Client has its own I/O thread, and the
client's blocking calls (hello, submit, cancel, fetch) run on one worker thread here. Their outcomes and
the client's job events come back through queues that `tick` drains on the main thread, the only place
that touches bpy. Interactively `tick` is a `bpy.app.timers` callback; in background mode timers never
fire, so blocking operators call `wait_until`, which runs `tick` in a loop.
"""

from __future__ import annotations

import queue
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable
from urllib.parse import urlparse

import bpy

from ..protocol.client import Client, ConnectionState
from ..protocol.errors import ProtocolError
from . import preferences
from .reports import report

_client: Client | None = None
_worker: ThreadPoolExecutor | None = None
_done: queue.SimpleQueue = queue.SimpleQueue()  # (callback, future) of finished worker calls
_pending = 0  # worker calls not yet finished on the main thread
_pipelines: list[str] = []
_info = None  # the last ServerInfo, to refill the panel's state after a file load
_event_handler: Callable[[Any], None] | None = None  # jobs.handle_event, set by jobs (no import cycle)
MAX_EVENTS_PER_TICK = 200  # keep one tick short even when a job floods progress


class ConnectError(ValueError):
    """A connection that must not be attempted; the message says why and how to allow it."""


def client() -> Client | None:
    return _client


def runtime():
    return bpy.context.window_manager.likeness


def pipelines() -> list[str]:
    """Pipelines the backend offers (for the pipeline field's search), or the ones every backend has."""
    return list(_pipelines) or ["inspect", "selftest"]


def is_local(address: str) -> bool:
    parsed = urlparse(address)
    if parsed.scheme in ("ipc", "inproc"):
        return True
    return parsed.hostname in ("127.0.0.1", "localhost", "::1")


def set_event_handler(handler: Callable[[Any], None]) -> None:
    global _event_handler
    _event_handler = handler


# ---------------------------------------------------------------------------------------------
# Connection


def connect(context=None, address: str | None = None, on_ready: Callable[[], None] | None = None) -> None:
    """Open a client for the preferences' address (or `address`) and say hello in the background."""
    prefs = preferences.get(context)
    address = address or prefs.address
    if not is_local(address) and not bpy.app.online_access:
        raise ConnectError(
            f"{address} is not on this machine and Blender's online access is off "
            "(Preferences > System > Network > Allow Online Access)"
        )
    keys = {}
    if prefs.server_public_key or prefs.client_secret_key:
        keys = dict(server_public_key=bpy.path.abspath(prefs.server_public_key) or None,
                    client_secret_key=bpy.path.abspath(prefs.client_secret_key) or None)
    close()
    global _client
    try:
        _client = Client(address, timeout=prefs.timeout, **keys)
    except (ValueError, OSError, ProtocolError) as exc:  # a bad address or key file
        _set_state("error", f"cannot open {address}: {exc}")
        raise ConnectError(f"cannot open {address}: {exc}") from None
    _set_state("connecting", f"connecting to {address}")
    this = _client
    call(this.hello, "likeness3d-blender", on_done=lambda f: _hello_done(this, f, on_ready))


def _hello_done(this: Client, future: Future, on_ready) -> None:
    if this is not _client:
        return  # a hello of a client closed since (reconnect): the new one reports for itself
    try:
        info = future.result()
    except ProtocolError as exc:
        _set_state("error", f"{type(exc).__name__}: {exc.message}")
        report("ERROR", f"cannot reach the backend at {this.address}: {exc.message}")
        return
    global _info
    _info = info
    show_server_info()
    if on_ready is not None:
        on_ready()


def backend_has_gpu() -> bool | None:
    """Whether the connected backend runs its jobs on a GPU (from its hello: its GPUs and its workers'
    devices); None before a hello."""
    if _info is None:
        return None
    devices = [w.get("device", "") for w in (_info.workers or []) if isinstance(w, dict)]
    return bool(_info.gpus) or any(str(d).startswith("cuda") for d in devices)


def show_server_info() -> None:
    """Fill the panel's connection state from the last hello (also after a file load replaced it)."""
    if _client is None or _info is None:
        return
    info = _info
    _pipelines[:] = list(info.pipelines)
    rt = runtime()
    rt.version = info.server
    rt.gpus = ", ".join(info.gpus) or "none (CPU)"
    rt.pipelines = ", ".join(info.pipelines)
    found = info.models.get("found", []) if isinstance(info.models, dict) else list(info.models)
    rt.models = ", ".join(map(str, found)) or "none"
    if _client.state == "lost":
        _set_state("lost", "the backend stopped answering; its jobs resume when it is back")
    else:
        _set_state("connected", f"connected to {_client.address}")


def _set_state(state: str, message: str = "") -> None:
    rt = runtime()
    rt.state, rt.message = state, message
    tag_redraw()


def close() -> None:
    """Forget the client (jobs keep running on the backend; reconnecting reattaches them)."""
    global _client, _info
    if _client is not None:
        _client.close()
        _client = None
    _info = None
    try:
        _set_state("disconnected", "")
    except AttributeError:  # during unregister the runtime property may be gone already
        pass


def shutdown() -> None:
    """Close the client and the worker thread (add-on unregister, tests)."""
    global _worker, _pending
    close()
    if _worker is not None:
        _worker.shutdown(wait=True, cancel_futures=True)
        _worker = None
    while True:
        try:
            _done.get_nowait()
        except queue.Empty:
            break
    _pending = 0
    if bpy.app.timers.is_registered(tick):
        bpy.app.timers.unregister(tick)


# ---------------------------------------------------------------------------------------------
# Work off the main thread, finished on it


def call(fn: Callable, *args, on_done: Callable[[Future], None]) -> Future:
    """Run `fn(*args)` on the worker thread; `on_done(future)` runs later on the main thread, in `tick`."""
    global _worker, _pending
    if _worker is None:
        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="likeness3d-addon")
    _pending += 1
    future = _worker.submit(fn, *args)
    future.add_done_callback(lambda f: _done.put((on_done, f)))
    ensure_timer()
    return future


def busy() -> bool:
    return _pending > 0


def ensure_timer() -> None:
    if not bpy.app.background and not bpy.app.timers.is_registered(tick):
        bpy.app.timers.register(tick, first_interval=0.0, persistent=True)


def tick() -> float | None:
    """Drain finished worker calls and client events; bpy is touched here only. The timer callback."""
    global _pending
    while True:
        try:
            on_done, future = _done.get_nowait()
        except queue.Empty:
            break
        _pending -= 1
        _guarded(on_done, future)
    if _client is not None:
        for _ in range(MAX_EVENTS_PER_TICK):
            try:
                event = _client.events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, ConnectionState):
                _guarded(_on_connection, event)
            elif _event_handler is not None:
                _guarded(_event_handler, event)
    if _client is None and _pending == 0:
        return None  # nothing can arrive: stop the timer until the next connect or call
    return preferences.get().poll_interval


def _on_connection(event: ConnectionState) -> None:
    if event.state == "lost":
        _set_state("lost", "the backend stopped answering; its jobs resume when it is back")
    elif event.state == "connected" and runtime().state == "lost":
        _set_state("connected", f"reconnected to {_client.address}")


def _guarded(fn: Callable, arg: Any) -> None:
    """Run a main-thread handler; a bug in one must not kill the timer, and is never silent."""
    try:
        fn(arg)
    except Exception as exc:  # noqa: BLE001 - reported with its traceback, the timer keeps running
        traceback.print_exc()
        report("ERROR", f"Likeness3D internal error in {getattr(fn, '__name__', fn)}: {type(exc).__name__}: {exc}")


def wait_until(predicate: Callable[[], bool], timeout: float | None = None, interval: float = 0.02) -> bool:
    """Block and poll (background mode): run `tick` until `predicate()` holds; False on timeout."""
    deadline = None if not timeout else time.monotonic() + timeout
    while not predicate():
        if deadline is not None and time.monotonic() > deadline:
            return False
        tick()
        time.sleep(interval)
    return True


def tag_redraw() -> None:
    wm = bpy.context.window_manager
    for window in wm.windows if wm else ():
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()
