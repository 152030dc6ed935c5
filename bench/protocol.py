"""Protocol throughput and latency: our client + server vs raw pyzmq ROUTER/DEALER (zero copy), in one run.

    python bench/protocol.py [--mib 64] [--rounds 5] [--reps 6] [--pings 2000]

Both servers are separate processes on loopback. Ours: `likeness3d serve` answering `ping` with the array
echoed (parsed, validated, re-framed). Raw: a ROUTER that echoes frames with copy=False. Rounds alternate
the two so machine noise hits both; the figure is the median of the per-round ratios. Goal: >= 0.8x raw.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from likeness3d.backend.demo import start_server
from likeness3d.protocol.client import Client


def raw_echo_server(address_file: str) -> None:
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    sock.bind("tcp://127.0.0.1:*")
    Path(address_file).write_text(sock.getsockopt(zmq.LAST_ENDPOINT).decode())
    while True:  # ended by the benchmark with kill()
        sock.send_multipart(sock.recv_multipart(copy=False), copy=False)


def start_raw() -> tuple[subprocess.Popen, str]:
    f = Path(tempfile.mkdtemp()) / "addr"
    proc = subprocess.Popen([sys.executable, __file__, "--raw-echo", str(f)])
    for _ in range(600):
        if f.exists() and f.read_text():
            return proc, f.read_text()
        time.sleep(0.05)
    raise RuntimeError("raw echo server did not start")


def time_raw(sock: zmq.Socket, payload: np.ndarray, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        sock.send_multipart([b"h", memoryview(payload)], copy=False)
        frames = sock.recv_multipart(copy=False)
        back = np.frombuffer(frames[1].buffer, np.uint8)
        assert back.nbytes == payload.nbytes
    return time.perf_counter() - t0


def time_ours(client: Client, payload: np.ndarray, reps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(reps):
        back = client.ping_echo(payload, timeout=120)
        assert back.nbytes == payload.nbytes
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=6)
    ap.add_argument("--pings", type=int, default=2000)
    ap.add_argument("--raw-echo")
    args = ap.parse_args()
    if args.raw_echo:
        raw_echo_server(args.raw_echo)
        return
    payload = np.random.default_rng(0).integers(0, 255, args.mib << 20, dtype=np.uint8)
    tiny = np.zeros(0, np.uint8)
    store = Path(tempfile.mkdtemp())
    ours_proc, ours_addr = start_server(store, "cpu", ["--max-message-mb", str(4 * args.mib)])
    raw_proc, raw_addr = start_raw()
    ctx = zmq.Context()
    raw = ctx.socket(zmq.DEALER)
    raw.connect(raw_addr)
    client = Client(ours_addr, timeout=120)
    try:
        client.hello()
        time_raw(raw, payload, 2)
        time_ours(client, payload, 2)  # warm-up
        ratios, ours_gbs, raw_gbs = [], [], []
        for _ in range(args.rounds):
            t_raw = time_raw(raw, payload, args.reps)
            t_ours = time_ours(client, payload, args.reps)
            gb = 2 * payload.nbytes * args.reps / 1e9  # both directions
            raw_gbs.append(gb / t_raw)
            ours_gbs.append(gb / t_ours)
            ratios.append(t_raw / t_ours)
        lat_raw = time_raw(raw, tiny, args.pings) / args.pings
        lat_ours = time_ours(client, tiny, args.pings) / args.pings
        print(f"{'measure':<34}{'ours':>12}{'raw pyzmq':>12}{'ours/raw':>10}")
        print(f"{f'{args.mib} MiB echo throughput (GB/s)':<34}{statistics.median(ours_gbs):>12.2f}{statistics.median(raw_gbs):>12.2f}"
              f"{statistics.median(ratios):>10.2f}x")
        print(f"{'small round trip (us)':<34}{lat_ours * 1e6:>12.1f}{lat_raw * 1e6:>12.1f}{lat_raw / lat_ours:>10.2f}x")
        print(f"per-round throughput ratios: {[round(r, 3) for r in ratios]}")
    finally:
        client.close()
        raw.close(0)
        ctx.term()
        raw_proc.kill()
        raw_proc.wait(10)
        ours_proc.terminate()
        ours_proc.wait(10)


if __name__ == "__main__":
    main()
