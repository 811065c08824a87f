#!/usr/bin/env python3
"""bench/delivery.py: event delivery of ImageTools against Nchan (nginx pub/sub), same client, same run.

    python3 bench/delivery.py [--builddir build] [--sizes 100,2000] [--events 200] [--rate 50]
                              [--transports sse,longpoll,ws] [--spread] [--ceiling] [--no-nchan] [--out FILE]

Starts, on 127.0.0.1 only:
  - Nchan: nginx with Debian's libnginx-mod-nchan, one worker, from a config this script
    writes into a temporary directory (EventSource, long-poll and WebSocket subscriber
    locations and one publisher location, all on one free port);
  - ImageTools: a private PostgreSQL cluster, lighttpd with imagetools.fcgi from the shipped
    lighttpd.conf.example, and the WebSocket bridge (tests/integration/harness.py).

Every scenario runs the same C client (bench/fanout, built by make) against both: N
subscribers over one transport, on one session or spread over many; the publisher sends
events at a fixed rate, round-robin over the sessions, each carrying {"seq": k, "t": T} where
T is the wall-clock time at which the publisher sent it. Nchan gets each event as an HTTP POST
to its publisher location (pipelined on keep-alive connections); ImageTools gets it the way the
application writes events, `SELECT it_append_event(session, type, payload)` in its own
transaction, through psql sessions (each session's events always through the same one, so
their order is the commit order). The client reports delivered/expected, duplicates,
out-of-order, latency p50/p99/max, the time to open every subscriber and its own CPU time;
this script adds each server's CPU seconds during the event phase (from /proc/PID/stat:
the nginx worker; lighttpd, imagetools.fcgi, the bridge and PostgreSQL), ImageTools' HTTP
5xx answers and the new lighttpd error-log lines, and for ImageTools the database
transactions per delivered event (pg_stat_database, the publisher's own subtracted).

Scenarios: N (--sizes) subscribers on one session, --events events at --rate/s, for each
transport; WebSocket to ImageTools both through lighttpd and to the bridge directly.
--spread: --spread-clients subscribers over --spread-sessions sessions (two each), events at
--spread-rate/s spread over the sessions. --ceiling: one SSE subscriber on each of 100
sessions, publishing at rising rates (--ceiling-rates) for --ceiling-seconds each, until
events are lost or the publisher cannot reach the rate.

--no-nchan runs the ImageTools side only (nginx is then neither needed nor started).

Nothing is installed here: nginx and the module come from `scripts/dev bench` (or
`apt-get install nginx-light libnginx-mod-nchan`). Every run is bounded in count and time
and everything started is stopped at the end.
"""

import argparse
import datetime
import json
import os
import re
import resource
import secrets
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from harness import Stack, Tap, free_port  # noqa: E402

NCHAN_MODULE = "/usr/lib/nginx/modules/ngx_nchan_module.so"
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- process CPU

