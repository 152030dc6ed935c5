"""A TCP relay between a client and a backend, to break the connection under a running job the way a
network does (both ends see the connection end; libzmq reconnects through the relay at once)."""

from __future__ import annotations

import selectors
import socket
import threading


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TcpRelay:
    def __init__(self, upstream: str):
        host, port = upstream.removeprefix("tcp://").rsplit(":", 1)
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.drops = 0
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-relay", daemon=True)
        self._thread.start()

    def drop(self) -> int:
        """Close every relayed connection now (the relay keeps accepting new ones); returns how many."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            self.drops += 1
        for a, b in pairs:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        return len(pairs)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.drop()
        self.listener.close()

    def __enter__(self) -> "TcpRelay":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        peers: dict[socket.socket, socket.socket] = {}
        while not self._stop.is_set():
            for key, _ in sel.select(0.05):
                sock = key.fileobj
                if sock is self.listener:
                    client, _ = self.listener.accept()
                    try:
                        server = socket.create_connection(self.upstream, timeout=5)
                    except OSError:
                        client.close()
                        continue
                    with self._lock:
                        self._pairs.append((client, server))
                    for a, b in ((client, server), (server, client)):
                        peers[a] = b
                        sel.register(a, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(1 << 20)
                    if data:
                        peers[sock].sendall(data)
                except OSError:
                    data = b""
                if not data:
                    for s in (sock, peers.get(sock)):
                        if s is not None and s in peers:
                            sel.unregister(s)
                            peers.pop(s, None)
                            s.close()
        for s in list(peers):
            s.close()
        sel.close()
