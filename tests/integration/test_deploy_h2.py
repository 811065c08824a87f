"""test_deploy_h2.py: ImageTools over TLS with HTTP/2, under lighttpd (lighttpd-tls.conf.example on top
of lighttpd.conf.example) and Apache (apache/imagetools.conf.example with IT_TLS), each with a
self-signed certificate and nothing changed in the shipped files but their documented variables.

What a user relies on:
- the site answers HTTP/2 (ALPN h2), and curl --http2 on an SSE stream gets the first event and
  then each published event while the stream is open: each is read before the next is published;
- one HTTP/2 connection carries ten SSE streams and three uploads at once (under lighttpd, which
  allows eight streams per connection, five and three), more than the six connections a browser
  opens per host over HTTP/1.1: every stream gets every event once, in order, and every upload
  is stored byte for byte (under Apache one sent without a length); streams the client resets
  are released and the connection goes on;
- WebSockets reach the bridge through the same TLS front (wss:);
- plain HTTP redirects to https for the site's name, and lighttpd answers ACME challenges on it;
- Chromium on the https page with ten EventSource streams to one session (six under lighttpd)
  uploads a file and every stream gets its event (tests/browser/h2streams.mjs); over HTTP/1.1
  the same script fails, its upload stuck behind the streams.
"""

import hashlib
import os
import re
import select
import subprocess
import time

import h2client
from apache import prerequisites
from deploy_scenarios import SETTINGS, append_event, multipart, open_streams, png_bytes, settled_count
from harness import SRCDIR, Tap, wait_for
from nodews import NODE, NodeWs, missing
from tls_stack import ApacheTlsStack, LighttpdTlsStack

why = prerequisites("lighttpd", "apache")
if why is None and not os.path.exists("/usr/lib/lighttpd/mod_openssl.so"):
    why = "lighttpd-mod-openssl is not installed"
if why is None and not os.path.exists("/usr/lib/apache2/modules/mod_http2.so"):
    why = "Apache's mod_http2 is not installed"
if why is None and not h2client.available():
    why = "python3-h2 is not installed"
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

STREAMS = 10


class CurlStream:
    """curl --http2 -N on a URL, its output (headers first, -i) read as it arrives."""

    def __init__(self, st, path):
        self.p = subprocess.Popen(["curl", "-sS", "-N", "-i", "--http2", "--cacert", st.cert, st.url + path],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        self.buf = b""

    def read_until(self, pred, timeout=10.0):
        """Reads until pred(everything read so far) holds; returns whether it did in time."""
        deadline = time.monotonic() + timeout
        while not pred(self.buf):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.p.stdout], [], [], left)[0]:
                return False
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                return False
            self.buf += chunk
        return True

    def head(self):
        return self.buf.partition(b"\r\n\r\n")[0].decode("latin-1")

    def events(self):
        s = h2client.Stream(0, "GET", "")
        s.data = bytearray(self.buf.partition(b"\r\n\r\n")[2])
        return s.events()

    def close(self):
        if self.p.poll() is None:
            self.p.terminate()
        self.p.wait()
        self.p.stdout.close()
        self.p.stderr.close()


def curl_version(st, *args):
    """(HTTP version, status) of a curl request to st's https URL, e.g. ("2", "200")."""
    r = subprocess.run(["curl", "-sS", "--cacert", st.cert, "-o", "/dev/null", "-w", "%{http_version} %{http_code}"]
                       + list(args), capture_output=True, text=True, timeout=30)
    return tuple(r.stdout.split())


def check_negotiation(tap, st, label):
    tap.is_(curl_version(st, "--http2", st.url + "/api/v1/health"), ("2", "200"),
            label + ": curl --http2 gets the health answer over HTTP/2 (ALPN h2)")
    tap.is_(curl_version(st, "--http1.1", st.url + "/"), ("1.1", "200"),
            label + ": HTTP/1.1 clients are served on the same port")


