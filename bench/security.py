#!/usr/bin/env python3
"""bench/security.py: what the rate limits and the metrics cost, through lighttpd and imagetools.fcgi.

    python3 bench/security.py [--builddir build] [--requests 1000] [--threads 4] [--rounds 5]

Runs the same load against two stacks side by side, on one database cluster, measured in
alternation for several rounds: the baseline with rate limits off (rate_sessions = 0), and
one with the limit on but never reached
(rate_sessions = 1000000), so every request pays the bucket's UPSERT. Reported: requests
per second and p50/p99 latency of POST /api/v1/sessions on each, and their ratio; the same
for GET /api/v1/health (no limit: the cost of the Origin guard and the response counter
alone) and the latency of GET /api/v1/metrics. Traffic goes to 127.0.0.1 only and is
bounded by --requests.
"""

import argparse
import http.client
import os
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from harness import Stack, Tap  # noqa: E402


def load(port, method, path, n, threads):
    """n requests over `threads` keep-alive connections; returns (req/s, p50 ms, p99 ms, statuses)."""
    lat, statuses, lock = [], {}, threading.Lock()
    per = n // threads

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine, st = [], {}
        for _ in range(per):
            t0 = time.perf_counter()
            conn.request(method, path, body=b"" if method == "POST" else None,
                         headers={"Content-Length": "0"} if method == "POST" else {})
            r = conn.getresponse()
            r.read()
            mine.append(time.perf_counter() - t0)
            st[r.status] = st.get(r.status, 0) + 1
        conn.close()
        with lock:
            lat.extend(mine)
            for k, v in st.items():
                statuses[k] = statuses.get(k, 0) + v

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    t0 = time.perf_counter()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return (len(lat) / wall, statistics.median(lat) * 1e3, lat[int(len(lat) * 0.99) - 1] * 1e3, statuses)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    n = min(args.requests, 20000)
    tap = Tap()
    pg = harness.Postgres()
    res = {"off": {"sessions": [], "health": [], "metrics": []}, "on": {"sessions": [], "health": [], "metrics": []}}
    try:
        # Both stacks run side by side and are measured in alternation, round after round, so
        # that load from elsewhere on the machine hits both alike; ratios are per round.
        with Stack(tap, pg=pg, settings={"rate_sessions": 0}) as off, \
                Stack(tap, pg=pg, settings={"rate_sessions": 1000000}) as on:
            stacks = {"off": off, "on": on}
            for st in stacks.values():
                load(st.port, "GET", "/api/v1/health", 200, args.threads)  # warm-up
            for _ in range(args.rounds):
                for name, st in stacks.items():
                    res[name]["sessions"].append(load(st.port, "POST", "/api/v1/sessions", n, args.threads))
                    res[name]["health"].append(load(st.port, "GET", "/api/v1/health", n, args.threads))
                    t0 = time.perf_counter()
                    st.request("GET", "/api/v1/metrics")
                    res[name]["metrics"].append((time.perf_counter() - t0) * 1e3)
            buckets = on.sql("SELECT count(*) FROM rate_limits")
    finally:
        pg.destroy()
    print("# %d requests per measurement, %d rounds, %d connections; lighttpd + 1 imagetools.fcgi each,"
          " one PostgreSQL, 127.0.0.1" % (n, args.rounds, args.threads))
    print("%-6s %-24s %10s %9s %9s" % ("limits", "request", "req/s", "p50 ms", "p99 ms"))
    for name in ("off", "on"):
        for what, label in (("sessions", "POST /api/v1/sessions"), ("health", "GET /api/v1/health")):
            rows = res[name][what]
            print("%-6s %-24s %10.0f %9.2f %9.2f" % (name, label, statistics.median(r[0] for r in rows),
                                                      statistics.median(r[1] for r in rows),
                                                      statistics.median(r[2] for r in rows)))
        print("%-6s %-24s %10s %9.2f" % (name, "GET /api/v1/metrics", "", statistics.median(res[name]["metrics"])))
    for what in ("sessions", "health"):
        ratios = sorted(b[0] / a[0] for a, b in zip(res["off"][what], res["on"][what]))
        print("throughput ratio on/off, %s: median %.2f (rounds: %s)" % (what, statistics.median(ratios),
                                                                          " ".join("%.2f" % r for r in ratios)))
    print("rate-limit buckets after the run: %s (one per client address)" % buckets)


if __name__ == "__main__":
    main()
