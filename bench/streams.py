#!/usr/bin/env python3
"""bench/streams.py: event fan-out to many SSE and long-poll subscribers through lighttpd and
imagetools.fcgi, on one session and spread across sessions.

    python3 bench/streams.py [--builddir build] [--sizes 100,1000,5000] [--events 20]

For every run it reports delivered/expected (must be equal), the latency from just before
an event's commit to its receipt (p50, p99, max), the time to open all streams, and the
resident memory per open stream of imagetools.fcgi and of lighttpd. The baseline is the
same measurement with a single subscriber in the same run; latencies are also printed as
a ratio to it. Traffic goes to 127.0.0.1 only; every run is bounded in count and time.
"""

import argparse
import json
import os
import resource
import selectors
import socket
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from harness import Stack, Tap  # noqa: E402
from sseclient import SSEParser  # noqa: E402


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Client:
    """One subscriber: an SSE stream, or a long-poll loop, on a raw non-blocking socket."""

    def __init__(self, kind, port, session):
        self.kind, self.port, self.session = kind, port, session
        self.cursor = 0
        self.seen = []
        self.latencies = []
        self.sock = None
        self.buf = b""
        self.head_done = False
        self.parser = SSEParser()
        self.ready = False

    def start(self, sel):
        self.sock = socket.create_connection(("127.0.0.1", self.port))
        if self.kind == "sse":
            path = "/api/v1/events/stream?session_id=%s" % self.session
        else:
            path = "/api/v1/events?session_id=%s&cursor=%d&timeout=30" % (self.session, self.cursor)
        self.sock.sendall(("GET %s HTTP/1.0\r\nHost: x\r\n\r\n" % path).encode())
        self.sock.setblocking(False)
        self.buf = b""
        self.head_done = False
        sel.register(self.sock, selectors.EVENT_READ, self)

    def got(self, ev, now):
        if "id" not in ev:
            return
        self.seen.append(ev["id"])
        self.cursor = ev["id"]
        t = ev.get("data", {}).get("t")
        if t:
            self.latencies.append(now - t)

    def on_readable(self, sel):
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return
        except ConnectionError:
            chunk = b""
        now = time.time()
        if chunk:
            self.buf += chunk
            if not self.head_done and b"\r\n\r\n" in self.buf:
                _, self.buf = self.buf.split(b"\r\n\r\n", 1)
                self.head_done = True
            if self.head_done and self.kind == "sse":
                self.parser.feed(self.buf)
                self.buf = b""
                for e in self.parser.events:
                    if e["json"]:
                        self.got(e["json"], now)
                        if e["json"].get("type") == "connection.status":
                            self.ready = True
                self.parser.events.clear()
            return
        # Connection closed: a long-poll answer is complete.
        sel.unregister(self.sock)
        self.sock.close()
        if self.kind == "longpoll":
            body = self.buf.strip()
            if body:
                for ev in json.loads(body)["events"]:
                    self.got(ev, now)
            self.ready = True
            self.start(sel)