def check_sse_unbuffered(tap, st, sid, label):
    """The first byte and then each event arrive while the stream is open: each event is read
    before the next one is published, so a buffer anywhere on the way fails this."""
    c = CurlStream(st, "/api/v1/events/stream?session_id=" + sid)
    try:
        got = c.read_until(lambda b: len(c.events()) >= 1)
        tap.like(c.head(), r"^HTTP/2 200", label + ": the SSE answer is HTTP/2")
        tap.like(c.head(), r"(?im)^content-type: text/event-stream", label + ": as text/event-stream")
        tap.ok(got and c.events()[0].get("event") == "connection.status",
               label + ": the first event (connection.status) arrives before anything is published")
        ids = []
        for i in range(5):
            eid = append_event(st, sid, "image.deleted", {"image_id": "h2-%d" % i})
            ok = c.read_until(lambda b: any(e.get("id") == str(eid) for e in c.events()))
            ids.append(eid if ok else None)
            if not ok:
                break
        tap.ok(None not in ids and len(ids) == 5,
               label + ": five events, each read over HTTP/2 before the next was published")
        tap.is_([e.get("id") for e in c.events()[1:]], [str(i) for i in ids],
                label + ": in order, each once")
    finally:
        c.close()


def image_part(n, seed):
    return png_bytes(n, n, seed=seed)


