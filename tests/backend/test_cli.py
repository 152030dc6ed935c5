"""The console script's client subcommands against a real server, and `keys`."""

import json
import os
import re
import time
import subprocess
import sys

import pytest

from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import Cancelled
from likeness3d.protocol.messages import Progress

CLI = [sys.executable, "-m", "likeness3d.backend.cli"]


def cli(*args, env=None, check=True):
    out = subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=120, env=env)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_status_list_fetch_cancel(server, asset, tmp_path):
    with Client(server.address, timeout=20) as c:
        done = c.submit("inspect", asset)
        assert done.wait(300).artifacts[0].name == "inspect.json"
        # long enough (100 s) to be running still when the CLI cancels it, however slow the machine
        slow = c.submit("selftest", asset, {"steps": 2000, "step_seconds": 0.05})
        assert isinstance(next(slow.events(timeout=30)), Progress)  # it runs
    status = json.loads(cli("status", "--connect", server.address).stdout)
    assert status["workers"][0]["device"] == "cpu"
    # the address may also come from the environment
    env = dict(os.environ, LIKENESS3D_BACKEND=server.address)
    job_status = json.loads(cli("status", done.id, env=env).stdout)
    assert job_status["state"] == "done" and job_status["artifacts"] == ["inspect.json", "reference_00.png", "reference_01.png"]
    # times are dates for a person, epoch seconds with --json
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", job_status["created"]), job_status["created"]
    raw = json.loads(cli("status", done.id, "--json", env=env).stdout)
    assert isinstance(raw["created"], float)
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(raw["created"])) == job_status["created"].rsplit(" ", 1)[0]
    listing = cli("list", "--connect", server.address).stdout
    assert done.id in listing and slow.id in listing
    fetched = cli("fetch", done.id, "--out", str(tmp_path / "f"), "--connect", server.address).stdout
    assert "inspect.json" in fetched
    assert sorted(p.name for p in (tmp_path / "f").iterdir()) == job_status["artifacts"]
    with Client(server.address, timeout=20) as c:
        assert (tmp_path / "f" / "inspect.json").read_bytes() == c.fetch(done.id, "inspect.json")
        assert c.status(slow.id)["state"] == "running"
    assert "cancel requested" in cli("cancel", slow.id, "--connect", server.address).stdout
    with Client(server.address, timeout=20) as c:
        with pytest.raises(Cancelled, match="cancelled by request"):
            c.attach(slow.id).wait(60)  # the job's end, whether it came before or after the attach
        assert c.status(slow.id)["state"] == "cancelled"
    bad = cli("fetch", "20990101-000000-deadbeef", "--out", str(tmp_path), "--connect", server.address, check=False)
    assert bad.returncode == 2 and "unknown_job" in bad.stderr


def test_unreachable_backend_is_a_clear_error():
    out = cli("status", "--connect", "tcp://127.0.0.1:9", "--timeout", "1", check=False)
    assert out.returncode == 2 and "[timeout]" in out.stderr and "tcp://127.0.0.1:9" in out.stderr


def test_keys(tmp_path):
    out = cli("keys", "--out", str(tmp_path), "--name", "studio").stdout
    assert (tmp_path / "studio.key").is_file() and (tmp_path / "studio.key_secret").is_file()
    assert oct((tmp_path / "studio.key_secret").stat().st_mode & 0o777) == "0o600"
    assert "secret key" in out
    bad = cli("keys", "--out", str(tmp_path), "--name", "../x", check=False)
    assert bad.returncode == 2 and "key name" in bad.stderr
    before = (tmp_path / "studio.key_secret").read_bytes()
    again = cli("keys", "--out", str(tmp_path), "--name", "studio", check=False)
    assert again.returncode == 2 and "--force" in again.stderr and "Traceback" not in again.stderr
    assert (tmp_path / "studio.key_secret").read_bytes() == before  # the pair in use is kept
    cli("keys", "--out", str(tmp_path), "--name", "studio", "--force")
    assert (tmp_path / "studio.key_secret").read_bytes() != before
