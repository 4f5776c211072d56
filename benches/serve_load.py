#!/usr/bin/env python3
"""Load on a running `qcyn serve` (loopback only, bounded): C clients, each on one keep-alive
connection, post the photos round-robin to /v1/predict; prints requests/s and p50/p99 latency per
level of concurrency, as a table on stderr and JSON lines on stdout. Every answer must be 200.

    benches/serve_load.py --port P --clients 1,4,16 --requests 200 PHOTO...

Standard library only. Run by benches/serve_load.sh, which starts the server and compares with
`qcyn predict`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import threading
import time


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[k]


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 without a pid."""
    if pid is None:
        return 0.0
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def level(port: int, photos: list[bytes], clients: int, requests: int, pid: int | None = None) -> dict:
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    next_index = [0]

    def take() -> int | None:
        with lock:
            i = next_index[0]
            if i >= requests:
                return None
            next_index[0] = i + 1
            return i

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while (i := take()) is not None:
            body = photos[i % len(photos)]
            t0 = time.perf_counter()
            conn.request("POST", "/v1/predict", body=body,
                         headers={"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
            with lock:
                latencies.append(dt)
                if r.status != 200:
                    failures.append(f"{r.status} {data[:200]!r}")
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    cpu0 = cpu_seconds(pid)
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    cpu = cpu_seconds(pid) - cpu0
    if failures:
        raise SystemExit(f"{len(failures)} requests failed, e.g. {failures[0]}")
    latencies.sort()
    return {
        "clients": clients,
        "requests": len(latencies),
        "seconds": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2),
        "ms_per_image": round(1000 * wall / len(latencies), 2),
        "p50_ms": round(1000 * percentile(latencies, 0.50), 2),
        "p99_ms": round(1000 * percentile(latencies, 0.99), 2),
        "server_cpu_ms_per_image": round(1000 * cpu / len(latencies), 2) if pid else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=200, help="per level (bounded)")
    ap.add_argument("--warmup", type=int, default=8)
    ap.add_argument("--pid", type=int, help="the server's process id: its CPU time per image")
    ap.add_argument("photos", nargs="+")
    a = ap.parse_args()
    photos = [open(p, "rb").read() for p in a.photos]
    level(a.port, photos, 1, min(a.warmup, a.requests))
    print(f"{'clients':>7} {'requests':>8} {'req/s':>8} {'ms/image':>9} {'p50 ms':>8} {'p99 ms':>8}"
          f" {'server CPU ms/image':>20}", file=sys.stderr)
    for c in [int(x) for x in a.clients.split(",")]:
        r = level(a.port, photos, c, a.requests, a.pid)
        cpu = r["server_cpu_ms_per_image"]
        print(f"{r['clients']:>7} {r['requests']:>8} {r['requests_per_s']:>8.1f} "
              f"{r['ms_per_image']:>9.2f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f}"
              f" {'' if cpu is None else f'{cpu:.2f}':>20}", file=sys.stderr)
        print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
