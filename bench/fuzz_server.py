"""Fuzz a real server with malformed multipart messages at volume; every one must get a reply.

    python bench/fuzz_server.py [--n 200000] [--seed 7]

Prints the count, the error codes seen, the rate, and whether the server still answers `ping`.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from fuzz_frames import malformed  # noqa: E402

from likeness3d.backend.demo import start_server  # noqa: E402
from likeness3d.protocol import messages as M  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    proc, address = start_server(Path(tempfile.mkdtemp()), "cpu")
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.connect(address)
    rng = random.Random(args.seed)
    codes: dict[str, int] = {}
    answered, batch = 0, 500
    t0 = time.perf_counter()
    try:
        while answered < args.n:
            k = min(batch, args.n - answered)
            for _ in range(k):
                sock.send_multipart(malformed(rng))
            got = 0
            while got < k:
                if not sock.poll(30_000):
                    raise SystemExit(f"FAIL: no reply after {answered + got} answers")
                _, reply = M.parse(sock.recv_multipart())
                if getattr(reply, "seq", None) is not None:
                    continue  # events of an accidentally valid submit
                got += 1
                name = reply.code if isinstance(reply, M.Error) else reply.TYPE
                codes[name] = codes.get(name, 0) + 1
            answered += k
        dt = time.perf_counter() - t0
        sock.send_multipart(M.Ping().to_frames(424242))
        alive = False
        while sock.poll(10_000):
            rid, reply = M.parse(sock.recv_multipart())
            if rid == 424242:
                alive = isinstance(reply, M.Pong)
                break
        print(f"messages: {answered}  replies by kind: {dict(sorted(codes.items()))}")
        print(f"rate: {answered / dt:,.0f} malformed messages/s  server alive and answering ping: {alive and proc.poll() is None}")
    finally:
        sock.close(0)
        ctx.term()
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    main()
