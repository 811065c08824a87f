#!/usr/bin/env python3
"""bench/feed_queries.py: database queries per delivered event, long-poll subscribers on one session.

    python3 bench/feed_queries.py [--builddir build] [--clients 100] [--events 200] [--rate 20]

Starts a private stack (PostgreSQL, lighttpd, one imagetools.fcgi), opens N long-poll loops on
one session, commits E events at R per second, and waits until every client holds every event.
Queries are counted from PostgreSQL's own statement log (log_statement = all for the run),
grouped by kind; the benchmark's own statements (the commits of its events) are left out. The
hub's own counts (reads, checks, lookups from /health) are printed too. Traffic goes to 127.0.0.1 only; the run is bounded in count and time.
"""

import argparse
import http.client
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from harness import Stack, Tap  # noqa: E402


KINDS = [("session look-up", "FROM sessions WHERE id = $1"), ("event read (request thread)", "FROM events e WHERE"),
         ("event read (hub, many sessions)", "unnest($1::text[]"), ("session check (hub)", "s.id = ANY($1"),
         ("rate limit", "ratelimit"), ("metrics flush", "process_metrics")]


def count_statements(text):
    counts = {}
    for line in text.splitlines():
        if "LOG:  execute" not in line and "LOG:  statement:" not in line:
            continue
        if "it_append_event" in line or "BENCH-MARK" in line:
            continue
        kind = next((k for k, pat in KINDS if pat in line), "other")
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def poller(port, sid, want, out, deadline):
    cursor, got = 0, []
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=40)
    while cursor < want and time.monotonic() < deadline:
        try:
            conn.request("GET", "/api/v1/events?session_id=%s&cursor=%d&timeout=30" % (sid, cursor))
            r = conn.getresponse()
            body = r.read()
            if r.status != 200:
                out["errors"] += 1
                time.sleep(0.2)
                continue
            for ev in json.loads(body)["events"]:
                if "id" in ev:
                    got.append(ev["id"])
                    cursor = ev["id"]
        except (OSError, http.client.HTTPException, ValueError):
            out["errors"] += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=40)
            time.sleep(0.2)
    conn.close()
    out["ids"].append(got)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default=os.environ.get("IT_BUILDDIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20.0)
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    tap = Tap()
    with Stack(tap, own_cluster=True, settings={"keepalive_interval": 20, "max_streams_per_session": 1000}) as st:
        sid = st.new_session()
        out = {"ids": [], "errors": 0}
        deadline = time.monotonic() + 120
        threads = [threading.Thread(target=poller, args=(st.port, sid, args.events, out, deadline))
                   for _ in range(args.clients)]
        st.sql("ALTER SYSTEM SET log_statement = 'all'")
        st.sql("SELECT pg_reload_conf()")
        time.sleep(1)
        st.sql("SELECT 'BENCH-MARK start'")
        start = os.path.getsize(st.pg.log)
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(1.0)
        for i in range(args.events):
            st.sql("SELECT it_append_event(:'p1', 'image.uploaded', '{}'::jsonb)", sid)
            time.sleep(1.0 / args.rate)
        for t in threads:
            t.join()
        elapsed = time.monotonic() - t0
        with open(st.pg.log, errors="replace") as f:
            f.seek(start)
            counts = count_statements(f.read())
        st.sql("ALTER SYSTEM RESET log_statement")
        st.sql("SELECT pg_reload_conf()")
        hub = st.request("GET", "/api/v1/health").json().get("hub", {})
        delivered = sum(len(g) for g in out["ids"])
        exact = sum(1 for g in out["ids"] if g == list(range(1, args.events + 1)))
        queries = sum(n for k, n in counts.items() if k != "metrics flush")
        print("clients %d, events %d at %g/s: delivered %d (%d clients got all, in order), %d errors, %.1f s"
              % (args.clients, args.events, args.rate, delivered, exact, out["errors"], elapsed))
        for k, n in sorted(counts.items()):
            print("  %-34s %7d  (%.4f per delivered event)" % (k, n, n / max(delivered, 1)))
        print("queries per delivered event (metrics flushes left out): %.4f" % (queries / max(delivered, 1)))
        print("hub: reads %s, checks %s, lookups (no query) %s"
              % (hub.get("reads", "n/a"), hub.get("checks", "n/a"), hub.get("lookups", "n/a")))


if __name__ == "__main__":
    main()