def run(st, kind, n, nsessions, events):
    sel = selectors.DefaultSelector()
    sessions = [st.new_session() for _ in range(nsessions)]
    clients = [Client(kind, st.port, sessions[i % nsessions]) for i in range(n)]
    t0 = time.monotonic()
    for c in clients:
        c.start(sel)

    def pump(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for key, _ in sel.select(timeout=0.05):
                key.data.on_readable(sel)

    if kind == "sse":
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not all(c.ready for c in clients):
            pump(0.1)
    else:
        pump(1.0)  # long-polls park: no answer until an event
    connect_s = time.monotonic() - t0
    fcgi = st.fcgi_pids()[0]
    rss_fcgi, rss_lighttpd = rss_kb(fcgi), rss_kb(st.lighttpd.pid)

    # Events: one per session per round, each carrying its commit time.
    for r in range(events):
        # The timestamp is taken inside the transaction, just before its commit.
        sql = "".join("SELECT it_append_event('%s', 'bench.tick',"
                      " json_build_object('t', extract(epoch from clock_timestamp()))::jsonb);\n"
                      % s for s in sessions)
        st.sql(sql)
        pump(0.05)
    expected = events * n
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and sum(len(c.seen) for c in clients) < expected:
        pump(0.2)
    delivered = sum(len(c.seen) for c in clients)
    dup_or_order = sum(1 for c in clients if c.seen != list(range(1, len(c.seen) + 1)))
    lats = sorted(l for c in clients for l in c.latencies)
    for c in clients:
        try:
            sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
    sel.close()
    q = lambda p: lats[min(len(lats) - 1, int(p * len(lats)))] * 1000 if lats else float("nan")  # noqa: E731
    return {"kind": kind, "n": n, "sessions": nsessions, "delivered": delivered, "expected": expected,
            "bad_streams": dup_or_order, "p50": q(0.50), "p99": q(0.99), "max": (lats[-1] * 1000 if lats else 0),
            "connect_s": connect_s, "rss_fcgi_kb": rss_fcgi, "rss_lighttpd_kb": rss_lighttpd}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default=os.environ.get("IT_BUILDDIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--sizes", default="100,1000,5000")
    ap.add_argument("--events", type=int, default=20)
    ap.add_argument("--kinds", default="sse,longpoll")
    ap.add_argument("--longpoll-sizes", default="100,1000",
                    help="long-pollers reconnect after every event, so they are fewer")
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    harness.SRCDIR = os.path.abspath(os.path.join(HERE, ".."))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tap = Tap()
    rows = []
    # Every subscriber comes from 127.0.0.1 and may share one session: the per-session
    # and per-address stream limits (rate_streams is off in the test harness) are lifted.
    with Stack(tap, own_cluster=True, settings={"log_level": "warn", "max_streams": 20000,
                                                 "max_streams_per_session": 100000}) as st:
        idle = {"fcgi": rss_kb(st.fcgi_pids()[0]), "lighttpd": rss_kb(st.lighttpd.pid)}
        for kind in args.kinds.split(","):
            base = run(st, kind, 1, 1, args.events)
            rows.append(base)
            sizes = args.sizes if kind == "sse" else args.longpoll_sizes
            for n in [int(x) for x in sizes.split(",")]:
                for nsess in (1, max(1, n // 10)):
                    r = run(st, kind, n, nsess, args.events)
                    r["p99_ratio"] = r["p99"] / base["p99"] if base["p99"] else float("nan")
                    rows.append(r)
                    time.sleep(1.0)
    print("\n%-8s %6s %5s %10s %5s %8s %8s %8s %7s %9s %12s %12s" % (
        "kind", "subs", "sess", "delivered", "bad", "p50 ms", "p99 ms", "max ms", "p99/1", "connect s",
        "fcgi B/strm", "lttpd B/strm"))
    for r in rows:
        per_f = (r["rss_fcgi_kb"] - idle["fcgi"]) * 1024 / r["n"] if r["kind"] == "sse" else float("nan")
        per_l = (r["rss_lighttpd_kb"] - idle["lighttpd"]) * 1024 / r["n"] if r["kind"] == "sse" else float("nan")
        print("%-8s %6d %5d %5d/%-5d %4d %8.1f %8.1f %8.1f %7.2f %9.2f %12.0f %12.0f" % (
            r["kind"], r["n"], r["sessions"], r["delivered"], r["expected"], r["bad_streams"], r["p50"], r["p99"],
            r["max"], r.get("p99_ratio", 1.0), r["connect_s"], per_f, per_l))
    lost = [r for r in rows if r["delivered"] != r["expected"] or r["bad_streams"]]
    print("\nresult: %s" % ("every event delivered exactly once, in order" if not lost else "LOSS in %d runs" % len(lost)))
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