def lighttpd_version():
    r = subprocess.run(["lighttpd", "-v"], capture_output=True, text=True)
    m = re.search(r"lighttpd/(\d+)\.(\d+)\.(\d+)", r.stdout + r.stderr)
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def check_one_connection(tap, st, sid, label, want_streams, unknown_length=True):
    """SSE streams (want_streams, or fewer when the server allows fewer streams per connection)
    and three uploads at once over one HTTP/2 connection. unknown_length: the third upload is
    sent without a content-length."""
    c = h2client.H2Client("127.0.0.1", st.port, st.cert)
    try:
        c.wait(lambda: c.settings_seen, what="the server's SETTINGS")
        limit = c.peer_max_concurrent_streams
        nstreams = min(want_streams, limit - 3)
        tap.diag("%s: the server allows %d concurrent streams on a connection: %d SSE streams and 3 uploads"
                 % (label, limit, nstreams))
        tap.ok(nstreams + 3 > 6, label + ": %d requests at once on one connection, more than the six connections "
               "a browser opens per host over HTTP/1.1" % (nstreams + 3))
        # First what a browser tab does before it opens a stream: the page, its scripts and
        # styles, the health check. Apache's mod_http2 starts a connection at six requests
        # processed at once and raises that only as requests on it complete (docs/deploy.md,
        # "TLS and HTTP/2"); a tab's own loading is what raises it.
        # Like a browser, never more at once than the server's SETTINGS allow (lighttpd: 8).
        paths = ["/" + os.path.relpath(os.path.join(dirpath, name), os.path.join(SRCDIR, "web"))
                 for dirpath, _, names in os.walk(os.path.join(SRCDIR, "web")) for name in sorted(names)]
        page = []
        for path in paths + ["/api/v1/health"]:
            c.wait(lambda: c.conn.open_outbound_streams < limit, what="a free stream for the page's files")
            page.append(c.request("GET", path))
        c.wait(lambda: all(p.ended for p in page), what="the page and its files")
        tap.ok(all(p.status == 200 for p in page), label + ": the page, its %d files and the health check load"
               % (len(page) - 1))
        before = settled_count(st, "fastcgi")
        streams = [c.request("GET", "/api/v1/events/stream?session_id=" + sid) for _ in range(nstreams)]
        c.wait(lambda: all(len(s.events()) >= 1 for s in streams), timeout=20, what="every connection.status")
        tap.ok(all(s.status == 200 and s.events()[0].get("event") == "connection.status" for s in streams),
               label + ": %d SSE streams open on one connection, each with its connection.status" % nstreams)
        tap.is_(open_streams(st), before + nstreams, label + ": the backend holds each of them as a stream of its own")
        # Three uploads while the ten streams stay open: about 300 KB each, more than a
        # stream's first flow-control window, so the body moves only as the server reads it.
        # The last has no content-length: HTTP/2 has no chunked encoding, a body of
        # unknown length is just DATA frames until the end of the stream.
        files = [image_part(300, 21), image_part(310, 22), image_part(290, 23)]
        ups = []
        for i, data in enumerate(files):
            ctype, body = multipart({"session_id": sid, "source": "cli"},
                                    [("file", "h2-%d.png" % i, "image/png", data)])
            hdrs = [("content-type", ctype)]
            if i == 2 and unknown_length:
                hdrs.append(("content-length", None))
            ups.append(c.request("POST", "/api/v1/images", headers=hdrs, body=body))
        tap.ok(c.open_streams() == nstreams + 3, label + ": %d streams open at once on the connection"
               % c.open_streams())
        c.wait(lambda: all(u.ended or u.reset is not None for u in ups), timeout=60, what="the three uploads")
        if not tap.is_([u.status for u in ups], [201, 201, 201], label + ": three uploads stored beside the streams"):
            tap.diag([(u.status, u.reset, u.body()[:300]) for u in ups])
        images = [u.json()["images"][0] if u.status == 201 else {} for u in ups]
        tap.is_([im.get("sha256") for im in images], [hashlib.sha256(d).hexdigest() for d in files],
                label + ": each stored with the sha256 of the bytes sent%s"
                % (" (one without a content-length)" if unknown_length else ""))
        downs = [c.request("GET", im.get("file_url", "/")) for im in images]
        c.wait(lambda: all(d.ended or d.reset is not None for d in downs), timeout=60, what="the downloads")
        tap.ok(all(d.status == 200 and d.body() == want for d, want in zip(downs, files)),
               label + ": and downloaded byte for byte on the same connection")
        for i in range(2):
            append_event(st, sid, "image.deleted", {"image_id": "after-%d" % i})
        want = [int(x) for x in st.sql("SELECT seq FROM events WHERE session_id = :'p1' ORDER BY seq", sid).split()]

        def ids(s):
            return [int(e["id"]) for e in s.events() if "id" in e]
        try:
            c.wait(lambda: all(ids(s) == want for s in streams), timeout=20, what="every event on every stream")
        except TimeoutError:
            pass
        tap.is_([ids(s) for s in streams], [want] * nstreams,
                label + ": each of the %d streams got all %d events (uploads and published), once, in order"
                % (nstreams, len(want)))
        tap.ok(c.max_open >= nstreams + 3 and not c.closed,
               label + ": all of it on one connection (%d streams open at most)" % c.max_open)
        # A browser closes an EventSource with RST_STREAM, on a connection that stays open:
        # the backend must let go of each stream all the same.
        for s in streams:
            c.cancel(s)
        # (before may count a stream of an earlier check that is still on its way out.)
        try:
            wait_for(lambda: open_streams(st) <= before, timeout=20, what="the streams' release")
        except TimeoutError:
            pass
        tap.ok(open_streams(st) <= before, label + ": streams the client resets are released, the connection open")
        tap.ok(not c.closed, label + ": the connection stays usable")
        h = c.request("GET", "/api/v1/health")
        c.wait(lambda: h.ended, what="a request after the resets")
        tap.is_(h.status, 200, label + ": and answers the next request")
    finally:
        c.close()


