#!/usr/bin/env python3
"""bench/delivery.py: event delivery of ImageTools against Nchan (nginx pub/sub), same client, same run.

    python3 bench/delivery.py [--builddir build] [--sizes 100,2000] [--events 200] [--rate 50]
                              [--transports sse,longpoll,ws] [--spread] [--ceiling] [--all] [--quick]
                              [--repeat R] [--fresh] [--no-nchan] [--out FILE]

Starts, on 127.0.0.1 only:
  - Nchan: nginx with Debian's libnginx-mod-nchan, one worker, from a config this script
    writes into a temporary directory (EventSource, long-poll and WebSocket subscriber
    locations and one publisher location, all on one free port);
  - ImageTools: a private PostgreSQL cluster (with pg_stat_statements loaded, to count
    queries), lighttpd with imagetools.fcgi from the shipped lighttpd.conf.example (its
    server.max-connections and server.max-fds raised so that 10,000 streams fit), and the
    bridge (tests/integration/harness.py).

Every scenario runs the same C client (bench/fanout, built by make) against both: N
subscribers over one transport, on one session or spread over many; the publisher sends
events at a fixed rate, round-robin over the sessions, each carrying {"seq": k, "t": T} where
T is the wall-clock time at which the publisher sent it. Nchan gets each event as an HTTP POST
to its publisher location (pipelined on keep-alive connections); ImageTools gets it the way the
application writes events, `SELECT it_append_event(session, type, payload)` in its own
transaction, through psql sessions (each session's events always through the same one, so
their order is the commit order). ImageTools is measured through lighttpd (SSE and long-poll
served by imagetools.fcgi, WebSocket proxied to the bridge) and with the clients on the
bridge's own port (SSE, long-poll and WebSocket all served by the bridge).

The client reports delivered/expected, duplicates, out-of-order, latency p50/p99/max, the time
to open every subscriber and its own CPU time; this script adds each server's CPU seconds
during the event phase (from /proc/PID/stat: the nginx worker; lighttpd, imagetools.fcgi, the
bridge and PostgreSQL), the memory per subscriber (growth of the serving processes' VmRSS
from before the clients connect to when all are connected, divided by the subscribers: the
nginx worker; lighttpd + imagetools.fcgi, lighttpd + bridge for WebSocket through lighttpd,
the bridge alone directly), ImageTools' HTTP 5xx answers and new lighttpd error-log lines,
and for ImageTools the database queries per delivered event (every statement in
pg_stat_statements during the event phase except the publisher's it_append_event, this
script's own, the metrics flushes and BEGIN/COMMIT, divided by the events the client got;
beside it, for SSE and long-poll through lighttpd, the hubs' own imagetools_feed_queries_total
from /metrics, which counts the feed's reads and checks only).

Scenarios: N (--sizes) subscribers on one session, --events events at --rate/s, for each
transport. --spread: --spread-clients subscribers over --spread-sessions sessions (two each),
events at --spread-rate/s spread over the sessions. --ceiling: one SSE subscriber on each of
100 sessions, publishing at rising rates (--ceiling-rates) for --ceiling-seconds each, until
an event is lost, a publish fails or the server takes less than 90 % of the rate; for
ImageTools along two paths: the SQL append above, and renames through the API (PATCH
/api/v1/images/{id} via lighttpd, pipelined on --api-connections keep-alive connections: one
request, one transaction with the new name and its image.updated event, as the web page
renames), where the client counts every logged event by id (no latency: the events carry
no timestamp of the benchmark's). --all: --spread and --ceiling. --quick: every scenario
small (about two minutes). --repeat R runs each scenario R times and the table shows the
run with the median p99 (every run's p99 beside it). --fresh starts new server processes
before every run (a new nginx worker by SIGHUP; lighttpd with its imagetools.fcgi and the
bridge restarted): an allocator keeps what an earlier, larger run freed, which would
otherwise make the memory per subscriber of later runs look like zero.

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
from uploads_util import vips_image  # noqa: E402

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


def proc_rss(pid):
    """Resident bytes of pid (VmRSS); 0 if gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


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

    def rss(self):
        return {"nginx": sum(proc_rss(p) for p in self.worker())}

    def fresh(self):
        """A new worker (SIGHUP: nginx starts one and retires the old), so that memory is measured from scratch."""
        old = set(self.worker())
        os.kill(self.proc.pid, signal.SIGHUP)
        harness.wait_for(lambda: self.worker() and not old & set(self.worker()), timeout=30,
                         what="a new nginx worker")

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
        self.t_done = None  # when the last answer so far came in, once every request has one

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
        self.t_done = None
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
        if self.t_done is None and self.sent and self.answered() >= self.sent:
            self.t_done = time.monotonic()

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


