"""Load: many clients, each submitting several jobs at once, against one real server; none lost, none twice.

    python bench/server_load.py [--clients 50] [--jobs 10] [--pipeline inspect]

Prints how many jobs were accepted and finished, whether any id came back twice, what the server's job
list says, the wall time and the submit round trip p50 / p99.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import tiny_asset  # noqa: E402

from likeness3d.backend.demo import start_server  # noqa: E402
from likeness3d.protocol.client import Client  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--jobs", type=int, default=10)
    ap.add_argument("--pipeline", default="inspect")
    args = ap.parse_args()
    proc, address = start_server(Path(tempfile.mkdtemp()), "cpu")
    asset = tiny_asset()
    ids: dict[int, list[str]] = {}
    submit_s: list[float] = []
    errors: list[str] = []

    def one(k: int) -> None:
        try:
            with Client(address, timeout=600) as c:
                jobs = []
                for _ in range(args.jobs):
                    t0 = time.perf_counter()
                    jobs.append(c.submit(args.pipeline, asset, {"overlay_points": k + 1} if args.pipeline == "inspect" else {}))
                    submit_s.append(time.perf_counter() - t0)
                for j in jobs:
                    j.wait(3600)
                ids[k] = [j.id for j in jobs]
        except Exception as exc:  # counted and printed
            errors.append(f"client {k}: {type(exc).__name__}: {exc}")

    t0 = time.perf_counter()
    try:
        threads = [threading.Thread(target=one, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        all_ids = [i for v in ids.values() for i in v]
        with Client(address, timeout=120) as c:
            listed = [j for j in c.list() if j["job"] in set(all_ids)]
            counts = c.status()["jobs"]
        done = sum(1 for j in listed if j["state"] == "done")
        s = np.asarray(submit_s) * 1e3
        print(f"{args.clients} clients x {args.jobs} {args.pipeline} jobs: {len(all_ids)} accepted, {done} done, "
              f"{len(all_ids) - len(set(all_ids))} duplicate ids, server counts {counts}, {len(errors)} client errors")
        print(f"wall {wall:.1f} s ({len(all_ids) / wall:.1f} jobs/s); submit round trip p50 {np.percentile(s, 50):.1f} ms, "
              f"p99 {np.percentile(s, 99):.1f} ms")
        for e in errors[:5]:
            print(" ", e)
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
