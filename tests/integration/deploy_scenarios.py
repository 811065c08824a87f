"""deploy_scenarios.py: the checks every deployment must pass, run unchanged against each web
server setup (lighttpd FastCGI and CGI, Apache mod_proxy_fcgi and mod_cgi) and across nodes.

    from deploy_scenarios import run_all
    run_all(tap, st, mode="fastcgi")      # st: a harness.Stack or one of apache.py's stacks

What a deployment can break is what is checked: the request reaching imagetools.fcgi with
its path, method, query, headers and body intact; errors arriving as problem+json; static
files; and above all streaming: an SSE event or a long-poll answer must reach the client
while the request is still open, not when the web server's buffer fills or the request
ends. Parts of the API that are not built yet (their route is not in src/fcgi/app.c) are
reported as TAP skips naming the missing route, so they start running the moment they land.
"""

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import struct
import subprocess
import threading
import time
import zlib

from harness import SRCDIR


# ---------------------------------------------------------------- TAP extras

def skip(tap, reason):
    tap.n += 1
    print("ok %d # SKIP %s" % (tap.n, reason))


def has_route(method, path):
    """True when src/fcgi/app.c routes method + path (the route table is the source of truth
    for what the binary under test serves)."""
    with open(os.path.join(SRCDIR, "src", "fcgi", "app.c")) as f:
        return re.search(r'\{\s*"%s",\s*"%s"' % (re.escape(method), re.escape(path)), f.read()) is not None


def append_event(st, sid, etype, data):
    """Appends one event through the project's only way to write one (it_append_event, which
    also notifies listeners) and returns its id."""
    return int(st.sql("SELECT it_append_event(:'p1', :'p2', CAST(:'p3' AS jsonb))", sid, etype, json.dumps(data)))


# ---------------------------------------------------------------- clients

class SSEClient:
    """A Server-Sent Events reader on one HTTP connection: next() returns the next event as
    {"id", "event", "data"} (data parsed as JSON), skipping comments."""

    def __init__(self, host, port, path, headers=None, timeout=15):
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.conn.request("GET", path, headers=dict(headers or {}))
        self.resp = self.conn.getresponse()
        self.status = self.resp.status
        self.retry = None
        self.comments = 0

    def header(self, name):
        return self.resp.getheader(name)

    def next(self):
        ev = {}
        data = []
        while True:
            line = self.resp.readline()
            if not line:
                raise EOFError("the stream ended")
            line = line.decode("utf-8").rstrip("\r\n")
            if line == "":
                if data or ev:
                    ev["data"] = json.loads("\n".join(data)) if data else None
                    return ev
                continue
            if line.startswith(":"):
                self.comments += 1
                continue
            k, _, v = line.partition(":")
            v = v[1:] if v.startswith(" ") else v
            if k == "data":
                data.append(v)
            elif k == "retry":
                self.retry = int(v)
            else:
                ev[k] = v

    def close(self):
        self.conn.close()


