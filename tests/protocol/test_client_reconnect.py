"""The client across broken connections and restarted backends: every outcome of its jobs reaches it.

Real backend processes over real sockets: a relay breaks the TCP connection under a running job (libzmq
reconnects in about 0.1 s, which no heartbeat can see), and backends restart on the same address, quickly
and after a long pause, while the client has running and queued jobs.
"""

import queue
import time

import pytest

from likeness3d.protocol.client import Client, ConnectionState
from likeness3d.protocol.errors import Internal
from likeness3d.protocol.messages import Progress

from tcp_relay import TcpRelay, free_port

SLOW = {"steps": 400, "step_seconds": 0.05, "preview_size": 4}


def _first_progress(job, timeout=60):
    for ev in job.events(timeout=timeout):
        if isinstance(ev, Progress):
            return ev
    raise AssertionError("the job ended before its first progress event")


def _wait_state(client, state, timeout=60):
    """Wait for a ConnectionState event in client.events (other events are skipped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = client.events.get(timeout=0.5)
        except queue.Empty:
            continue
        if isinstance(ev, ConnectionState) and ev.state == state:
            return
    raise AssertionError(f"the client did not report {state!r} within {timeout} s (state {client.state})")


def test_a_transient_reconnect_reattaches_running_and_queued_jobs(server, asset):
    with TcpRelay(server.address) as relay, Client(relay.address, timeout=30) as c:
        running = c.submit("selftest", asset, {"steps": 200, "step_seconds": 0.05, "preview_size": 4})
        queued = [c.submit("inspect", asset, {"overlay_points": 5 + i}) for i in range(2)]
        _first_progress(running)
        assert relay.drop() == 1  # the connection breaks; libzmq is back through the relay in ~0.1 s
        steps = []
        for ev in running.events(timeout=60):
            if isinstance(ev, Progress):
                steps.append(ev.step)
        assert running.final.artifacts[0].name == "selftest.json", running.final
        assert steps == sorted(set(steps)) and steps[-1] == 200  # events resumed to the last step, in order, no replay
        for q in queued:
            assert q.wait(60).artifacts[0].name == "inspect.json"
        assert c.reconnects >= 1 and c.state == "connected"


def _restart(server_factory, first, address, pause_until_lost=None):
    """Stop `first` and start a backend on the same address and store; returns it and the seconds the
    address had no backend (measured, printed: the scenario, not a synchronisation)."""
    t0 = time.monotonic()
    assert first.stop() == 0
    down = time.monotonic()
    if pause_until_lost is not None:
        pause_until_lost()
    second = server_factory(listen=address)
    print(f"stop took {down - t0:.2f} s; no backend at {address} for {time.monotonic() - down:.2f} s")
    return second


def test_a_quick_restart_on_the_same_address_delivers_every_outcome(server_factory, asset):
    address = f"tcp://127.0.0.1:{free_port()}"
    first = server_factory(listen=address)
    with Client(address, timeout=30) as c:
        before = c.hello()
        running = c.submit("selftest", asset, SLOW)
        queued = [c.submit("inspect", asset, {"overlay_points": 5 + i}) for i in range(3)]
        _first_progress(running)
        _restart(server_factory, first, address)
        # the running job ended with the server that ran it; the new one reports that outcome (its seq
        # numbered afresh by a backend that restarted), and runs the queued jobs
        with pytest.raises(Internal, match="the server stopped while the job ran"):
            running.wait(60)
        for q in queued:
            assert q.wait(60).artifacts[0].name == "inspect.json"
        assert c.reconnects >= 1 and c.epoch != before.epoch and c.server_info.epoch == c.epoch


def test_a_long_restart_delivers_every_outcome(server_factory, asset):
    address = f"tcp://127.0.0.1:{free_port()}"
    first = server_factory(listen=address)
    with Client(address, timeout=30, heartbeat=0.5) as c:
        running = c.submit("selftest", asset, SLOW)
        queued = [c.submit("inspect", asset, {"overlay_points": 5 + i}) for i in range(3)]
        _first_progress(running)

        def long_pause():
            _wait_state(c, "lost")
            time.sleep(5)  # the scenario: the address stays empty longer than any heartbeat window

        _restart(server_factory, first, address, long_pause)
        with pytest.raises(Internal, match="the server stopped while the job ran"):
            running.wait(60)
        for q in queued:
            assert q.wait(60).artifacts[0].name == "inspect.json"
        _wait_state(c, "connected")
        assert c.state == "connected" and c.reconnects >= 1