def proc_cpu(pid, children=False):
    """User + system seconds of pid (plus its reaped children with children=True); 0 if gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # Fields after the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / CLK_TCK


def child_pids(ppid):
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                    out.append(int(d))
        except (OSError, IndexError, ValueError):
            pass
    return out


# ---------------------------------------------------------------- Nchan

NGINX_CONF = """\
load_module {module};
daemon off;
master_process on;
worker_processes 1;
worker_rlimit_nofile {nofile};
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {conns}; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  # Every message of a run stays buffered, so that a subscriber that connects late, or a
  # long-poll that comes back after several messages, gets all of them (as ImageTools'
  # log does): "oldest" replays a new channel's messages from the first.
  nchan_message_buffer_length {buffer};
  nchan_message_timeout 10m;
  server {{
    listen 127.0.0.1:{port} backlog=4096;
    location = /pub {{ nchan_publisher; nchan_channel_id $arg_id; }}
    location = /sub/sse {{ nchan_subscriber eventsource; nchan_channel_id $arg_id;
                          nchan_subscriber_first_message oldest; }}
    location = /sub/lp {{ nchan_subscriber longpoll; nchan_channel_id $arg_id;
                         nchan_subscriber_first_message oldest; nchan_longpoll_multipart_response on; }}
    location = /sub/ws {{ nchan_subscriber websocket; nchan_channel_id $arg_id;
                         nchan_subscriber_first_message oldest; }}
  }}
}}
"""


class Nginx:
    """nginx + Nchan, one worker, in a temporary prefix; stopped by stop()."""

    def __init__(self, buffer_length):
        self.dir = tempfile.mkdtemp(prefix="bench-nchan-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = min(hard, 65536)
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(module=NCHAN_MODULE, dir=self.dir, port=self.port, nofile=nofile,
                                      conns=nofile - 100, buffer=buffer_length))
        self.proc = subprocess.Popen(["nginx", "-c", os.path.join(self.dir, "nginx.conf"), "-p", self.dir,
                                      "-e", os.path.join(self.dir, "error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        harness.wait_for(lambda: socket.create_connection(("127.0.0.1", self.port), timeout=1).close() or True,
                         timeout=10, what="nginx")
        harness.wait_for(lambda: child_pids(self.proc.pid), timeout=10, what="the nginx worker")

    def worker(self):
        return child_pids(self.proc.pid)

    def cpu(self):
        return {"nginx": sum(proc_cpu(p) for p in self.worker())}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class NchanPublisher:
    """POSTs to /pub?id=S on a few keep-alive connections, pipelined; counts the answers."""

    def __init__(self, port, nconn):
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(nconn)]
        for s in self.socks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0
        self.statuses = {}
        self.tails = [b""] * nconn

    def send(self, batch):
        """batch: (session index, session id, seq) triples; all stamped with the same send time."""
        t = time.time()
        out = [[] for _ in self.socks]
        for j, sid, seq in batch:
            body = '{"seq":%d,"t":%.6f}' % (seq, t)
            out[j % len(self.socks)].append("POST /pub?id=%s HTTP/1.1\r\nHost: bench\r\nContent-Type: "
                                            "application/json\r\nContent-Length: %d\r\n\r\n%s" % (sid, len(body), body))
        for s, reqs in zip(self.socks, out):
            if reqs:
                s.sendall("".join(reqs).encode())
        self.sent += len(batch)
        self.read(0)

    def read(self, timeout):
        for i, s in enumerate(self.socks):
            while select.select([s], [], [], timeout)[0]:
                data = s.recv(1 << 20)
                if not data:
                    break
                buf = self.tails[i] + data
                last = 0
                for m in re.finditer(rb"HTTP/1\.1 (\d\d\d) ", buf):
                    self.statuses[m.group(1).decode()] = self.statuses.get(m.group(1).decode(), 0) + 1
                    last = m.end()
                self.tails[i] = buf[max(last, len(buf) - 16):]
                timeout = 0

    def answered(self):
        return sum(self.statuses.values())

    def finish(self):
        deadline = time.monotonic() + 60
        while self.answered() < self.sent and time.monotonic() < deadline:
            self.read(0.05)
        for s in self.socks:
            s.close()
        bad = sum(n for code, n in self.statuses.items() if code not in ("201", "202"))
        return {"publish_errors": bad + (self.sent - self.answered())}


# ---------------------------------------------------------------- ImageTools

class PgPublisher:
    """it_append_event through psql sessions: one transaction per event, as the application commits them."""

    def __init__(self, st, nconn):
        self.errs = [tempfile.TemporaryFile() for _ in range(nconn)]
        self.procs = [subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=0", "-h", st.sockdir,
                                        "-p", str(st.pgport), "-U", "postgres", "-d", st.dbname, "-o", "/dev/null"],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=e)
                      for e in self.errs]
        # Events are stamped when they are written to psql: wait until every psql has
        # connected (it does so before reading its input), so that no event waits for that.
        for p in self.procs:
            p.stdin.write(b"\\echo connected\n")
            p.stdin.flush()
            p.stdout.readline()
        self.sent = 0

    def send(self, batch):
        t = time.time()
        out = [[] for _ in self.procs]
        for j, sid, seq in batch:
            out[j % len(self.procs)].append("SELECT it_append_event('%s', 'bench.tick', '{\"seq\": %d, \"t\": %.6f}');\n"
                                            % (sid, seq, t))
        for p, stmts in zip(self.procs, out):
            if stmts:
                p.stdin.write("".join(stmts).encode())
                p.stdin.flush()
        self.sent += len(batch)

    def finish(self):
        for p in self.procs:
            p.stdin.close()
        for p in self.procs:
            p.wait(timeout=120)
        bad = 0
        for e in self.errs:
            e.seek(0)
            bad += e.read().count(b"ERROR")
            e.close()
        return {"publish_errors": bad}


def new_sessions(st, n):
    """n fresh sessions straight in the database (ids as the application makes them: 32 base64url characters)."""
    sids = [secrets.token_urlsafe(24) for _ in range(n)]
    for i in range(0, n, 1000):
        st.sql("INSERT INTO sessions (id, expires_at) VALUES %s"
               % ",".join("('%s', now() + interval '2 hours')" % s for s in sids[i:i + 1000]))
    return sids


def pg_pids(st):
    with open(os.path.join(st.pg.data, "postmaster.pid")) as f:
        return int(f.readline())


def imagetools_cpu(st):
    pm = pg_pids(st)
    return {"lighttpd": proc_cpu(st.lighttpd.pid),
            "fcgi": sum(proc_cpu(p) for p in st.fcgi_pids()),
            "bridge": proc_cpu(st.bridge.pid) if st.bridge else 0.0,
            # Backends that exit during the run land in the postmaster's children time.
            "pg": proc_cpu(pm, children=True) + sum(proc_cpu(p) for p in child_pids(pm))}


def db_xacts(st):
    """Transactions committed or rolled back in the database so far, once the counters are settled.

    A backend publishes its counters at most about once a second, so this reads until two
    reads a second apart differ only by the first read's own transaction (at most 12 s)."""
    q = "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
    last = int(st.sql(q))
    for _ in range(12):
        time.sleep(1.0)
        now = int(st.sql(q))
        if now - last <= 1:
            return now
        last = now
    return last


