"""No backend at the address: the client, `likeness3d status` and `fetch` say so at once, with how to start
one; "lost" is only said of a backend that was there."""

import queue
import re
import subprocess
import sys
import time

import pytest

from likeness3d.protocol.client import Client, ConnectionState
from likeness3d.protocol.errors import Timeout, Unreachable

from tcp_relay import free_port

OLD_TIMEOUT_S = 30.0  # what the client waited before it said "backend lost"


def test_the_client_says_at_once_that_nothing_answers(asset):
    address = f"tcp://127.0.0.1:{free_port()}"
    with Client(address, timeout=OLD_TIMEOUT_S) as c:
        t0 = time.monotonic()
        with pytest.raises(Unreachable, match=f"nothing answers at {re.escape(address)}") as e:
            c.status()
        took = time.monotonic() - t0
        assert f"`likeness3d serve --listen {address}`" in e.value.message and e.value.field == "address"
        assert "lost" not in e.value.message
        print(f"Unreachable after {took:.2f} s")
        assert took < OLD_TIMEOUT_S
        with pytest.raises(Unreachable, match="nothing answers"):
            c.submit("inspect", asset)
        with pytest.raises(Unreachable, match="nothing answers"):
            c.fetch_all("20990101-000000-deadbeef", "unused")


def test_a_request_given_up_on_is_not_run_by_a_backend_that_appears_later(server_factory, asset):
    address = f"tcp://127.0.0.1:{free_port()}"
    with Client(address, timeout=OLD_TIMEOUT_S) as c:
        with pytest.raises(Unreachable):
            c.submit("inspect", asset)
        server_factory(listen=address)
        assert c.list() == []  # the refused submit was never sent
        assert c.submit("inspect", asset).wait(60).artifacts[0].name == "inspect.json"


@pytest.mark.parametrize("argv", [["status"], ["fetch", "20990101-000000-deadbeef", "--out", "OUT"]])
def test_the_command_line_says_at_once_that_nothing_answers(argv, tmp_path):
    address = f"tcp://127.0.0.1:{free_port()}"
    argv = [str(tmp_path / "out") if a == "OUT" else a for a in argv]
    cmd = [sys.executable, "-m", "likeness3d.backend.cli", *argv, "--connect", address]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=OLD_TIMEOUT_S - 5)  # before the old timeout
    assert out.returncode == 2, out
    assert f"error [unreachable]: nothing answers at {address}" in out.stderr
    assert f"likeness3d serve --listen {address}" in out.stderr
    assert "Traceback" not in out.stderr and "lost" not in out.stderr


def test_lost_is_said_of_a_backend_that_was_there(server_factory):
    server = server_factory()
    with Client(server.address, timeout=3) as c:
        c.hello()
        server.stop()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the monitor reports the drop; wait for that event
            try:
                ev = c.events.get(timeout=1)
            except queue.Empty:
                continue
            if isinstance(ev, ConnectionState) and ev.state == "lost":
                break
        else:
            raise AssertionError("the client did not notice its backend went away")
        with pytest.raises(Timeout, match="backend lost: it was connected and went away"):
            c.status()  # it may be restarting: the request waits its timeout, then says what happened
