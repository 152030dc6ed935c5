"""Structure-aware fuzzing of a real server's validation boundary: every message a valid request with one
part broken (tests/support/fuzz_structured.py: array dtypes and shapes, nested and long fields, cameras,
config trees, frame lists, single frames over the limit). Unlike bench/fuzz_server.py (random frames).

    python bench/fuzz_protocol.py [--n 20000] [--seed 13] [--max-message-mb 1]

Passes when: no `internal` reply, the server alive, every message answered (once, with its request
id, readable by our client's parser), no traceback in the server's log, and the server's RSS growth from
after the first batches to the end under 20 MB. Prints the figures and exits 1 on a failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))
from fuzz_structured import drive  # noqa: E402

from likeness3d.backend.demo import start_server  # noqa: E402
from likeness3d.protocol import messages as M  # noqa: E402

RSS_GROWTH_LIMIT_MB = 20.0


def rss_mb(pid: int) -> float:
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--max-message-mb", type=float, default=1.0)
    ap.add_argument("--warmup", type=int, default=2000, help="messages before the first RSS reading")
    args = ap.parse_args()
    store = Path(tempfile.mkdtemp(prefix="likeness3d-fuzz-"))
    proc, address = start_server(store, "cpu", ["--max-message-mb", str(args.max_message_mb)])
    limit = int(args.max_message_mb * (1 << 20))
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    rss = {"start": rss_mb(proc.pid), "after_warmup": None, "peak": 0.0, "end": None}

    def sample(stats):
        now = rss_mb(proc.pid)
        rss["peak"] = max(rss["peak"], now)
        if rss["after_warmup"] is None and stats["sent"] >= args.warmup:
            rss["after_warmup"] = now

    t0 = time.perf_counter()
    try:
        stats = drive(sock, args.n, args.seed, limit, on_batch=sample)
        dt = time.perf_counter() - t0
        rss["end"] = rss_mb(proc.pid)
        sock.send_multipart(M.Ping().to_frames(1 << 40))
        alive = False
        while sock.poll(30_000):
            rid, reply = M.parse(sock.recv_multipart())
            if rid == 1 << 40:
                alive = isinstance(reply, M.Pong)
                break
        alive = alive and proc.poll() is None
    finally:
        sock.close(0)
        ctx.term()
        proc.terminate()
        proc.wait(30)
    log = (store / "server.log").read_text()
    growth = rss["end"] - (rss["after_warmup"] or rss["start"])
    codes: dict[str, int] = {}
    for per_class in stats["codes"].values():
        for code, k in per_class.items():
            codes[code] = codes.get(code, 0) + k
    report = {
        "messages": stats["sent"], "answered": stats["answered"], "unanswered": stats["unanswered"],
        "internal": len(stats["internal"]), "unreadable_replies": len(stats["unreadable"]),
        "wrong_request_id": len(stats["wrong_id"]), "tracebacks_in_log": log.count("Traceback"),
        "server_alive": alive, "accepted_then_cancelled": stats["accepted"], "job_events": stats["events"],
        "rate_per_s": round(stats["sent"] / dt), "seconds": round(dt, 1),
        "rss_mb": {k: round(v, 1) for k, v in rss.items() if v is not None}, "rss_growth_mb": round(growth, 1),
        "classes": stats["classes"], "replies": dict(sorted(codes.items())),
    }
    print(json.dumps(report, indent=1))
    for name, message in (stats["internal"] + stats["unreadable"])[:10]:
        print(f"  {name}: {message}")
    for item in stats["wrong_id"][:10]:
        print(f"  wrong id: {item}")
    ok = (alive and report["internal"] == 0 and report["unanswered"] == 0 and report["unreadable_replies"] == 0
          and report["wrong_request_id"] == 0 and report["tracebacks_in_log"] == 0 and growth < RSS_GROWTH_LIMIT_MB)
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
