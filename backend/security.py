"""CurveZMQ for non-local listening: key pairs, the server's allow-list of client keys, the loopback rule."""

from __future__ import annotations

import re
from pathlib import Path

import zmq
import zmq.auth

_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "[::1]"}


def is_local_address(address: str) -> bool:
    """True for ipc://, inproc:// and tcp:// on a loopback host; False for '*', 0.0.0.0, any other host."""
    if address.startswith(("ipc://", "inproc://")):
        return True
    m = re.match(r"^tcp://(\[[^\]]+\]|[^:]+):(\d+|\*)$", address)
    if not m:
        raise ValueError(f"address {address!r} is not of the form tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    host = m.group(1)
    return host in _LOCAL_HOSTS or host.startswith("127.")


def make_keys(out_dir: Path | str, name: str, force: bool = False) -> tuple[Path, Path]:
    """Write `<name>.key` (public, shareable) and `<name>.key_secret` (private) into out_dir; an existing pair
    of that name is kept (ValueError) unless `force`: a replaced key locks out whoever holds the old one."""
    if not re.match(r"^[A-Za-z0-9_.-]{1,64}$", name) or name in (".", ".."):
        raise ValueError(f"key name {name!r} must be 1-64 letters, digits, '_', '.' or '-'")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file: name a folder for the keys")
    existing = [p for p in (out / f"{name}.key", out / f"{name}.key_secret") if p.exists()]
    if existing and not force:
        raise ValueError(f"{existing[0]} exists: a new pair would lock out whoever uses the old one; pass --force to "
                         "replace it, or choose another --name")
    out.mkdir(parents=True, exist_ok=True)
    public, secret = zmq.auth.create_certificates(str(out), name)
    Path(secret).chmod(0o600)
    return Path(public), Path(secret)


def load_keypair(secret_file: Path | str) -> tuple[bytes, bytes]:
    public, secret = zmq.auth.load_certificate(str(secret_file))
    if secret is None:
        raise ValueError(f"{secret_file} holds no secret key: pass the .key_secret file, not the .key file")
    return public, secret


def secure_server_socket(ctx: zmq.Context, sock: zmq.Socket, server_secret_file: Path | str, clients_dir: Path | str):
    """Make `sock` a CURVE server that admits only the public keys found in clients_dir.
    Returns the running authenticator (stop it when the socket closes)."""
    from zmq.auth.thread import ThreadAuthenticator

    clients = Path(clients_dir)
    if not clients.is_dir():
        raise ValueError(f"--clients-dir {clients} is not a folder of client public keys")
    public, secret = load_keypair(server_secret_file)
    auth = ThreadAuthenticator(ctx)
    auth.start()
    auth.configure_curve(domain="*", location=str(clients))
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth
