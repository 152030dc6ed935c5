"""CurveZMQ: only a client holding an allowed key talks to a keyed server; non-local listening needs keys."""

import subprocess
import sys

import pytest

from likeness3d.backend.security import is_local_address, make_keys
from likeness3d.protocol.client import Client
from likeness3d.protocol.errors import Unreachable


@pytest.fixture
def keys(tmp_path):
    server_pub, server_sec = make_keys(tmp_path / "server", "server")
    good_pub, good_sec = make_keys(tmp_path / "clients", "artist")
    _, bad_sec = make_keys(tmp_path / "strangers", "stranger")
    return {"server_pub": server_pub, "server_sec": server_sec, "clients": tmp_path / "clients", "good": good_sec, "bad": bad_sec}


def test_keyed_server_admits_only_allowed_keys(server_factory, keys):
    server = server_factory(extra=["--server-key", str(keys["server_sec"]), "--clients-dir", str(keys["clients"])])
    with Client(server.address, timeout=10, server_public_key=keys["server_pub"], client_secret_key=keys["good"]) as c:
        assert "inspect" in c.hello().pipelines
    # a refused key, or plain text to a CURVE server: no conversation, and the client says why at once
    with Client(server.address, timeout=20, server_public_key=keys["server_pub"], client_secret_key=keys["bad"]) as c:
        with pytest.raises(Unreachable, match="refused this client's CurveZMQ key"):
            c.hello()
    with Client(server.address, timeout=20) as c:
        with pytest.raises(Unreachable, match="needs CurveZMQ keys"):
            c.hello()


def test_non_local_listen_requires_keys_or_insecure(tmp_path, keys):
    cmd = [sys.executable, "-m", "likeness3d.backend.cli", "serve", "--listen", "tcp://0.0.0.0:0", "--store", str(tmp_path / "s"), "--gpus", "cpu"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "refusing to listen on tcp://0.0.0.0:0 without CurveZMQ" in out.stderr
    out = subprocess.run(cmd + ["--server-key", str(keys["server_sec"])], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "needs both --server-key" in out.stderr


def test_loopback_rule():
    assert is_local_address("tcp://127.0.0.1:5555") and is_local_address("tcp://localhost:1")
    assert is_local_address("tcp://[::1]:5") and is_local_address("ipc:///tmp/x")
    assert not is_local_address("tcp://0.0.0.0:5555") and not is_local_address("tcp://*:5555")
    assert not is_local_address("tcp://192.168.1.4:5555")
    with pytest.raises(ValueError, match="not of the form"):
        is_local_address("http://x")


def test_client_key_pair_must_be_complete(keys):
    with pytest.raises(ValueError, match="needs both"):
        Client("tcp://127.0.0.1:1", server_public_key=keys["server_pub"])


def test_allow_list_is_read_again_when_it_changes_and_refusals_are_logged(server_factory, keys, tmp_path):
    from likeness3d.backend.security import key_fingerprint

    server = server_factory(extra=["--server-key", str(keys["server_sec"]), "--clients-dir", str(keys["clients"])])
    with Client(server.address, timeout=10, server_public_key=keys["server_pub"], client_secret_key=keys["good"]) as c:
        assert "inspect" in c.hello().pipelines
    # the artist's key is removed, a newcomer's is added: no restart
    (keys["clients"] / "artist.key").unlink()
    new_pub, new_sec = make_keys(tmp_path / "newcomer", "newcomer")
    (keys["clients"] / "newcomer.key").write_bytes(new_pub.read_bytes())
    from likeness3d.protocol.errors import ProtocolError

    with Client(server.address, timeout=2, server_public_key=keys["server_pub"], client_secret_key=keys["good"]) as c:
        with pytest.raises(ProtocolError):  # refused: no hello (the client's words for it are its own)
            c.hello()
    with Client(server.address, timeout=10, server_public_key=keys["server_pub"], client_secret_key=new_sec) as c:
        assert "inspect" in c.hello().pipelines
    import zmq.auth

    artist_public, _ = zmq.auth.load_certificate(str(keys["good"]))
    log = (server.store / "server.log").read_text()
    line = next(line for line in log.splitlines() if "refused a client" in line)
    assert key_fingerprint(artist_public) in line and "127.0.0.1" in line
    assert artist_public.decode() not in log  # the fingerprint, not the key


def test_keys_refuse_to_overwrite_a_pair_without_force(tmp_path):
    public, secret = make_keys(tmp_path, "studio")
    before = secret.read_bytes()
    with pytest.raises(ValueError, match="--force"):
        make_keys(tmp_path, "studio")
    assert secret.read_bytes() == before
    make_keys(tmp_path, "studio", force=True)
    assert secret.read_bytes() != before


def test_camera_skew_is_refused():
    import numpy as np

    from likeness3d.protocol.assets import Camera
    from likeness3d.protocol.errors import InvalidAsset

    K = np.array([[20.0, 0.5, 8.0], [0.0, 20.0, 8.0], [0.0, 0.0, 1.0]])
    with pytest.raises(InvalidAsset, match=r"K\[0\]\[1\] \(skew\) is 0.5") as e:
        Camera(K, np.eye(4), 16, 16)
    assert e.value.field == "camera.K"


def test_a_job_names_models_under_the_operators_root_and_one_reply_says_not_there(server_factory, tmp_path, asset):
    import json
    from likeness3d.protocol.errors import ModelMissing

    root = tmp_path / "models"
    (root / "studio-set").mkdir(parents=True)
    (tmp_path / "elsewhere").mkdir()
    (root / "a_file").write_text("x")
    server = server_factory(extra=["--models", str(root)])
    with Client(server.address, timeout=20) as c:
        replies = {}
        for value in ("/etc", str(tmp_path / "elsewhere"), "missing-set", "../elsewhere", "a_file", "~root", "studio-set/../.."):
            with pytest.raises(ModelMissing) as e:
                c.submit("tire", asset, {"models": value})
            assert e.value.field == "config.models"
            replies[value] = e.value.message.replace(repr(value)[:82], "VALUE")
        assert len(set(replies.values())) == 1, replies  # absent, outside, a file: one answer
        assert "studio-set" in next(iter(replies.values()))
        job = c.submit("tire", asset, {"models": "studio-set", "fit": {"steps": 1}})
    spec = json.loads((server.store / "jobs" / job.id / "spec.json").read_text())
    assert spec["config"]["models"] == str(root / "studio-set")


def test_allow_model_paths_lets_a_job_name_a_server_folder(server_factory, tmp_path, asset):
    import json

    (tmp_path / "elsewhere").mkdir()
    server = server_factory(extra=["--allow-model-paths"])
    with Client(server.address, timeout=20) as c:
        job = c.submit("tire", asset, {"models": str(tmp_path / "elsewhere"), "fit": {"steps": 1}})
    spec = json.loads((server.store / "jobs" / job.id / "spec.json").read_text())
    assert spec["config"]["models"] == str(tmp_path / "elsewhere")
