"""Another client's ping latency while big submits arrive: storing inputs must not stall the server loop.

    python bench/server_latency.py [--mib 64] [--submitters 3] [--submits 4] [--pings-between-ms 2]

A real server process; the submitting clients run in a process of their own (each a thread with its own
Client, each submit a `selftest` job whose texture makes the asset --mib MiB), and this process pings on
its own connection the whole time. Prints ping p50 / p99 / max before and during the submits, and how
long the submits took. The figure that matters: p99 during the submits (goal <= 20 ms).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_asset  # noqa: E402

from likeness3d.backend.demo import start_server  # noqa: E402
from likeness3d.protocol.assets import Asset, Mesh  # noqa: E402
from likeness3d.protocol.client import Client  # noqa: E402


def big_asset(mib: int) -> Asset:
    small = tiny_asset()
    side = int(np.sqrt(mib * (1 << 20) / 4))
    tex = np.random.default_rng(0).integers(0, 255, (side, side, 4), dtype=np.uint8)
    m = small.mesh
    return Asset(Mesh(m.vertices, m.faces, m.uvs, tex), small.references, class_word="thing")


def submitters(address: str, mib: int, n_clients: int, n_submits: int, started, out) -> None:
    asset = big_asset(mib)
    done: list[float] = []

    def one() -> None:
        with Client(address, timeout=600) as c:
            c.hello()
            started.wait()
            for _ in range(n_submits):
                t0 = time.perf_counter()
                c.submit("selftest", asset, {"steps": 1, "step_seconds": 0.0, "preview_size": 0})
                done.append(time.perf_counter() - t0)

    ready = time.perf_counter()
    threads = [threading.Thread(target=one) for _ in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((len(done), max(done), time.perf_counter() - ready))


def pings(c: Client, stop: threading.Event | None, n: int | None, gap: float) -> list[float]:
    out = []
    while (stop is None or not stop.is_set()) and (n is None or len(out) < n):
        out.append(c.ping(timeout=120))
        time.sleep(gap)
    return out


def summary(xs: list[float]) -> str:
    a = np.asarray(xs) * 1e3
    return f"n={len(a)} p50 {np.percentile(a, 50):.2f} ms, p99 {np.percentile(a, 99):.2f} ms, max {a.max():.2f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--submitters", type=int, default=3)
    ap.add_argument("--submits", type=int, default=4, help="submits per submitting client")
    ap.add_argument("--pings-between-ms", type=float, default=2.0)
    args = ap.parse_args()
    store = Path(tempfile.mkdtemp())
    proc, address = start_server(store, "cpu", ["--max-message-mb", str(2 * args.mib + 16)])
    try:
        ctx = mp.get_context("spawn")
        started, out = ctx.Event(), ctx.Queue()
        with Client(address, timeout=120) as c:
            c.hello()
            gap = args.pings_between_ms / 1e3
            idle = pings(c, None, 500, gap)
            sub = ctx.Process(target=submitters, args=(address, args.mib, args.submitters, args.submits, started, out))
            sub.start()
            stop = threading.Event()
            during: list[float] = []
            t = threading.Thread(target=lambda: during.extend(pings(c, stop, None, gap)))
            time.sleep(0.0)
            t.start()
            started.set()
            n_done, slowest, total = out.get(timeout=1200)
            stop.set()
            t.join()
            sub.join(60)
        print(f"server: {address}; {args.submitters} clients x {args.submits} submits of {args.mib} MiB")
        print(f"ping idle:           {summary(idle)}")
        print(f"ping during submits: {summary(during)}")
        print(f"submits: {n_done} accepted in {total:.2f} s (slowest submit round trip {slowest:.2f} s)")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
