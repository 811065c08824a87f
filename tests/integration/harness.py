"""harness.py: starts the real stack (PostgreSQL, lighttpd, imagetools.fcgi, bridge, worker) on
loopback for one integration test, speaks TAP, and tears everything down again.

Tests import it:

    from harness import Tap, Stack
    tap = Tap()
    with Stack(tap) as st:
        r = st.request("GET", "/api/v1/health")
        tap.is_(r.status, 200, "health ok")
    tap.done()

PostgreSQL: when IT_PG_SOCKDIR and IT_PG_PORT are set (scripts/dev check starts one cluster
for the whole run) each Stack creates its own database in that cluster; otherwise, or with
Stack(own_cluster=True) for tests that restart the server, it starts a private cluster.
initdb and postgres refuse to run as root, so as root they run as the 'postgres' user.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import uuid

BUILDDIR = os.environ.get("IT_BUILDDIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SRCDIR = os.environ.get("IT_SRCDIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PGBIN = os.environ.get("IT_PGBIN", "/usr/lib/postgresql/15/bin")


# ---------------------------------------------------------------- TAP

class Tap:
    """Test Anything Protocol output; any exception becomes a failed test, never a silent pass."""

    def __init__(self):
        self.n = 0
        self.failed = 0
        sys.stdout.reconfigure(line_buffering=True)

    def ok(self, cond, name):
        self.n += 1
        print(("ok" if cond else "not ok") + " %d - %s" % (self.n, name.replace("\n", " ")))
        if not cond:
            self.failed += 1
            frame = traceback.extract_stack()[-2]
            if frame.name in ("is_", "like", "contains"):
                frame = traceback.extract_stack()[-3]
            print("#   failed at %s:%d" % (os.path.basename(frame.filename), frame.lineno))
        return bool(cond)

    def is_(self, got, want, name):
        if not self.ok(got == want, name):
            self.diag("got:  %r" % (got,))
            self.diag("want: %r" % (want,))
            return False
        return True

    def like(self, got, pattern, name):
        if not self.ok(got is not None and re.search(pattern, got) is not None, name):
            self.diag("got: %r" % (got,))
            self.diag("pattern: %r" % (pattern,))
            return False
        return True

    def skip(self, name, reason):
        self.n += 1
        print("ok %d - %s # SKIP %s" % (self.n, name.replace("\n", " "), reason))

    def diag(self, msg):
        for line in str(msg).splitlines():
            print("# " + line)

    def done(self):
        print("1..%d" % self.n)
        sys.exit(1 if self.failed else 0)

    def bail(self, msg):
        print("Bail out! " + msg.replace("\n", " "))
        sys.exit(1)


# ---------------------------------------------------------------- helpers

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception:
            pass
        time.sleep(interval)
    raise TimeoutError("timed out waiting for " + what)


def as_pg_user():
    """Arguments that run a command as the postgres user when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class Answer:
    """An answer with its headers as a dict of lower-case names (the last of repeats)."""

    def __init__(self, status, headers, body):
        self.status, self.body = status, body
        self.headers = {k.lower(): v for k, v in headers}

    def json(self):
        return json.loads(self.body)


