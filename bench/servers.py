#!/usr/bin/env python3
"""bench/servers.py: what each deployment costs: request rate and SSE event latency through
lighttpd FastCGI (the baseline), lighttpd CGI, Apache mod_proxy_fcgi and Apache mod_cgi,
each started from its shipped example config, all against one database in the same run.

    python3 bench/servers.py [--builddir build] [--requests 400] [--concurrency 4] [--events 40]

For every setup it reports: requests per second for GET /api/v1/sessions/{id} (a database
read) from `concurrency` keep-alive clients, its p50/p99 latency, and the latency from just
before an event's commit to its arrival on an SSE stream (p50, p99), each also as a ratio
to the lighttpd FastCGI baseline. Every request goes to 127.0.0.1; every run is bounded by
count and by time.
"""

import argparse
import http.client
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from apache import ApacheStack, LighttpdCgiStack  # noqa: E402
from deploy_scenarios import SSEClient, api, new_session  # noqa: E402
from harness import Postgres, Stack, Tap  # noqa: E402


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def request_rate(st, sid, total, concurrency):
    path = api(st, "/sessions/" + sid)
    lat = []
    errors = [0]
    lock = threading.Lock()
    per = total // concurrency

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=30)
        mine = []
        for _ in range(per):
            t = time.monotonic()
            try:
                conn.request("GET", path)
                r = conn.getresponse()
                r.read()
                if r.status != 200:
                    errors[0] += 1
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException):
                errors[0] += 1
                conn.close()
            mine.append(time.monotonic() - t)
        conn.close()
        with lock:
            lat.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    wall = time.monotonic() - t0
    return {"rps": len(lat) / wall, "p50_ms": quantile(lat, 0.5) * 1000, "p99_ms": quantile(lat, 0.99) * 1000,
            "errors": errors[0]}


def sse_latency(st, sid, events):
    c = SSEClient("127.0.0.1", st.port, api(st, "/events/stream?session_id=" + sid), timeout=30)
    c.next()  # connection.status
    lat = []
    got = []
    for _ in range(events):
        # The timestamp is taken inside the transaction, just before its commit.
        st.sql("SELECT it_append_event(:'p1', 'bench.tick', "
               "json_build_object('t', extract(epoch from clock_timestamp()))::jsonb)", sid)
        ev = c.next()
        now = time.time()
        got.append(int(ev.get("id", -1)))
        lat.append(now - float(ev["data"]["data"]["t"]))
    c.close()
    in_order = got == sorted(got) and len(set(got)) == len(got)
    return {"sse_p50_ms": quantile(lat, 0.5) * 1000, "sse_p99_ms": quantile(lat, 0.99) * 1000,
            "sse_ok": in_order and len(got) == events}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--events", type=int, default=40)
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    tap = Tap()
    pg = Postgres()
    setups = [("lighttpd fastcgi", lambda db: Stack(tap, pg=pg, dbname=db)),
              ("lighttpd cgi", lambda db: LighttpdCgiStack(tap, pg=pg, dbname=db)),
              ("apache proxy_fcgi", lambda db: ApacheStack(tap, mode="fcgi", pg=pg, dbname=db)),
              ("apache cgi", lambda db: ApacheStack(tap, mode="cgi", pg=pg, dbname=db))]
    rows = []
    try:
        # One database for all: each stack applies the (idempotent) migrations as it starts.
        harness.psql(pg.sockdir, pg.port, "postgres", "CREATE DATABASE bench_servers")
        for name, make in setups:
            with make("bench_servers") as st:
                sid = new_session(st)
                r = {"setup": name}
                r.update(request_rate(st, sid, args.requests, args.concurrency))
                r.update(sse_latency(st, sid, args.events))
                rows.append(r)
    finally:
        pg.destroy()
    base = rows[0]
    print("# %d requests from %d clients; %d SSE events; ratios against %s, same run"
          % (args.requests, args.concurrency, args.events, base["setup"]))
    print("%-18s %8s %6s %8s %8s %6s %9s %9s %6s %4s" % ("setup", "req/s", "ratio", "p50 ms", "p99 ms", "errors",
                                                       "sse p50", "sse p99", "ratio", "ok"))
    for r in rows:
        print("%-18s %8.0f %6.2f %8.1f %8.1f %6d %9.1f %9.1f %6.2f %4s" % (
            r["setup"], r["rps"], r["rps"] / base["rps"], r["p50_ms"], r["p99_ms"], r["errors"],
            r["sse_p50_ms"], r["sse_p99_ms"], r["sse_p50_ms"] / base["sse_p50_ms"], "yes" if r["sse_ok"] else "NO"))


if __name__ == "__main__":
    main()
