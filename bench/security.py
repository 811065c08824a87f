#!/usr/bin/env python3
"""bench/security.py: what the rate limits and the metrics cost, through lighttpd and imagetools.fcgi.

    python3 bench/security.py [--builddir build] [--requests 2000] [--threads 4]

Runs the same load against two stacks in one run, on one database cluster: the baseline
with rate limits off (rate_sessions = 0), and one with the limit on but never reached
(rate_sessions = 10000000), so every request pays the bucket's UPSERT. Reported: requests
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
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4)
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    n = min(args.requests, 20000)
    tap = Tap()
    rows = {}
    pg = harness.Postgres()
    try:
        for name, rate in (("limits off", 0), ("limits on", 10000000)):
            with Stack(tap, pg=pg, settings={"rate_sessions": rate, "threads": 8}) as st:
                load(st.port, "GET", "/api/v1/health", 200, args.threads)  # warm-up
                rows[name] = {
                    "sessions": load(st.port, "POST", "/api/v1/sessions", n, args.threads),
                    "health": load(st.port, "GET", "/api/v1/health", n, args.threads),
                }
                ms = []
                for _ in range(50):
                    t0 = time.perf_counter()
                    st.request("GET", "/api/v1/metrics")
                    ms.append((time.perf_counter() - t0) * 1e3)
                rows[name]["metrics_p50"] = statistics.median(ms)
                rows[name]["buckets"] = st.sql("SELECT count(*) FROM rate_limits")
    finally:
        pg.destroy()
    print("# %d requests each, %d connections, lighttpd + 1 imagetools.fcgi + PostgreSQL on 127.0.0.1"
          % (n, args.threads))
    print("%-12s %-28s %10s %9s %9s  %s" % ("stack", "request", "req/s", "p50 ms", "p99 ms", "statuses"))
    for name in rows:
        for what, label in (("sessions", "POST /api/v1/sessions"), ("health", "GET /api/v1/health")):
            rps, p50, p99, stt = rows[name][what]
            print("%-12s %-28s %10.0f %9.2f %9.2f  %s" % (name, label, rps, p50, p99, stt))
        print("%-12s %-28s %10s %9.2f" % (name, "GET /api/v1/metrics", "", rows[name]["metrics_p50"]))
    base, on = rows["limits off"], rows["limits on"]
    print("ratio on/off: POST /sessions throughput %.2f, p50 latency %.2f; health throughput %.2f"
          % (on["sessions"][0] / base["sessions"][0], on["sessions"][1] / base["sessions"][1],
             on["health"][0] / base["health"][0]))
    print("rate-limit buckets after the 'on' run: %s (one per client address)" % on["buckets"])


if __name__ == "__main__":
    main()