class StatementsPostgres(harness.Postgres):
    """The harness's private cluster with pg_stat_statements loaded, so that every query can be counted."""

    def start(self):
        conf = os.path.join(self.data, "postgresql.conf")
        with open(conf) as f:
            text = f.read()
        if "pg_stat_statements" not in text:
            with open(conf, "a") as f:
                f.write("shared_preload_libraries = 'pg_stat_statements'\n"
                        "pg_stat_statements.track = top\npg_stat_statements.max = 10000\n")
        super().start()


# The shipped lighttpd.conf.example holds 8,000 connections (server.max-connections) in 16,384
# descriptors; a proxied or FastCGI stream takes two. The spread scenario wants 10,000
# subscribers through it, so the benchmark raises these two limits and nothing else, as far
# as the descriptor limit lighttpd inherits allows (lighttpd refuses more connections than
# half its descriptors).
_NOFILE_HARD = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
LIGHTTPD_LIFT = {"server.max-fds": min(45000, _NOFILE_HARD), "server.max-connections": min(22000, _NOFILE_HARD // 2)}


def render_lighttpd_lifted(template, values, _orig=harness.render_lighttpd):
    out = []
    for line in _orig(template, values).splitlines():
        m = re.match(r"^(server\.max-fds|server\.max-connections)\s*=", line)
        if m:
            line = "%s = %d" % (m.group(1), LIGHTTPD_LIFT[m.group(1)])
        out.append(line)
    return "\n".join(out) + "\n"


# Statements that are not event delivery: the publishers' own, the benchmark's, the metrics
# flushes every process makes every 5 s, and transaction control.
NOT_DELIVERY = ("it_append_event", "pg_stat_", "process_metrics", "BEGIN", "COMMIT", "ROLLBACK")


def stmt_reset(st):
    st.sql("SELECT pg_stat_statements_reset()")


def stmt_counts(st):
    """(queries that are not the publisher's, the benchmark's or metrics flushes, the 3 most frequent)."""
    rows = st.sql("SELECT calls, regexp_replace(left(query, 70), '\\s+', ' ', 'g') FROM pg_stat_statements "
                  "ORDER BY calls DESC")
    total, top = 0, []
    for line in rows.splitlines():
        calls, _, q = line.partition("|")
        if any(x in q for x in NOT_DELIVERY):
            continue
        total += int(calls)
        if len(top) < 3:
            top.append("%s× %s" % (calls, q.strip()))
    return total, top


def pg_commits(st):
    """Transactions committed in the database so far, once the counters are settled.

    A backend publishes its counters at most about once a second, so this reads until two
    reads a second apart differ only by the first read's own transaction (at most 12 s)."""
    q = "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
    last = int(st.sql(q))
    for _ in range(12):
        time.sleep(1.0)
        now = int(st.sql(q))
        if now - last <= 1:
            return now
        last = now
    return last


class ApiPublisher:
    """Renames through the API, PATCH /api/v1/images/{id} via lighttpd, as the web page does: each
    rename is one request that commits the new name and an image.updated event. Pipelined on a
    few keep-alive connections (each session always on the same one); counts the answers."""

    def __init__(self, port, images, nconn):
        self.images = images
        self.socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(nconn)]
        for s in self.socks:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = port
        self.sent = 0
        self.statuses = {}
        self.tails = [b""] * nconn
        self.t_done = None  # when the last answer so far came in, once every request has one

    def send(self, batch):
        out = [[] for _ in self.socks]
        for j, sid, seq in batch:
            body = '{"filename": "bench-%d.jpg"}' % seq
            out[j % len(self.socks)].append(
                "PATCH /api/v1/images/%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAuthorization: Bearer %s\r\n"
                "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (self.images[sid], self.port, sid, len(body), body))
        for s, reqs in zip(self.socks, out):
            if reqs:
                s.sendall("".join(reqs).encode())
        self.sent += len(batch)
        self.t_done = None
        self.read(0)

    read = NchanPublisher.read
    answered = NchanPublisher.answered

    def finish(self):
        deadline = time.monotonic() + 120
        while self.answered() < self.sent and time.monotonic() < deadline:
            self.read(0.05)
        for s in self.socks:
            s.close()
        bad = sum(n for code, n in self.statuses.items() if code != "200")
        return {"publish_errors": bad + (self.sent - self.answered()), "publish_statuses": dict(self.statuses)}


def sessions_with_images(st, n, jpeg):
    """n new sessions, each holding one image uploaded through the API (so each log starts with image.uploaded)."""
    sids = new_sessions(st, n)
    images = {}
    for sid in sids:
        status, _, body = st.curl("-F", "session_id=" + sid, "-F", "file=@" + jpeg, st.url + "/api/v1/images")
        if status != 201:
            raise RuntimeError("upload answered %s: %s" % (status, body[:200]))
        images[sid] = json.loads(body)["images"][0]["id"]
    return sids, images


def restart_bridge(st):
    st.bridge.terminate()
    st.bridge.wait(timeout=15)
    st.procs.remove(st.bridge)
    st.start_bridge()


def fresh_imagetools(st, via_lighttpd):
    """New serving processes (lighttpd and its imagetools.fcgi, the bridge), so that memory is measured from scratch."""
    if via_lighttpd:
        st.restart_lighttpd()
    restart_bridge(st)
    # Each process connects to the database (the hub at its first stream) before it serves;
    # a moment for the bridge's LISTEN connection.
    time.sleep(1.0)


def feed_metric(st):
    """The FastCGI hubs' own count of their event-log reads and session checks
    (imagetools_feed_queries_total in /metrics, summed over its kinds); None if unreadable."""
    try:
        r = st.request("GET", "/api/v1/metrics")
    except OSError:
        return None
    if r.status != 200:
        return None
    total = 0.0
    for line in r.body.decode(errors="replace").splitlines():
        if line.startswith("imagetools_feed_queries_total"):
            total += float(line.rsplit(None, 1)[1])
    return total


def imagetools_rss(st, which):
    procs = {"lighttpd": [st.lighttpd.pid], "fcgi": st.fcgi_pids(), "bridge": [st.bridge.pid] if st.bridge else []}
    return {k: sum(proc_rss(p) for p in procs[k]) for k in which}


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

    def __init__(self, name, flavor, urls, make_pub, cpu, rss, sessions, st=None, errorlog=None, fresh=None):
        self.name, self.flavor, self.urls, self.make_pub, self.cpu = name, flavor, urls, make_pub, cpu
        self.rss, self.sessions, self.st, self.errorlog, self.fresh = rss, sessions, st, errorlog, fresh


def log_lines(path):
    if not path or not os.path.exists(path):
        return []
    with open(path, errors="replace") as f:
        return f.readlines()


def run(args, target, transport, nclients, nsessions, events, rate, publishers=1, prepared=None, log_events=None,
        commits=False):
    """One scenario. prepared: (session ids, publisher factory) instead of fresh sessions and
    target.make_pub; log_events: the client counts every event of the logs by id (--ids), this
    many in all, instead of the benchmark payloads."""
    if args.fresh and target.fresh:
        target.fresh()
    if prepared:
        sids, make_pub = prepared
    else:
        sids, make_pub = target.sessions(nsessions), target.make_pub
    sfile = tempfile.NamedTemporaryFile("w", delete=False, prefix="bench-sids-")
    sfile.write("\n".join(sids) + "\n")
    sfile.close()
    cmd = [args.fanout, "--transport", transport, "--flavor", target.flavor, "--url", target.urls[transport],
           "--sessions", sfile.name, "--clients", str(nclients), "--events", str(log_events or events),
           "--open-timeout", "120", "--drain", str(args.drain), "--timeout", "900"]
    if log_events:
        cmd.append("--ids")
    res = {"server": target.name, "transport": transport, "clients": nclients, "sessions": nsessions,
           "events": events, "rate": rate}
    mem0 = sum(target.rss(transport).values())
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ready = read_line(proc, 180)
        if not ready or not ready.startswith("READY"):
            raise RuntimeError("fanout did not get ready: %r" % ready)
        res["ready_line"] = ready
        # A long-poll is "ready" once its request is written; give the servers a moment to
        # park them all (a late one still gets every event, both servers replay from the start).
        if transport == "longpoll":
            time.sleep(1.0 + nclients / 1000.0)
        # Memory per subscriber: what the serving processes grew by with every subscriber
        # connected (and, for long-poll, parked), divided by the subscribers.
        nready = int(ready.split()[2].split("/")[0])
        res["mem_per_sub"] = (sum(target.rss(transport).values()) - mem0) / nready if nready else float("nan")
        log0 = len(log_lines(target.errorlog))
        if target.st:
            f0 = feed_metric(target.st)
            stmt_reset(target.st)
            c0 = pg_commits(target.st) if commits else 0
        pub = make_pub(publishers)
        cpu0 = target.cpu()
        t0 = time.monotonic()
        res["achieved_rate"] = publish(pub, sids, events, rate)
        res.update(pub.finish())
        # What the server took in per second: from the first publish to the last one answered
        # (Nchan, API) or committed (psql sessions, which finish() waits for).
        res["sustained_rate"] = events / max((getattr(pub, "t_done", None) or time.monotonic()) - t0, 1e-6)
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
            q, top = stmt_counts(target.st)
            res["queries"] = q
            res["queries_top"] = top
            res["queries_per_event"] = q / res["delivered"] if res["delivered"] else float("nan")
            # Cross-check: what the hubs of imagetools.fcgi count themselves (the bridge's feed
            # does not publish this counter, so it is only the FastCGI side's share).
            f1 = feed_metric(target.st)
            if f0 is not None and f1 is not None:
                res["hub_feed_queries"] = f1 - f0
            if commits:
                res["commits"] = pg_commits(target.st) - c0
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

def median_run(runs):
    """The run whose p99 is the median of the runs (the lower middle one for an even count)."""
    ok = sorted(runs, key=lambda r: r["p99_ms"])
    m = ok[(len(ok) - 1) // 2]
    m["p99_runs"] = [r["p99_ms"] for r in runs]
    return m


def fmt_row(r, base):
    def ratio(k, floor=0.0):
        # A baseline near zero (nginx preallocates its connection structures, so a subscriber
        # may cost it no new resident page) gives no meaningful ratio.
        ok = base and base.get(k) and base[k] > floor and r.get(k) == r.get(k)
        return "%.2f" % (r[k] / base[k]) if ok else "–"
    qpe = "%.3f" % r["queries_per_event"] if "queries_per_event" in r else "–"
    runs = " / ".join(("%.1f" if x < 10 else "%.0f") % x for x in r.get("p99_runs", [r["p99_ms"]]))
    return ("| %s | %s | %d/%d | %d | %d | %.1f | %.1f | %s | %.1f | %.2f | %d | %.2f | %.2f | %.1f "
            "| %s | %s | %s | %s |"
            % (r["server"], r["transport"], r["delivered"], r["expected"], r["dup"], r["ooo"], r["p50_ms"],
               r["p99_ms"], runs, r["max_ms"], r["open_s"], r["s5xx"], r["server_cpu_s"], r["cpu_s"],
               r["mem_per_sub"] / 1024.0, qpe, ratio("p99_ms"), ratio("server_cpu_s"), ratio("mem_per_sub", 512)))


HEAD = ("| server | transport | delivered/expected | dup | out of order | p50 ms | p99 ms | p99 of each run | max ms "
        "| open all s | 5xx | server CPU s | client CPU s | KB/subscriber | DB queries/delivered event "
        "| p99 ÷ Nchan | CPU ÷ Nchan | memory ÷ Nchan |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def emit(text, out):
    print(text, flush=True)
    out.write(text + "\n")
    out.flush()


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
        if r.get("queries_top"):
            extra += "; most frequent queries: %s" % "; ".join(r["queries_top"])
        if r.get("hub_feed_queries") and r["transport"] != "ws" and r["server"] == "imagetools":
            extra += "; the hub's own feed counters (/metrics): %d queries, %.3f per delivered event" % (
                r["hub_feed_queries"], r["hub_feed_queries"] / max(1, r["delivered"]))
        if r.get("errorlog_lines"):
            extra += "; %d new error-log lines, e.g. %s" % (r["errorlog_lines"], r["errorlog_sample"][:2])
        if r.get("publish_errors"):
            extra += "; %d publishes failed" % r["publish_errors"]
        notes.append("- %s %s: CPU %s; published at %.0f/s%s" % (r["server"], r["transport"], cpu,
                                                                  r["achieved_rate"], extra))
    emit("\n".join(lines + [""] + notes), out)


# ---------------------------------------------------------------- main

def attempt(rows, repeat, fn, *a, **kw):
    """Runs one scenario repeat times and keeps the median run; a failure is printed and the others still run."""
    runs = []
    for _ in range(repeat):
        try:
            runs.append(fn(*a, **kw))
        except Exception as e:  # noqa: BLE001 - a benchmark reports and goes on
            print("# %s %s failed: %s" % (a[1].name, a[2], e), flush=True)
        time.sleep(1)
    if runs:
        rows.append(median_run(runs))


QUICK = {"sizes": "100", "events": 100, "spread_clients": 1000, "spread_sessions": 500, "spread_events": 1000,
         "spread_rate": 250, "ceiling_rates": "500,1000", "ceiling_seconds": 2, "repeat": 1, "drain": 15}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--builddir", default=os.environ.get("IT_BUILDDIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--sizes", default="100,2000")
    ap.add_argument("--events", type=int, default=200)
    ap.add_argument("--rate", type=float, default=50)
    ap.add_argument("--transports", default="sse,longpoll,ws")
    ap.add_argument("--drain", type=float, default=30, help="seconds to wait for stragglers after the last publish")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each scenario; the table shows the median")
    ap.add_argument("--all", action="store_true", help="--spread and --ceiling too")
    ap.add_argument("--fresh", action="store_true",
                    help="new server processes before every run (nginx worker; lighttpd, imagetools.fcgi, bridge): "
                         "memory per subscriber is then not hidden by what an earlier run freed")
    ap.add_argument("--quick", action="store_true",
                    help="a small run of every scenario (100 subscribers, spread 1,000 over 500 sessions, "
                         "ceiling 500 and 1,000/s), about two minutes")
    ap.add_argument("--spread", action="store_true", help="also run the many-sessions scenario")
    ap.add_argument("--spread-clients", type=int, default=10000)
    ap.add_argument("--spread-sessions", type=int, default=5000)
    ap.add_argument("--spread-rate", type=float, default=500)
    ap.add_argument("--spread-events", type=int, default=5000)
    ap.add_argument("--spread-transports", default="sse,ws")
    ap.add_argument("--ceiling", action="store_true", help="also find the publishing ceiling over 100 sessions")
    ap.add_argument("--ceiling-rates", default="500,1000,2000,3000,4000,6000")
    ap.add_argument("--ceiling-seconds", type=float, default=3)
    ap.add_argument("--ceiling-paths", default="nchan,sql,api")
    ap.add_argument("--publishers", type=int, default=4, help="psql sessions / Nchan connections publishing")
    ap.add_argument("--api-connections", type=int, default=32, help="keep-alive connections renaming through the API")
    ap.add_argument("--no-nchan", action="store_true", help="run the ImageTools side only")
    ap.add_argument("--out", help="file the tables are appended to (default: BUILDDIR/delivery-results.md)")
    args = ap.parse_args()
    if args.quick:
        args.spread = args.ceiling = True
        for k, v in QUICK.items():
            setattr(args, k, v)
    if args.all:
        args.spread = args.ceiling = True

    if not args.no_nchan and (not shutil.which("nginx") or not os.path.exists(NCHAN_MODULE)):
        sys.exit("delivery.py: needs nginx and Nchan: scripts/dev bench, or "
                 "apt-get install nginx-light libnginx-mod-nchan")
    harness.BUILDDIR = os.path.abspath(args.builddir)
    harness.SRCDIR = os.path.abspath(os.path.join(HERE, ".."))
    harness.Postgres = StatementsPostgres
    harness.render_lighttpd = render_lighttpd_lifted
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
        buffer_length=max(1000, args.events, args.spread_events // max(1, args.spread_sessions) + 10,
                          int(max(float(x) for x in args.ceiling_rates.split(",")) * args.ceiling_seconds) // 100 + 10))
    # One subscriber group shares a session from one address: the per-session and per-address
    # stream limits are lifted, as in bench/streams.py and bench/run_ws_fanout.py; so is the
    # per-address upload limit (the ceiling uploads one image into each of its sessions).
    settings = {"log_level": "warn", "max_streams": 20000, "max_streams_per_session": 100000, "rate_streams": 0,
                "rate_uploads": 0}
    try:
        with Stack(tap, own_cluster=True, bridge=True, settings=settings) as st:
            # Autovacuum would add its own queries (and its CPU to PostgreSQL's) at random moments.
            st.sql("ALTER SYSTEM SET autovacuum = off")
            st.sql("SELECT pg_reload_conf()")
            st.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            np_ = nginx.port if nginx else 0
            nchan = None if nginx is None else Target("nchan", "nchan",
                           {"sse": "http://127.0.0.1:%d/sub/sse?id={s}" % np_,
                            "longpoll": "http://127.0.0.1:%d/sub/lp?id={s}" % np_,
                            "ws": "ws://127.0.0.1:%d/sub/ws?id={s}" % np_},
                           lambda n: NchanPublisher(np_, n), nginx.cpu, lambda tr: nginx.rss(),
                           lambda n: [secrets.token_urlsafe(24) for _ in range(n)], fresh=nginx.fresh)

            def it_urls(port):
                return {"sse": "http://127.0.0.1:%d/api/v1/events/stream?session_id={s}" % port,
                        "longpoll": "http://127.0.0.1:%d/api/v1/events?session_id={s}&cursor={c}&timeout=30" % port,
                        "ws": "ws://127.0.0.1:%d/api/v1/ws/{s}?last_event_id=0" % port}
            # Through lighttpd, SSE and long-poll are served by imagetools.fcgi, WebSocket is proxied
            # to the bridge; directly, the bridge serves all three on its own port.
            it = Target("imagetools", "imagetools", it_urls(st.port), lambda n: PgPublisher(st, n),
                        lambda: imagetools_cpu(st),
                        lambda tr: imagetools_rss(st, ("lighttpd", "bridge" if tr == "ws" else "fcgi")),
                        lambda n: new_sessions(st, n), st=st, errorlog=st.errorlog,
                        fresh=lambda: fresh_imagetools(st, True))
            bridge = Target("imagetools bridge", "imagetools", it_urls(st.bridge_port),
                            lambda n: PgPublisher(st, n), lambda: imagetools_cpu(st),
                            lambda tr: imagetools_rss(st, ("bridge",)), lambda n: new_sessions(st, n), st=st,
                            errorlog=st.errorlog, fresh=lambda: fresh_imagetools(st, False))
            others = () if nchan is None else (nchan,)
            for n in [int(x) for x in args.sizes.split(",") if x]:
                rows = []
                for tr in args.transports.split(","):
                    for target in others + (it, bridge):
                        attempt(rows, args.repeat, run, args, target, tr, n, 1, args.events, args.rate)
                report("%d subscribers on one session, %d events at %g/s" % (n, args.events, args.rate), rows, out)
            if args.spread:
                rows = []
                for tr in args.spread_transports.split(","):
                    for target in others + (it, bridge):
                        attempt(rows, args.repeat, run, args, target, tr, args.spread_clients, args.spread_sessions,
                                args.spread_events, args.spread_rate, publishers=args.publishers)
                report("%d subscribers over %d sessions, %d events at %g/s spread over the sessions"
                       % (args.spread_clients, args.spread_sessions, args.spread_events, args.spread_rate), rows, out)
            if args.ceiling:
                for _ in range(args.repeat):
                    ceiling(args, nchan, it, st, out)
    finally:
        if nginx:
            nginx.stop()
        out.close()


def ceiling(args, nchan, it, st, out):
    """Publishing at rising rates over 100 sessions, one SSE subscriber each (through lighttpd for
    ImageTools), until events are lost, a publish fails or the server cannot take the rate."""
    nsess = 100
    jpegdir = tempfile.mkdtemp(prefix="bench-jpeg-")
    try:
        ceiling_ladders(args, nchan, it, st, out, nsess, vips_image(os.path.join(jpegdir, "small.jpg"), 64, 48))
    finally:
        shutil.rmtree(jpegdir, ignore_errors=True)


def ceiling_ladders(args, nchan, it, st, out, nsess, jpeg):
    lines = ["", "### Publishing ceiling: one SSE subscriber on each of %d sessions, %g s per step" %
             (nsess, args.ceiling_seconds), "",
             "| server | publishing path | target events/s | sustained events/s | delivered/expected "
             "| failed publishes "
             "| p50 ms | p99 ms | CPU s: lighttpd / fcgi / bridge / PostgreSQL (nginx) | PostgreSQL transactions/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    paths = args.ceiling_paths.split(",")
    ladders = []
    if nchan and "nchan" in paths:
        ladders.append((nchan, "HTTP POST, %d connections" % args.publishers, "nchan"))
    if "sql" in paths:
        ladders.append((it, "SQL it_append_event, %d psql sessions" % args.publishers, "sql"))
    if "api" in paths:
        ladders.append((it, "API PATCH /images/{id}, %d connections" % args.api_connections, "api"))
    for target, label, kind in ladders:
        for rate in [float(x) for x in args.ceiling_rates.split(",")]:
            events = max(nsess, int(rate * args.ceiling_seconds) // nsess * nsess)
            try:
                if kind == "api":
                    sids, images = sessions_with_images(st, nsess, jpeg)
                    r = run(args, target, "sse", nsess, nsess, events, rate, publishers=args.api_connections,
                            prepared=(sids, lambda n, im=images: ApiPublisher(st.port, im, n)),
                            log_events=events + nsess, commits=True)
                else:
                    r = run(args, target, "sse", nsess, nsess, events, rate, publishers=args.publishers,
                            commits=target.st is not None)
            except Exception as e:  # noqa: BLE001
                print("# %s at %g/s failed: %s" % (label, rate, e), flush=True)
                break
            c = r["cpu"]
            cpu = (" / ".join("%.2f" % c.get(k, 0.0) for k in ("lighttpd", "fcgi", "bridge", "pg"))
                   if "pg" in c else "(%.2f)" % c["nginx"])
            lat = ("%.1f | %.1f" % (r["p50_ms"], r["p99_ms"])) if kind != "api" else "– | –"
            commits = "%.0f" % (r["commits"] / (events / r["sustained_rate"])) if "commits" in r else "–"
            lines.append("| %s | %s | %.0f | %.0f | %d/%d | %d | %s | %s | %s |" % (
                target.name, label, rate, r["sustained_rate"], r["delivered"], r["expected"],
                r.get("publish_errors", 0), lat, cpu, commits))
            print(lines[-1], flush=True)
            if r.get("queries_top"):
                print("#   %d statements besides it_append_event (%.2f per event); most frequent: %s"
                      % (r["queries"], r["queries"] / events, "; ".join(r["queries_top"])), flush=True)
            time.sleep(1)
            if (r["delivered"] != r["expected"] or r["dup"] or r.get("publish_errors")
                    or r["sustained_rate"] < 0.9 * rate):
                break
    emit("\n".join(lines), out)


if __name__ == "__main__":
    main()