# ---------------------------------------------------------------- one run

def publish(pub, sids, events, rate):
    """Sends events round-robin over sids at rate per second; returns the achieved rate."""
    n = len(sids)
    t0 = time.monotonic()
    i = 0
    while i < events:
        now = time.monotonic()
        due = min(events, int((now - t0) * rate) + 1)
        if due > i:
            pub.send([(k % n, sids[k % n], k // n + 1) for k in range(i, due)])
            i = due
        else:
            time.sleep(max(0.0, t0 + i / rate - now))
    # The first event goes at t0 and the last one is due (events - 1) / rate later.
    wall = time.monotonic() - t0
    return (events - 1) / wall if wall > 0 and events > 1 else rate


def read_line(proc, timeout):
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], 0.5)
        if r:
            c = os.read(proc.stdout.fileno(), 1)
            if not c:
                break
            if c == b"\n":
                return buf.decode()
            buf += c
        elif proc.poll() is not None:
            break
    return buf.decode() if buf else None


class Target:
    """One server under test: how to reach it, publish to it and read its costs."""

    def __init__(self, name, flavor, urls, make_pub, cpu, sessions, st=None, errorlog=None):
        self.name, self.flavor, self.urls, self.make_pub, self.cpu = name, flavor, urls, make_pub, cpu
        self.sessions, self.st, self.errorlog = sessions, st, errorlog


def log_lines(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return f.readlines()


def run(args, target, transport, nclients, nsessions, events, rate, publishers=1):
    sids = target.sessions(nsessions)
    sfile = tempfile.NamedTemporaryFile("w", delete=False, prefix="bench-sids-")
    sfile.write("\n".join(sids) + "\n")
    sfile.close()
    cmd = [args.fanout, "--transport", transport, "--flavor", target.flavor, "--url", target.urls[transport],
           "--sessions", sfile.name, "--clients", str(nclients), "--events", str(events),
           "--open-timeout", "120", "--drain", str(args.drain), "--timeout", "900"]
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    res = {"server": target.name, "transport": transport, "clients": nclients, "sessions": nsessions,
           "events": events, "rate": rate}
    try:
        ready = read_line(proc, 180)
        if not ready or not ready.startswith("READY"):
            raise RuntimeError("fanout did not get ready: %r" % ready)
        res["ready_line"] = ready
        # A long-poll is "ready" once its request is written; give the servers a moment to
        # park them all (a late one still gets every event, both servers replay from the start).
        if transport == "longpoll":
            time.sleep(1.0 + nclients / 1000.0)
        log0 = len(log_lines(target.errorlog))
        x0 = db_xacts(target.st) if target.st else 0
        pub = target.make_pub(publishers)
        cpu0 = target.cpu()
        res["achieved_rate"] = publish(pub, sids, events, rate)
        res.update(pub.finish())
        try:
            proc.stdin.write(b"END\n")
            proc.stdin.flush()
        except BrokenPipeError:
            pass
        line = read_line(proc, args.drain + 120)
        proc.wait(timeout=30)
        cpu1 = target.cpu()
        res.update(json.loads(line))
        res["cpu"] = {k: cpu1[k] - cpu0[k] for k in cpu1}
        res["server_cpu_s"] = sum(res["cpu"].values())
        if target.st:
            # The publisher's transactions (one per event, one for its connection check) and the
            # last counter read are not the application's.
            x1 = db_xacts(target.st)
            res["db_xacts_per_event"] = ((x1 - x0 - events - publishers - 1) / res["delivered"]
                                         if res["delivered"] else float("nan"))
        new = log_lines(target.errorlog)[log0:]
        res["errorlog_lines"] = len(new)
        res["errorlog_sample"] = sorted(set(re.sub(r"^\S+ \S+ ", "", l).strip()[:160] for l in new))[:5]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.unlink(sfile.name)
    return res


# ---------------------------------------------------------------- report

def fmt_row(r, base):
    ratio = lambda k: "%.2f" % (r[k] / base[k]) if base and base.get(k) else "–"  # noqa: E731
    dbx = "%.2f" % r["db_xacts_per_event"] if "db_xacts_per_event" in r else "–"
    return "| %s | %s | %d/%d | %d | %d | %.1f | %.1f | %.1f | %.2f | %d | %.2f | %.2f | %s | %s | %s |" % (
        r["server"], r["transport"], r["delivered"], r["expected"], r["dup"], r["ooo"], r["p50_ms"], r["p99_ms"],
        r["max_ms"], r["open_s"], r["s5xx"], r["server_cpu_s"], r["cpu_s"], dbx, ratio("p99_ms"),
        ratio("server_cpu_s"))


HEAD = ("| server | transport | delivered/expected | dup | out of order | p50 ms | p99 ms | max ms | open all s "
        "| 5xx | server CPU s | client CPU s | DB xacts/event | p99 ÷ Nchan | CPU ÷ Nchan |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def report(title, rows, out):
    lines = ["", "### " + title, "", HEAD]
    for r in rows:
        base = next((b for b in rows if b["server"] == "nchan" and b["transport"] == r["transport"]), None)
        lines.append(fmt_row(r, base if r["server"] != "nchan" else None))
    notes = []
    for r in rows:
        cpu = ", ".join("%s %.2f" % kv for kv in r["cpu"].items())
        extra = ""
        if r["transport"] == "longpoll":
            extra = "; %d polls, %d reconnects" % (r["polls"], r["reconnects"])
        if r.get("errorlog_lines"):
            extra += "; %d new error-log lines, e.g. %s" % (r["errorlog_lines"], r["errorlog_sample"][:2])
        if r.get("publish_errors"):
            extra += "; %d publishes failed" % r["publish_errors"]
        notes.append("- %s %s: CPU %s; published at %.0f/s%s" % (r["server"], r["transport"], cpu,
                                                                  r["achieved_rate"], extra))
    lines += [""] + notes
    text = "\n".join(lines)
    print(text, flush=True)
    out.write(text + "\n")
    out.flush()


# ---------------------------------------------------------------- main

def attempt(rows, fn, *a, **kw):
    """Runs one scenario; a failure is printed and the others still run."""
    try:
        rows.append(fn(*a, **kw))
    except Exception as e:  # noqa: BLE001 - a benchmark reports and goes on
        print("# %s %s failed: %s" % (a[1].name, a[2], e), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builddir", default=os.environ.get("IT_BUILDDIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--sizes", default="100,2000")
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--transports", default="sse,longpoll,ws")
    ap.add_argument("--drain", type=float, default=30, help="seconds to wait for stragglers after the last publish")
    ap.add_argument("--spread", action="store_true", help="also run the many-sessions scenario")
    ap.add_argument("--spread-clients", type=int, default=10000)
    ap.add_argument("--spread-sessions", type=int, default=5000)
    ap.add_argument("--spread-rate", type=float, default=500)
    ap.add_argument("--spread-events", type=int, default=5000)
    ap.add_argument("--spread-transports", default="sse,ws")
    ap.add_argument("--ceiling", action="store_true", help="also find the publishing ceiling over 100 sessions")
    ap.add_argument("--ceiling-rates", default="500,1000,2000,4000,8000")
    ap.add_argument("--ceiling-seconds", type=float, default=3)
    ap.add_argument("--publishers", type=int, default=4, help="publisher connections in the ceiling runs")
    ap.add_argument("--no-nchan", action="store_true", help="run the ImageTools side only")
    ap.add_argument("--out", help="file the tables are appended to (default: BUILDDIR/delivery-results.md)")
    args = ap.parse_args()

    if not args.no_nchan and (not shutil.which("nginx") or not os.path.exists(NCHAN_MODULE)):
        sys.exit("delivery.py: needs nginx and Nchan: scripts/dev bench, or "
                 "apt-get install nginx-light libnginx-mod-nchan")
    harness.BUILDDIR = os.path.abspath(args.builddir)
    harness.SRCDIR = os.path.abspath(os.path.join(HERE, ".."))
    args.fanout = os.path.join(harness.BUILDDIR, "bench", "fanout")
    if not os.path.exists(args.fanout):
        sys.exit("delivery.py: %s is missing: run make in the build directory" % args.fanout)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    out = open(args.out or os.path.join(harness.BUILDDIR, "delivery-results.md"), "a")
    header = "## %s, `%s`; load before: %s" % (datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
                                              " ".join(sys.argv), open("/proc/loadavg").read().strip())
    print(header)
    out.write("\n" + header + "\n")
    tap = Tap()
    nginx = None if args.no_nchan else Nginx(
        buffer_length=max(1000, args.events, args.spread_events // max(1, args.spread_sessions) + 10))
    # One subscriber group shares a session from one address: the per-session and per-address
    # stream limits are lifted, as in bench/streams.py and bench/run_ws_fanout.py.
    settings = {"log_level": "warn", "max_streams": 20000, "max_streams_per_session": 100000, "rate_streams": 0}
    try:
        with Stack(tap, own_cluster=True, bridge=True, settings=settings) as st:
            # Autovacuum would add its own transactions to the per-event count of queries
            # (and its CPU to PostgreSQL's) at random moments; runs are minutes long.
            st.sql("ALTER SYSTEM SET autovacuum = off")
            st.sql("SELECT pg_reload_conf()")
            np_ = nginx.port if nginx else 0
            nchan = None if nginx is None else Target("nchan", "nchan",
                           {"sse": "http://127.0.0.1:%d/sub/sse?id={s}" % np_,
                            "longpoll": "http://127.0.0.1:%d/sub/lp?id={s}" % np_,
                            "ws": "ws://127.0.0.1:%d/sub/ws?id={s}" % np_},
                           lambda n: NchanPublisher(np_, n), nginx.cpu,
                           lambda n: [secrets.token_urlsafe(24) for _ in range(n)])
            lp = st.port
            it_urls = {"sse": "http://127.0.0.1:%d/api/v1/events/stream?session_id={s}" % lp,
                       "longpoll": "http://127.0.0.1:%d/api/v1/events?session_id={s}&cursor={c}&timeout=30" % lp,
                       "ws": "ws://127.0.0.1:%d/api/v1/ws/{s}?last_event_id=0" % lp}
            it = Target("imagetools", "imagetools", it_urls, lambda n: PgPublisher(st, n),
                        lambda: imagetools_cpu(st), lambda n: new_sessions(st, n), st=st, errorlog=st.errorlog)
            bridge = Target("imagetools bridge", "imagetools",
                            {"ws": "ws://127.0.0.1:%d/api/v1/ws/{s}?last_event_id=0" % st.bridge_port},
                            lambda n: PgPublisher(st, n), lambda: imagetools_cpu(st),
                            lambda n: new_sessions(st, n), st=st)
            transports = args.transports.split(",")
            others = () if nchan is None else (nchan,)
            for n in [int(x) for x in args.sizes.split(",") if x]:
                rows = []
                for tr in transports:
                    for target in others + (it,) + ((bridge,) if tr == "ws" else ()):
                        attempt(rows, run, args, target, tr, n, 1, args.events, args.rate)
                        time.sleep(1)
                report("%d subscribers on one session, %d events at %g/s" % (n, args.events, args.rate), rows, out)
            if args.spread:
                rows = []
                for tr in args.spread_transports.split(","):
                    for target in others + (it,) + ((bridge,) if tr == "ws" else ()):
                        attempt(rows, run, args, target, tr, args.spread_clients, args.spread_sessions,
                                args.spread_events, args.spread_rate, publishers=args.publishers)
                        time.sleep(2)
                report("%d subscribers over %d sessions, %d events at %g/s spread over the sessions"
                       % (args.spread_clients, args.spread_sessions, args.spread_events, args.spread_rate), rows, out)
            if args.ceiling:
                ceiling(args, others + (it,), out)
    finally:
        if nginx:
            nginx.stop()
        out.close()


def ceiling(args, targets, out):
    lines = ["", "### Publishing ceiling: one SSE subscriber on each of 100 sessions, %d publisher connections"
             % args.publishers, "",
             "| server | target events/s | achieved events/s | delivered/expected | p50 ms | p99 ms | server CPU s |",
             "|---|---|---|---|---|---|---|"]
    for target in targets:
        for rate in [float(x) for x in args.ceiling_rates.split(",")]:
            events = int(rate * args.ceiling_seconds)
            try:
                r = run(args, target, "sse", 100, 100, events, rate, publishers=args.publishers)
            except Exception as e:  # noqa: BLE001
                print("# %s at %g/s failed: %s" % (target.name, rate, e), flush=True)
                break
            lines.append("| %s | %.0f | %.0f | %d/%d | %.1f | %.1f | %.2f |" % (
                target.name, rate, r["achieved_rate"], r["delivered"], r["expected"], r["p50_ms"], r["p99_ms"],
                r["server_cpu_s"]))
            print(lines[-1], flush=True)
            time.sleep(1)
            if r["delivered"] != r["expected"] or r["dup"] or r["achieved_rate"] < 0.9 * rate:
                break
    text = "\n".join(lines)
    print(text, flush=True)
    out.write(text + "\n")


if __name__ == "__main__":
    main()
