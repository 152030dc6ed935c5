"""CurveZMQ for non-local listening: key pairs, the server's allow-list of client keys, the loopback rule."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

log = logging.getLogger("likeness3d.security")

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


_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ALLOW_MODEL_PATHS_ENV = "LIKENESS3D_ALLOW_MODEL_PATHS"
"""Set to 1 by `likeness3d serve --allow-model-paths`: a job's `models` may name any folder of the server."""


def submitted_models(config_map: dict, models: str, root: str | Path | None) -> dict:
    """The config map of a submit with its `models` as the worker will use it. A client names a model set by
    its folder's name under the operator's models folder (`likeness3d serve --models`; the set is a models
    folder by role itself), "tiny", or nothing (the operator's folder); a path is accepted only with --allow-model-paths. Every other value gets the same `model_missing`
    reply, whether the folder is absent, unreadable, a file or outside the root: the reply says nothing about
    the server's folders."""
    import os

    from ..protocol.errors import ModelMissing

    if models in ("", "tiny") or not isinstance(config_map, dict) or "models" not in config_map:
        return config_map
    if os.environ.get(ALLOW_MODEL_PATHS_ENV) == "1" and ("/" in models or "\\" in models or models.startswith("~")):
        return config_map
    folder = Path(root) / models if root is not None and _MODEL_NAME.match(models) and ".." not in models else None
    if folder is None or not folder.is_dir():
        found = sorted(p.name for p in Path(root).iterdir() if p.is_dir() and _MODEL_NAME.match(p.name)) \
            if root is not None and Path(root).is_dir() else []
        raise ModelMissing(f"config.models {models!r:.80} is not a model of this backend: name one of {found[:50]} "
                           "(the folders of the backend's models folder), 'tiny', or leave it empty for the "
                           "backend's own", field="config.models")
    return {**config_map, "models": str(folder)}


def key_fingerprint(z85_key: bytes | str) -> str:
    """A short, loggable name of a public key: SHA256 of its Z85 text, 16 hex digits."""
    import hashlib

    text = z85_key.encode() if isinstance(z85_key, str) else bytes(z85_key)
    return "SHA256:" + hashlib.sha256(text).hexdigest()[:16]


class ClientKeys:
    """The allow-list: the public keys (*.key) in a folder, read again whenever the folder's listing or a key
    file changes, so a key removed is refused from the next handshake on and a key added is admitted
    without a restart. Refused clients are logged with their key's fingerprint and their address."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)
        self.address = "?"
        """The address of the handshake being checked (set by the authenticator)."""
        self._stamp: tuple | None = None
        self._keys: set[bytes] = set()

    def _signature(self) -> tuple:
        try:
            entries = []
            for p in sorted(self.folder.iterdir()):
                if p.name.endswith(".key"):
                    st = p.stat()
                    entries.append((p.name, st.st_mtime_ns, st.st_size, st.st_ino))
            return tuple(entries)
        except OSError:
            return ()

    def keys(self) -> set[bytes]:
        stamp = self._signature()
        if stamp != self._stamp:
            try:
                self._keys = set(zmq.auth.load_certificates(str(self.folder)))
            except Exception as exc:  # an unreadable folder or key: admit nobody rather than everybody
                log.error("cannot read the client keys in %s (%s): refusing every client until it is fixed",
                          self.folder, exc)
                self._keys = set()
            if self._stamp is not None:
                log.info("client keys in %s changed: %d allowed", self.folder, len(self._keys))
            self._stamp = stamp
        return self._keys

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.keys()
        if not ok:
            log.warning("refused a client: key %s from %s is not in %s", key_fingerprint(key), self.address, self.folder)
        return ok


class _Authenticator(ThreadAuthenticator):
    """pyzmq's ZAP thread, telling the allow-list which address each handshake comes from."""

    def __init__(self, ctx: zmq.Context, keys: ClientKeys):
        super().__init__(ctx)
        self._client_keys = keys

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) >= 4:
            self._client_keys.address = msg[3].decode("utf-8", "replace") or "?"
        await super().handle_zap_message(msg)


def secure_server_socket(ctx: zmq.Context, sock: zmq.Socket, server_secret_file: Path | str, clients_dir: Path | str):
    """Make `sock` a CURVE server that admits only the public keys found in clients_dir (read again when it
    changes). Returns the running authenticator (stop it when the socket closes)."""
    clients = Path(clients_dir)
    if not clients.is_dir():
        raise ValueError(f"--clients-dir {clients} is not a folder of client public keys")
    public, secret = load_keypair(server_secret_file)
    keys = ClientKeys(clients)
    keys.keys()
    auth = _Authenticator(ctx, keys)
    auth.start()
    auth.configure_curve_callback(domain="*", credentials_provider=keys)
    sock.curve_secretkey = secret
    sock.curve_publickey = public
    sock.curve_server = True
    return auth