def http_get(port, path, headers=None, timeout=30, method="GET"):
    """One request (GET unless method says otherwise) to 127.0.0.1:port, on a connection of its own."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers=dict(headers or {}))
        r = conn.getresponse()
        return Answer(r.status, r.getheaders(), r.read())
    finally:
        conn.close()

    def __repr__(self):
        return "<Response %d %r>" % (self.status, self.body[:200])


# ---------------------------------------------------------------- PostgreSQL

class Postgres:
    """A private PostgreSQL 15 cluster on a Unix socket in a temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="it-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.sockdir = self.dir
        self.port = free_port()
        self.running = False
        self.log = os.path.join(self.dir, "postgres.log")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(as_pg_user() + [PGBIN + "/initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                                       "--no-sync", "-E", "UTF8", "--locale=C"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.start()

    def start(self):
        opts = ("-k %s -p %d -c listen_addresses= -c fsync=off -c synchronous_commit=off "
                "-c full_page_writes=off -c max_connections=300 -c shared_buffers=128MB"
                % (self.sockdir, self.port))
        subprocess.run(as_pg_user() + [PGBIN + "/pg_ctl", "-D", self.data, "-l", self.log, "-o", opts,
                                       "-w", "-t", "60", "start"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.running = True

    def stop(self, mode="fast"):
        """Stops the server: fast (clients disconnected, clean) or immediate (like a crash)."""
        if not self.running:
            return
        subprocess.run(as_pg_user() + [PGBIN + "/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60",
                                       "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.running = False

    def restart(self, down_seconds=0.0):
        self.stop()
        time.sleep(down_seconds)
        self.start()

    def destroy(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def shared_cluster():
    sockdir, port = os.environ.get("IT_PG_SOCKDIR"), os.environ.get("IT_PG_PORT")
    if sockdir and port:
        return sockdir, int(port)
    return None


def psql(sockdir, port, db, sql, *args):
    """Runs sql (with psql -v variables from args) and returns stdout text, rows separated by newlines."""
    cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", sockdir, "-p", str(port),
           "-U", "postgres", "-d", db]
    for i, a in enumerate(args):
        cmd += ["-v", "p%d=%s" % (i + 1, a)]
    r = subprocess.run(cmd, input=sql, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError("psql failed: " + r.stderr)
    return r.stdout.strip()


# ---------------------------------------------------------------- the stack

LIGHTTPD_VARS = ("port", "bind", "statedir", "webroot", "fcgi_bin", "fcgi_procs", "config", "bridge_host",
                 "bridge_port", "errorlog", "pidfile", "bridge_urls")


def render_lighttpd(template, values):
    """Replaces the var.<name> lines of the shipped config and nothing else."""
    out = []
    for line in template.splitlines():
        m = re.match(r"^var\.(\w+)\s*=", line)
        if m and m.group(1) in values:
            v = values[m.group(1)]
            line = "var.%s = %s" % (m.group(1), v if isinstance(v, int) else '"%s"' % v)
        out.append(line)
    return "\n".join(out) + "\n"


class Stack:
    """PostgreSQL (shared or private) + migrations + lighttpd with imagetools.fcgi (+ bridge, worker)."""

    def __init__(self, tap, own_cluster=False, settings=None, bridge=False, worker=False, fcgi_procs=1,
                 pg=None, dbname=None, lighttpd_vars=None):
        self.tap = tap
        self.own_cluster = own_cluster
        self.settings = dict(settings or {})
        self.want_bridge = bridge
        self.want_worker = worker
        self.fcgi_procs = fcgi_procs
        self.lighttpd_vars = dict(lighttpd_vars or {})  # more var. lines of lighttpd.conf.example to set
        self.pg = pg
        self.owns_pg = False
        self.dbname = dbname
        self.owns_db = dbname is None
        self.procs = []
        self.lighttpd = None
        self.bridge = None
        self.worker = None
        self.dir = None
        self.config = None

    # -- life cycle

    def __enter__(self):
        try:
            self.start()
        except Exception:
            self.tap.diag(traceback.format_exc())
            self.stop()
            self.tap.bail("the stack did not start")
        return self

    def __exit__(self, *exc):
        if exc[0] is not None and exc[0] is not SystemExit:
            self.tap.ok(False, "test raised %s: %s" % (exc[0].__name__, exc[1]))
            self.tap.diag("".join(traceback.format_exception(*exc)))
            self.dump_logs()
        self.stop()
        return False

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="it-stack-")
        os.chmod(self.dir, 0o755)
        if self.pg is None:
            shared = None if self.own_cluster else shared_cluster()
            if shared:
                self.sockdir, self.pgport = shared
            else:
                self.pg = Postgres()
                self.owns_pg = True
        if self.pg is not None:
            self.sockdir, self.pgport = self.pg.sockdir, self.pg.port
        if self.dbname is None:
            self.dbname = "it_" + uuid.uuid4().hex[:12]
            psql(self.sockdir, self.pgport, "postgres", "CREATE DATABASE %s" % self.dbname)
        self.conninfo = "host=%s port=%d dbname=%s user=postgres" % (self.sockdir, self.pgport, self.dbname)
        self.migrate()
        self.write_config()
        self.port = free_port()
        self.bridge_port = free_port()
        if self.want_bridge and os.path.exists(self.bin("imagetools-wsbridge")):
            self.start_bridge()
        if self.want_worker and os.path.exists(self.bin("imagetools-worker")):
            self.start_worker()
        self.start_lighttpd()

    def stop(self):
        self.stop_lighttpd()
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs = []
        self.check_sanitizers()
        if self.owns_db and self.dbname and not self.owns_pg:
            try:
                psql(self.sockdir, self.pgport, "postgres",
                     "DROP DATABASE IF EXISTS %s WITH (FORCE)" % self.dbname)
            except Exception:
                pass
        if self.owns_pg and self.pg:
            self.pg.destroy()
        if self.dir and not os.environ.get("IT_KEEP"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def bin(self, name):
        return os.path.join(BUILDDIR, name)

    def migrate(self):
        r = subprocess.run([self.bin("imagetools-migrate"), "--quiet", "--dir", os.path.join(SRCDIR, "sql"),
                            "--database", self.conninfo], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("migrate failed: " + r.stderr)

    def write_config(self):
        self.config = os.path.join(self.dir, "imagetools.conf")
        # Every test client comes from 127.0.0.1, so the per-address rate limits would
        # trip tests that open hundreds of streams; test_security.py turns them on.
        s = {"database_url": self.conninfo, "log_level": "info", "rate_sessions": 0, "rate_streams": 0,
             "rate_uploads": 0, "rate_operations": 0}
        s.update(self.settings)
        with open(self.config, "w") as f:
            for k, v in s.items():
                f.write("%s = %s\n" % (k, v))

    def env(self):
        e = dict(os.environ)
        e["IMAGETOOLS_CONFIG"] = self.config
        # Sanitizer reports of the servers land in files the test checks at the end.
        san = "log_path=%s:" % os.path.join(self.dir, "sanitizer")
        e["ASAN_OPTIONS"] = san + "detect_leaks=0:" + e.get("ASAN_OPTIONS", "")
        e["UBSAN_OPTIONS"] = san + "print_stacktrace=1:" + e.get("UBSAN_OPTIONS", "")
        return e

    def check_sanitizers(self):
        """Fails the test for every AddressSanitizer / UBSan report a server wrote."""
        if not self.dir or not os.path.isdir(self.dir):
            return
        for name in sorted(os.listdir(self.dir)):
            if name.startswith("sanitizer."):
                with open(os.path.join(self.dir, name), errors="replace") as f:
                    text = f.read()
                self.tap.ok(False, "no sanitizer report from a server process (%s)" % name)
                self.tap.diag(text[:6000])

    def start_lighttpd(self):
        with open(os.path.join(SRCDIR, "lighttpd.conf.example")) as f:
            template = f.read()
        self.lighttpd_conf = os.path.join(self.dir, "lighttpd.conf")
        self.errorlog = os.path.join(self.dir, "lighttpd-error.log")
        with open(self.lighttpd_conf, "w") as f:
            f.write(render_lighttpd(template, dict({
                "port": self.port, "bind": "127.0.0.1", "statedir": self.dir,
                "webroot": os.path.join(SRCDIR, "web"), "fcgi_bin": self.bin("cgi-bin/imagetools.fcgi"),
                "fcgi_procs": self.fcgi_procs, "config": self.config, "bridge_host": "127.0.0.1",
                "bridge_port": self.bridge_port, "errorlog": self.errorlog,
                "pidfile": os.path.join(self.dir, "lighttpd.pid")}, **self.lighttpd_vars)))
        # The FastCGI processes inherit lighttpd's stderr: their log lines land here.
        log = open(os.path.join(self.dir, "fcgi.log"), "ab")
        self.lighttpd = subprocess.Popen(["lighttpd", "-D", "-f", self.lighttpd_conf], env=self.env(),
                                         stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        log.close()
        wait_for(lambda: self._health_answers(), timeout=20, what="lighttpd and imagetools.fcgi")

    def _health_answers(self):
        r = self.request("GET", "/api/v1/health", timeout=2)
        return r.status in (200, 503)

    def stop_lighttpd(self):
        if self.lighttpd and self.lighttpd.poll() is None:
            self.lighttpd.terminate()
            try:
                self.lighttpd.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.lighttpd.kill()
                self.lighttpd.wait()
        self.lighttpd = None
        # lighttpd ends the FastCGI processes it spawned; make sure none outlives the test.
        self.kill_fcgi(signal.SIGKILL, only_stray=True)

    def restart_lighttpd(self):
        self.stop_lighttpd()
        self.start_lighttpd()

    def fcgi_pids(self):
        pids = []
        if self.config is None:
            return pids
        sock_prefix = os.path.join(self.dir, "imagetools.fcgi.sock")
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/environ" % pid, "rb") as f:
                    env = f.read()
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if b"imagetools.fcgi" in cmd and ("IMAGETOOLS_CONFIG=" + self.config).encode() in env:
                pids.append(int(pid))
        del sock_prefix
        return pids

    def sanitized(self):
        """True when the FastCGI processes run with AddressSanitizer (memory figures mean nothing then)."""
        for pid in self.fcgi_pids():
            try:
                with open("/proc/%d/maps" % pid) as f:
                    if "libasan" in f.read():
                        return True
            except OSError:
                pass
        return False

    def kill_fcgi(self, sig=signal.SIGKILL, only_stray=False):
        for pid in self.fcgi_pids():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def start_bridge(self):
        log = open(os.path.join(self.dir, "bridge.log"), "ab")
        self.bridge = subprocess.Popen([self.bin("imagetools-wsbridge"), "--listen",
                                        "127.0.0.1:%d" % self.bridge_port], env=self.env(),
                                       stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.procs.append(self.bridge)
        wait_for(lambda: socket.create_connection(("127.0.0.1", self.bridge_port), timeout=1).close() or True,
                 timeout=10, what="the bridge")

    def start_worker(self, *args):
        log = open(os.path.join(self.dir, "worker.log"), "ab")
        w = subprocess.Popen([self.bin("imagetools-worker")] + list(args), env=self.env(),
                             stdout=log, stderr=log, start_new_session=True)
        log.close()
        self.procs.append(w)
        self.worker = w
        return w

    def dump_logs(self):
        if not self.dir:
            return
        for name in ("lighttpd-error.log", "fcgi.log", "bridge.log", "worker.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    lines = f.readlines()[-40:]
                self.tap.diag("---- %s (last %d lines)" % (name, len(lines)))
                self.tap.diag("".join(lines))

    # -- talking to it

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def _connection(self, timeout):
        """A connection to the stack's web server (TlsStack makes an HTTPS one)."""
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method, path, body=None, headers=None, timeout=30):
        conn = self._connection(timeout)
        try:
            h = dict(headers or {})
            if body is not None and not isinstance(body, (bytes, bytearray)):
                body = json.dumps(body).encode()
                h.setdefault("Content-Type", "application/json")
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            return Response(r.status, r.getheaders(), r.read())
        finally:
            conn.close()

    def curl(self, *args, check=False):
        """Runs curl against the stack; returns (status, headers text, body bytes)."""
        hdr = tempfile.NamedTemporaryFile(delete=False, dir=self.dir)
        hdr.close()
        r = subprocess.run(["curl", "-sS", "-D", hdr.name, "-o", "-"] + list(args), capture_output=True)
        with open(hdr.name, errors="replace") as f:
            headers = f.read()
        os.unlink(hdr.name)
        m = re.findall(r"^HTTP/[\d.]+ (\d+)", headers, re.M)
        status = int(m[-1]) if m else 0
        if check and r.returncode != 0:
            raise RuntimeError("curl failed: %s" % r.stderr.decode(errors="replace"))
        return status, headers, r.stdout

    def sql(self, query, *args):
        return psql(self.sockdir, self.pgport, self.dbname, query, *args)

    def new_session(self):
        r = self.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0"})
        if r.status != 201:
            raise RuntimeError("session create failed: %r" % r)
        return r.json()["session_id"]

    def is_problem(self, r, status, name):
        """Asserts r is an RFC 9457 problem with status; returns the parsed body or None."""
        ok = self.tap.is_(r.status, status, name + ": status %d" % status)
        ct = r.header("Content-Type") or ""
        ok &= self.tap.is_(ct.split(";")[0], "application/problem+json", name + ": problem+json")
        try:
            body = r.json()
        except Exception:
            self.tap.ok(False, name + ": body is JSON")
            return None
        self.tap.ok(body.get("status") == status and body.get("type", "").startswith("urn:imagetools:problem:")
                    and body.get("title"), name + ": body has type, title, status")
        return body if ok else body