def check_wss(tap, st, sid, label):
    if missing():
        tap.skip(label + ": wss through the TLS front", missing())
        return
    c = NodeWs()
    try:
        last = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
        c.cmd(cmd="connect", url="wss://127.0.0.1:%d/api/v1/ws/%s?last_event_id=%d" % (st.port, sid, last),
              origin=st.origin, ca=st.cert)
        tap.is_(c.next(), {"open": True}, label + ": wss: the WebSocket opens through the TLS front")
        m = c.next()
        tap.ok(m.get("msg", {}).get("type") == "connection.status"
               and m["msg"].get("data", {}).get("transport") == "websocket", label + ": wss: connection.status first")
        eid = append_event(st, sid, "image.deleted", {"image_id": "wss"})
        m = c.next()
        tap.is_((m.get("msg", {}).get("id"), m.get("msg", {}).get("type")), (eid, "image.deleted"),
                label + ": wss: a published event arrives as a frame")
        c.cmd(cmd="close")
    finally:
        c.stop()


def check_redirect(tap, st, label, acme):
    """The plain port redirects the site's name to https (and, under lighttpd, answers ACME
    http-01 challenges from var.acme_dir instead)."""
    host = "images.example.org" if acme else "127.0.0.1"
    code, headers, _ = st.curl("-H", "Host: %s:%d" % (host, st.http_port),
                               "http://127.0.0.1:%d/api/v1/health?x=1" % st.http_port)
    tap.is_(code, 301, label + ": plain HTTP is redirected")
    tap.like(headers, r"(?im)^location: https://%s:%d/api/v1/health\?x=1\r?$" % (host.replace(".", r"\."), st.port),
             label + ": to the same URL on https")
    if acme:
        d = os.path.join(st.acme_dir, ".well-known", "acme-challenge")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "tok3n"), "w") as f:
            f.write("tok3n.key\n")
        code, _, body = st.curl("-H", "Host: %s" % host, "http://127.0.0.1:%d/.well-known/acme-challenge/tok3n"
                                % st.http_port)
        tap.is_((code, body), (200, b"tok3n.key\n"), label + ": an ACME challenge is answered over plain HTTP")


def check_browser(tap, st, label, nstreams):
    from browser import BROWSER_DIR, CHROMIUM, BrowserRun
    if not (NODE and os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core"))
            and os.access(CHROMIUM, os.X_OK)):
        tap.skip(label + ": Chromium with EventSource streams", "node, playwright-core or Chromium missing")
        return
    BrowserRun(tap, st).run("h2streams.mjs", label=label.replace(" ", "-"), timeout=180,
                            env={"IT_IGNORE_HTTPS_ERRORS": "1", "IT_STREAMS": str(nstreams)})


def run(tap, st, label, acme, streams, browser_streams, unknown_length=True):
    check_negotiation(tap, st, label)
    sid = st.new_session()
    check_sse_unbuffered(tap, st, sid, label)
    check_one_connection(tap, st, st.new_session(), label, streams, unknown_length)
    check_wss(tap, st, sid, label)
    check_redirect(tap, st, label, acme)
    check_browser(tap, st, label, browser_streams)


tap = Tap()
# keepalive_interval 2: Apache notices a departed stream only when a write to it fails.
H2_SETTINGS = dict(SETTINGS, keepalive_interval=2)
with LighttpdTlsStack(tap, bridge=True, settings=H2_SETTINGS) as st:
    # lighttpd serves at most 8 streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS,
    # compiled in), and a browser queues what is over: the page's own realtime connection, six
    # EventSource streams and the upload fill it (docs/deploy.md, "TLS and HTTP/2"). Before
    # 1.4.78 it also answers 411 to an HTTP/2 request body without a content-length, before any
    # configuration applies.
    unknown = lighttpd_version() >= (1, 4, 78)
    if not unknown:
        tap.skip("lighttpd h2: an upload without a content-length over HTTP/2",
                 "lighttpd %d.%d.%d answers it 411 (fixed in 1.4.78)" % lighttpd_version())
    run(tap, st, "lighttpd h2", acme=True, streams=STREAMS, browser_streams=6, unknown_length=unknown)
with ApacheTlsStack(tap, bridge=True, settings=H2_SETTINGS) as st:
    run(tap, st, "apache h2", acme=False, streams=STREAMS, browser_streams=STREAMS)
tap.done()