class WSClient:
    """A minimal RFC 6455 client (text frames, ping/pong, close) over a plain socket."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    def __init__(self, host, port, path, origin, timeout=15):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nOrigin: %s\r\n\r\n"
               % (path, host, port, key, origin))
        self.sock.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode(errors="replace")
        m = re.match(r"HTTP/1\.1 (\d+)", self.head)
        self.status = int(m.group(1)) if m else 0
        want = base64.b64encode(hashlib.sha1((key + self.GUID).encode()).digest()).decode()
        self.accept_ok = re.search(r"(?im)^Sec-WebSocket-Accept:\s*" + re.escape(want) + r"\s*$", self.head) is not None

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the WebSocket connection ended")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        """Returns (opcode, payload bytes) of the next frame; server frames are never masked."""
        b0, b1 = self._read(2)
        if b1 & 0x80:
            raise ValueError("the server sent a masked frame")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return b0 & 0x0F, self._read(n)

    def recv_text(self):
        while True:
            op, payload = self.recv()
            if op == 1:
                return payload.decode("utf-8")
            if op == 8:
                raise EOFError("close frame %r" % payload[:2])

    def send_text(self, text):
        payload = text.encode()
        mask = os.urandom(4)
        head = bytes([0x81])
        if len(payload) < 126:
            head += bytes([0x80 | len(payload)])
        else:
            head += bytes([0x80 | 126]) + struct.pack("!H", len(payload))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def close(self):
        self.sock.close()


def png_bytes(width, height, seed=1):
    """A valid RGB PNG of noise (incompressible, so its size is about width*height*3)."""
    state = seed
    raw = bytearray()
    for _ in range(height):
        raw.append(0)
        for _ in range(width * 3):
            state = (state * 1103515245 + 12345) & 0x7FFFFFFF
            raw.append(state >> 16 & 0xFF)
    rows = bytes(raw)

    def chunk(kind, data):
        return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack("!IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows, 1)) + chunk(b"IEND", b""))


def multipart(fields, files):
    """Encodes fields {name: value} and files [(name, filename, content_type, bytes)]."""
    boundary = "----it" + os.urandom(12).hex()
    out = b""
    for k, v in fields.items():
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, k, v)).encode()
    for name, filename, ctype, data in files:
        out += ("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\nContent-Type: %s\r\n\r\n"
                % (boundary, name, filename, ctype)).encode() + data + b"\r\n"
    out += ("--%s--\r\n" % boundary).encode()
    return "multipart/form-data; boundary=" + boundary, out


# ---------------------------------------------------------------- scenarios

def api(st, path):
    return getattr(st, "prefix", "") + "/api/v1" + path


def check_basics(tap, st, mode, label):
    r = st.request("GET", api(st, "/health"))
    tap.is_(r.status, 200, label + ": health answers 200")
    body = r.json() if r.status == 200 else {}
    tap.is_(body.get("database"), "ok", label + ": health reaches the database")
    tap.is_(body.get("mode"), mode, label + ": served as " + mode)
    tap.is_(r.header("X-Content-Type-Options"), "nosniff", label + ": the backend's headers pass through")

    r = st.request("POST", api(st, "/sessions"), body=b"", headers={"Content-Length": "0"})
    tap.is_(r.status, 201, label + ": POST creates a session (method passes through)")
    sid = r.json().get("session_id", "") if r.status == 201 else ""
    tap.like(r.header("Location") or "", "^" + re.escape(api(st, "/sessions/" + sid)) + "$",
             label + ": Location names the session under this site's prefix")
    r = st.request("GET", api(st, "/sessions/" + sid))
    tap.is_((r.status, r.json().get("session_id") if r.status == 200 else None), (200, sid),
            label + ": the session reads back")
    st.is_problem(st.request("GET", api(st, "/sessions/" + "Q" * 32)), 404, label + ": unknown session")
    body = st.is_problem(st.request("GET", api(st, "/no/such/thing?x=1")), 404, label + ": unknown route")
    tap.is_((body or {}).get("instance"), api(st, "/no/such/thing"),
            label + ": the backend saw the path the client asked for, without the query")
    r = st.request("PUT", api(st, "/health"), body=b"", headers={"Content-Length": "0"})
    st.is_problem(r, 405, label + ": wrong method")
    tap.is_(r.header("Allow"), "GET", label + ": 405 lists the allowed methods")
    r = st.request("DELETE", api(st, "/sessions/" + sid))
    tap.is_(r.status, 204, label + ": DELETE passes through")
    st.is_problem(st.request("GET", api(st, "/sessions/" + sid)), 404, label + ": the deleted session is gone")
    return new_session(st)


def new_session(st):
    r = st.request("POST", api(st, "/sessions"), body=b"", headers={"Content-Length": "0"})
    if r.status != 201:
        raise RuntimeError("session create failed: %r" % r)
    return r.json()["session_id"]


def check_static(tap, st, label):
    index = os.path.join(SRCDIR, "web", "index.html")
    if not os.path.exists(index):
        skip(tap, label + ": web/index.html is not built yet")
        return
    with open(index, "rb") as f:
        want = f.read()
    r = st.request("GET", getattr(st, "prefix", "") + "/")
    tap.is_(r.status, 200, label + ": the page is served at /")
    tap.ok(r.body == want, label + ": the page is web/index.html byte for byte")
    tap.like(r.header("Content-Type") or "", "^text/html", label + ": as text/html")


def check_upload(tap, st, sid, label):
    if not has_route("POST", "/api/v1/images"):
        skip(tap, label + ": POST /api/v1/images is not built yet")
        return None
    small = png_bytes(16, 16, seed=7)
    big = png_bytes(420, 420, seed=11)      # about 530 KB: more than any server buffers in memory
    ctype, body = multipart({"session_id": sid, "source": "cli"},
                            [("file", "small.png", "image/png", small), ("file", "big.png", "image/png", big)])
    r = st.request("POST", api(st, "/images"), body=body, headers={"Content-Type": ctype}, timeout=60)
    tap.is_(r.status, 201, label + ": a two-file upload is stored (%d bytes through the server)" % len(body))
    images = r.json().get("images", []) if r.status == 201 else []
    tap.is_(len(images), 2, label + ": both images stored")
    for img, want in zip(images, (small, big)):
        tap.is_(img.get("sha256"), hashlib.sha256(want).hexdigest(), label + ": sha256 of %s" % img.get("filename"))
        # The signed URL the upload answered, taken as it is: no credential, under the site's prefix.
        f = st.request("GET", img.get("file_url", "/"), timeout=60)
        tap.ok(f.status == 200 and f.body == want,
               label + ": %s downloads byte for byte (%d bytes)" % (img.get("filename"), len(want)))
    ids = [img.get("id") for img in images]
    evs = st.sql("SELECT payload->>'image_id' FROM events WHERE session_id = :'p1' AND type = 'image.uploaded' "
                 "ORDER BY seq", sid).split()
    tap.is_(evs[-2:], ids, label + ": one image.uploaded event per image, in order")
    ctype, body = multipart({"session_id": sid}, [("file", "notes.txt", "image/png", b"hello, not an image\n")])
    before = st.sql("SELECT count(*) FROM images")
    st.is_problem(st.request("POST", api(st, "/images"), body=body, headers={"Content-Type": ctype}), 415,
                  label + ": a non-image upload")
    tap.is_(st.sql("SELECT count(*) FROM images"), before, label + ": the refused upload stored nothing")
    # Past max_upload_bytes (1M in these stacks): refused with 413 while the body is still
    # arriving, and the web server must pass that answer on rather than fail the request.
    huge = png_bytes(800, 800, seed=13)     # about 1.9 MB
    ctype, body = multipart({"session_id": sid}, [("file", "huge.png", "image/png", huge)])
    before = st.sql("SELECT count(*) FROM images")
    st.is_problem(st.request("POST", api(st, "/images"), body=body, headers={"Content-Type": ctype}, timeout=60),
                  413, label + ": a file over max_upload_bytes")
    tap.is_(st.sql("SELECT count(*) FROM images"), before, label + ": the oversized upload stored nothing")
    return images


# The settings every deployment test runs with (check_upload relies on max_upload_bytes).
SETTINGS = {"max_upload_bytes": "1M"}


def check_longpoll(tap, st, sid, label):
    if not has_route("GET", "/api/v1/events"):
        skip(tap, label + ": GET /api/v1/events (long-poll) is not built yet")
        return
    base = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    ids = [append_event(st, sid, "image.deleted", {"image_id": "lp-%d" % i}) for i in range(3)]
    r = st.request("GET", api(st, "/events?session_id=%s&cursor=%d&timeout=5" % (sid, base)))
    got = r.json() if r.status == 200 else {}
    tap.is_([e.get("id") for e in got.get("events", [])], ids, label + ": long-poll returns the backlog in order")
    tap.is_(got.get("cursor"), ids[-1], label + ": and the new cursor")

    # A waiting long-poll is answered when an event commits, not when it times out.
    result = {}

    def waiter():
        t0 = time.monotonic()
        result["r"] = st.request("GET", api(st, "/events?session_id=%s&cursor=%d&timeout=20" % (sid, ids[-1])),
                                 timeout=40)
        result["t"] = time.monotonic() - t0
    th = threading.Thread(target=waiter)
    th.start()
    time.sleep(1.0)
    eid = append_event(st, sid, "image.deleted", {"image_id": "lp-wake"})
    th.join(40)
    r = result.get("r")
    got = r.json() if r is not None and r.status == 200 else {}
    tap.is_([e.get("id") for e in got.get("events", [])], [eid], label + ": a waiting long-poll gets the new event")
    tap.ok(result.get("t", 99) < 15, label + ": long before its 20 s timeout (%.1f s)" % result.get("t", 99))
    st.is_problem(st.request("GET", api(st, "/events?session_id=%s&cursor=0&timeout=1" % ("Z" * 32))), 404,
                  label + ": long-poll on an unknown session")


def check_sse(tap, st, sid, label):
    if not has_route("GET", "/api/v1/events/stream"):
        skip(tap, label + ": GET /api/v1/events/stream (SSE) is not built yet")
        return
    last = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    # Browsers always offer compression; a compressed stream would be held back.
    c = SSEClient("127.0.0.1", st.port, api(st, "/events/stream?session_id=" + sid),
                  headers={"Last-Event-ID": str(last), "Accept-Encoding": "gzip, deflate"})
    try:
        tap.is_(c.status, 200, label + ": SSE answers 200")
        tap.like(c.header("Content-Type") or "", "^text/event-stream", label + ": as text/event-stream")
        tap.is_(c.header("Content-Encoding"), None, label + ": not compressed on the way")
        tap.is_(c.header("X-Accel-Buffering"), "no", label + ": tells proxies in front not to buffer")
        # The first event arrives while the response is still open: nothing between the
        # backend and us holds the stream back.
        first = c.next()
        tap.is_(first.get("event"), "connection.status", label + ": connection.status arrives at once")
        tap.ok("id" not in first, label + ": connection.status carries no id")
        ids = [append_event(st, sid, "image.deleted", {"image_id": "sse-%d" % i}) for i in range(3)]
        got = [c.next() for _ in ids]
        tap.is_([int(e.get("id", -1)) for e in got], ids, label + ": events stream live, in order, once each")
        tap.is_([e["data"].get("id") for e in got], ids, label + ": the data is the event object")
    finally:
        c.close()
    # Resume from Last-Event-ID: only what came after it.
    c = SSEClient("127.0.0.1", st.port, api(st, "/events/stream?session_id=" + sid),
                  headers={"Last-Event-ID": str(ids[0])})
    try:
        evs = [c.next() for _ in range(3)]
        tap.is_([int(e["id"]) for e in evs if "id" in e], ids[1:], label + ": a resumed stream sends the rest")
    finally:
        c.close()


def open_streams(st):
    """SSE streams parked in the (single) FastCGI process, from its health report."""
    r = st.request("GET", api(st, "/health"))
    return r.json().get("hub", {}).get("sse_streams") if r.status == 200 else None


def count_streams(st, mode):
    """Open streams of st: parked in the (single) FastCGI process, or CGI processes."""
    return open_streams(st) if mode == "fastcgi" else len(st.fcgi_pids())


def settled_count(st, mode, timeout=10.0):
    """count_streams once it has stopped moving: a stream or CGI process of an earlier
    check may still be on its way out, and counting it would skew what follows."""
    last, same, deadline = count_streams(st, mode), 0, time.monotonic() + timeout
    while same < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
        now = count_streams(st, mode)
        same = same + 1 if now == last else 0
        last = now
    return last


def check_client_leaves(tap, st, sid, label, within, mode="cgi", half_close=False):
    """A stream whose client hangs up must not hold its resources until it would end by
    itself: the web server has to tell the backend, or the backend's next keepalive write
    has to fail through it, within `within` seconds. In CGI mode the stream's process must
    end; in FastCGI mode the hub must release the stream. half_close: the client only
    shuts down its sending side (it still reads), which only lighttpd's
    tcp-fin-propagate passes on."""
    if not has_route("GET", "/api/v1/events/stream"):
        skip(tap, label + ": GET /api/v1/events/stream (SSE) is not built yet")
        return
    how = "half-closes" if half_close else "leaves"
    before = settled_count(st, mode)
    s = socket.create_connection(("127.0.0.1", st.port), timeout=15)
    s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"
               % (api(st, "/events/stream?session_id=" + sid), st.port)).encode())
    got = b""
    while b"\n\n" not in got.partition(b"\r\n\r\n")[2].replace(b"\r\n", b"\n"):
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    tap.is_(count_streams(st, mode), (before or 0) + 1,
            label + ": an open stream holds %s" % ("a parked stream in the hub" if mode == "fastcgi" else "a CGI process"))
    if half_close:
        s.shutdown(socket.SHUT_WR)
    else:
        s.close()
    t0 = time.monotonic()
    while count_streams(st, mode) != before and time.monotonic() - t0 < within + 5:
        time.sleep(0.1)
    took = time.monotonic() - t0
    tap.ok(count_streams(st, mode) == before and took <= within,
           label + ": released %.1f s after the client %s (limit %d s)" % (took, how, within))
    s.close()


def check_websocket(tap, st, sid, label):
    if not os.path.exists(st.bin("imagetools-wsbridge")) or getattr(st, "bridge", None) is None:
        skip(tap, label + ": no WebSocket bridge in this setup or not built yet")
        return
    last = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    origin = "http://127.0.0.1:%d" % st.port
    ws = WSClient("127.0.0.1", st.port, api(st, "/ws/%s?last_event_id=%d" % (sid, last)), origin)
    try:
        tap.is_(ws.status, 101, label + ": the WebSocket upgrade passes through the web server")
        tap.ok(ws.accept_ok, label + ": with the bridge's Sec-WebSocket-Accept")
        msg = json.loads(ws.recv_text())
        tap.is_(msg.get("type"), "connection.status", label + ": connection.status frame first")
        eid = append_event(st, sid, "image.deleted", {"image_id": "ws-1"})
        msg = json.loads(ws.recv_text())
        tap.is_((msg.get("id"), msg.get("type")), (eid, "image.deleted"), label + ": an event arrives as a frame")
        ws.send_text("ping")
        tap.is_(ws.recv_text(), "pong", label + ": ping is answered with pong")
    finally:
        ws.close()
    # /api/v1/ws: no session id in the URL (so none in the web server's logs), the
    # credential in the first message.
    ws = WSClient("127.0.0.1", st.port, api(st, "/ws?last_event_id=%d" % last), origin)
    try:
        tap.is_(ws.status, 101, label + ": /ws, with no id in the URL, is upgraded through the web server too")
        if ws.status == 101:
            ws.send_text(json.dumps({"type": "auth", "credential": sid}))
            msg = json.loads(ws.recv_text())
            tap.is_(msg.get("type"), "connection.status", label + ": and follows the session after the auth message")
    finally:
        ws.close()
    # The bridge's Origin check works through the proxy only if the proxy passes the
    # browser's Host on: a page from elsewhere must be refused, ours (above) accepted.
    ws = WSClient("127.0.0.1", st.port, api(st, "/ws/%s" % sid), "http://evil.example")
    try:
        tap.is_(ws.status, 403, label + ": an upgrade from a foreign Origin is refused")
    finally:
        ws.close()


def check_cli(tap, st, sid, label):
    """The command-line clients against this site's URL (with its prefix, as a user would
    give it): imagetools-upload stores a file, imagetools-watch sees its event over SSE and
    over long-poll."""
    if not (os.path.exists(st.bin("imagetools-upload")) and os.path.exists(st.bin("imagetools-watch"))
            and has_route("POST", "/api/v1/images")):
        skip(tap, label + ": the command-line clients or uploads are not built yet")
        return
    server = "http://127.0.0.1:%d%s" % (st.port, getattr(st, "prefix", ""))
    home = os.path.join(st.dir, "cli-home")
    os.makedirs(home, exist_ok=True)
    env = dict(os.environ, HOME=home, XDG_CONFIG_HOME=home)
    env.pop("IMAGETOOLS_SERVER", None)
    env.pop("IMAGETOOLS_SESSION", None)
    last = st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid)
    watchers = {t: subprocess.Popen([st.bin("imagetools-watch"), "-s", server, "-S", sid, "-t", t, "--since", last,
                                     "-T", "image.uploaded", "-1", "-q"], env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE)
                for t in ("sse", "longpoll")}
    path = os.path.join(home, "from-cli.png")
    data = png_bytes(24, 24, seed=5)
    with open(path, "wb") as f:
        f.write(data)
    r = subprocess.run([st.bin("imagetools-upload"), "-s", server, "-S", sid, "-q", "-j", path], env=env,
                       capture_output=True, timeout=60)
    tap.is_(r.returncode, 0, label + ": imagetools-upload stores a file through the site")
    try:
        answer = json.loads(r.stdout.decode().splitlines()[0])
    except (ValueError, IndexError):
        answer = {}
    stored = (answer.get("images") or [answer])[0] if isinstance(answer, dict) else {}
    tap.is_(stored.get("sha256"), hashlib.sha256(data).hexdigest(), label + ": as the bytes it sent")
    for t, p in watchers.items():
        try:
            out, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        try:
            ev = json.loads(out.decode().splitlines()[0])
        except (ValueError, IndexError):
            ev = {}
            tap.diag("imagetools-watch -t %s: %r %r" % (t, out[-500:], err[-500:]))
        tap.is_((ev.get("type"), ev.get("data", {}).get("filename")), ("image.uploaded", "from-cli.png"),
                label + ": imagetools-watch over %s sees the upload" % t)


def check_operation(tap, st, sid, images, label, cron):
    """A long operation end to end through the site: POST /operations, the worker (a daemon,
    or `imagetools-worker --once` from cron where no daemon may run), and its progress
    reaching an SSE client."""
    if not (images and has_route("POST", "/api/v1/operations") and os.path.exists(st.bin("imagetools-worker"))):
        skip(tap, label + ": operations, the worker or uploads are not built yet")
        return
    last = st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid)
    c = SSEClient("127.0.0.1", st.port, api(st, "/events/stream?session_id=" + sid), headers={"Last-Event-ID": last},
                  timeout=60)
    try:
        c.next()
        body = {"session_id": sid, "type": "bulk_resize", "image_ids": [images[0]["id"]], "params": {"width": 8}}
        r = st.request("POST", api(st, "/operations"), body=body)
        tap.is_(r.status, 202, label + ": an operation is accepted")
        op = r.json().get("operation_id") if r.status == 202 else None
        if cron:
            w = subprocess.run([st.bin("imagetools-worker"), "--once"], env=st.env(), capture_output=True, timeout=120)
            tap.is_(w.returncode, 0, label + ": imagetools-worker --once (cron) runs the queue")
        elif st.worker is None:
            st.start_worker()
        seen = []
        while True:
            ev = c.next()
            if ev.get("data", {}).get("data", {}).get("operation_id") != op:
                continue
            seen.append((int(ev["id"]), ev.get("event")))
            if ev.get("event") in ("operation.completed", "operation.failed"):
                break
        types = [t for _, t in seen]
        tap.is_((types[0], types[-1]), ("operation.started", "operation.completed"),
                label + ": its events arrive on the stream, started to completed")
        tap.ok(all(a[0] < b[0] for a, b in zip(seen, seen[1:])), label + ": in order")
    finally:
        c.close()
    r = st.request("GET", api(st, "/operations/%s" % op), headers={"Authorization": "Bearer " + sid})
    tap.is_(r.json().get("status") if r.status == 200 else r.status, "completed", label + ": the operation reads back completed")


def run_all(tap, st, mode, label, websocket=True, client_gone_within=None, half_close_within=None):
    """Every scenario against one running stack. mode: "fastcgi" or "cgi";
    client_gone_within: seconds a stream may outlive its client (process in CGI mode,
    parked stream in FastCGI mode); half_close_within: the same for a client that only
    half-closes (lighttpd's tcp-fin-propagate)."""
    sid = check_basics(tap, st, mode, label)
    check_static(tap, st, label)
    images = check_upload(tap, st, sid, label)
    check_longpoll(tap, st, sid, label)
    check_sse(tap, st, sid, label)
    check_cli(tap, st, sid, label)
    check_operation(tap, st, sid, images, label, cron=(mode == "cgi"))
    if client_gone_within is not None:
        check_client_leaves(tap, st, sid, label, client_gone_within, mode)
    if half_close_within is not None:
        check_client_leaves(tap, st, sid, label, half_close_within, mode, half_close=True)
    if websocket:
        check_websocket(tap, st, sid, label)
