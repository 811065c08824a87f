"""test_slow_clients.py: slow uploaders cannot starve everyone else. Uploads that trickle a byte
every two seconds are cut at the body deadline (408), one address gets at most
max_uploads_per_address uploads at once (429), a full upload pool answers 503 at once, and all
the while another client creates sessions, uploads (the bytes stored equal the bytes sent) and
receives its events by SSE and long-poll. Everything goes through the shipped lighttpd config."""

import json
import socket
import threading
import time

from harness import Stack, Tap, wait_for
from sseclient import SSEStream
from uploads_util import multipart, png_bytes

# Short settings so that the test ends in well under a minute: the body of an upload may take
# 3 s, plus one second per 500 bytes received.
SETTINGS = {"threads": 4, "upload_threads": 6, "upload_queue": 4, "max_uploads_per_address": 4,
            "upload_body_timeout": 3, "upload_min_rate": 500, "upload_body_max_time": 60}
GRACE, RATE = 3, 500
# Generous bounds for every normal operation and for a slow uploader to be cut (never timings).
BOUND = 20
BOUNDARY = "----itSlowBoundary"

tap = Tap()
PNG = png_bytes(64, 48)


class SlowUploader:
    """A raw-socket upload from address src that sends its headers and the start of a multipart
    body, then one byte of a PNG every TRICKLE seconds, and records whatever comes back."""

    TRICKLE = 2.0

    def __init__(self, port, session, src):
        self.src = src
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((src, 0))
        self.sock.settimeout(BOUND)
        self.sock.connect(("127.0.0.1", port))
        start = ("--%s\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n%s\r\n"
                 "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"slow.png\"\r\n"
                 "Content-Type: image/png\r\n\r\n" % (BOUNDARY, session, BOUNDARY)).encode()
        head = ("POST /api/v1/images HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                "Content-Type: multipart/form-data; boundary=%s\r\nContent-Length: %d\r\n\r\n"
                % (port, BOUNDARY, len(start) + len(PNG) + 100)).encode()
        self.sock.sendall(head + start)
        self.sock.setblocking(False)
        self.opened = time.monotonic()
        self.next_byte = self.opened + self.TRICKLE
        self.sent = 0
        self.resp = b""
        self.ended = None  # monotonic time the server answered or closed

    def pump(self, now):
        """Reads what arrived and sends the next byte when due. Returns True while open."""
        if self.ended is not None:
            return False
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.finish(now)
                    return False
                self.resp += chunk
        except BlockingIOError:
            pass
        except OSError:
            self.finish(now)
            return False
        if self.complete():
            self.finish(now)
            return False
        if now >= self.next_byte and self.sent < len(PNG):
            try:
                self.sock.send(PNG[self.sent:self.sent + 1])
                self.sent += 1
            except BlockingIOError:
                pass
            except OSError:
                self.finish(now)
                return False
            self.next_byte = now + self.TRICKLE
        return True

    def complete(self):
        head, sep, body = self.resp.partition(b"\r\n\r\n")
        if not sep:
            return False
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                return len(body) >= int(line.split(b":")[1])
        return False

    def finish(self, now):
        self.ended = now
        self.sock.close()

    def status(self):
        if self.resp.startswith(b"HTTP/"):
            return int(self.resp.split(b" ", 2)[1])
        return None

    def header(self, name):
        head = self.resp.partition(b"\r\n\r\n")[0].decode("latin-1")
        for line in head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def problem(self):
        try:
            return json.loads(self.resp.partition(b"\r\n\r\n")[2].decode())
        except ValueError:
            return {}


def pump_all(slows, seconds, until=None):
    """Drives the slow uploaders for up to seconds (or until until() is true)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        now = time.monotonic()
        for s in slows:
            s.pump(now)
        if until is not None and until():
            return True
        time.sleep(0.1)
    return until() if until is not None else True


def normal_upload(st, sid, data, name):
    """Uploads data at full speed. Returns (status, Retry-After header or None, body)."""
    ctype, body = multipart([("session_id", sid)], [("file", 'filename="%s"' % name, data)], BOUNDARY)
    r = st.request("POST", "/api/v1/images", body=body, headers={"Content-Type": ctype}, timeout=BOUND)
    return r.status, r.header("Retry-After"), r.body


class NormalClient(threading.Thread):
    """What a user does meanwhile: sessions, an SSE stream, uploads, long-polls. Every operation
    must succeed, each within BOUND seconds (socket timeouts)."""

    def __init__(self, st, rounds):
        super().__init__(daemon=True)
        self.st = st
        self.rounds = rounds
        self.results = []  # (what, ok, detail)
        self.stored = []  # image ids stored

    def check(self, what, cond, detail=""):
        self.results.append((what, bool(cond), detail))
        return cond

    def run(self):
        st = self.st
        for i in range(self.rounds):
            try:
                self.one_round(st, i)
            except Exception as e:  # a timeout is a failed operation, reported by the main thread
                self.check("round %d finished" % i, False, repr(e))

    def one_round(self, st, i):
        r = st.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0"}, timeout=BOUND)
        if not self.check("create session", r.status == 201, r):
            return
        sid = r.json()["session_id"]
        sse = SSEStream(st.port, sid, timeout=BOUND)
        try:
            self.check("SSE stream opens", sse.status == 200, sse.status)
            data = png_bytes(40 + i, 30)
            status, _, body = normal_upload(st, sid, data, "n%d.png" % i)
            if not self.check("upload", status == 201, (status, body[:200])):
                return
            img = json.loads(body)["images"][0]
            self.stored.append(img["id"])
            got = st.request("GET", img["file_url"], timeout=BOUND)
            self.check("download equals the bytes sent", got.status == 200 and got.body == data, got.status)
            seen = sse.read_until(lambda s: any(e["type"] == "image.uploaded" for e in s.parser.events),
                                  timeout=BOUND)
            self.check("SSE delivers image.uploaded", seen)
            lp = st.request("GET", "/api/v1/events?session_id=%s&cursor=0&timeout=5" % sid, timeout=BOUND)
            types = [e.get("type") for e in lp.json().get("events", [])] if lp.status == 200 else []
            self.check("long-poll delivers image.uploaded", "image.uploaded" in types, (lp.status, types))
        finally:
            sse.close()


def report(client):
    failed = [r for r in client.results if not r[1]]
    for what, _, detail in failed[:10]:
        tap.diag("%s failed: %r" % (what, detail))
    return failed


def upload_errors(st):
    r = st.request("GET", "/api/v1/metrics", timeout=BOUND)
    out = {}
    for line in r.body.decode().splitlines():
        if line.startswith("imagetools_upload_errors_total{"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


with Stack(tap, settings=SETTINGS) as st:
    owner = st.new_session()

    # ---- 50 slow uploaders from one address, while a normal client works from another
    slows = []
    for _ in range(50):
        slows.append(SlowUploader(st.port, owner, "127.0.0.2"))
        pump_all(slows, 0.02)
    client = NormalClient(st, rounds=4)
    client.start()
    pump_all(slows, 120, until=lambda: not client.is_alive())
    client.join(1)
    failed = report(client)
    tap.ok(not client.is_alive() and client.results and not failed,
           "a normal client's %d operations all succeed while 50 slow uploads come from one address"
           % len(client.results))
    tap.is_(len(client.stored), 4, "every upload of the normal client was stored")

    # The slow ones: those over the per-address cap are refused at once, the others are cut.
    refused = [s for s in slows if s.status() == 429]
    tap.ok(len(refused) >= 40, "uploads over max_uploads_per_address are refused with 429 (%d of 50)"
           % len(refused))
    if refused:
        s = refused[0]
        tap.ok(s.header("Retry-After") and s.header("Retry-After").isdigit(), "429 carries Retry-After")
        tap.is_((s.header("Content-Type") or "").split(";")[0], "application/problem+json", "429 is problem+json")
        tap.is_(s.problem().get("type"), "urn:imagetools:problem:too-many-uploads", "429 problem type")
    admitted = [s for s in slows if s.status() != 429]
    tap.ok(pump_all(admitted, GRACE + BOUND, until=lambda: all(s.ended is not None for s in admitted)),
           "every admitted slow upload is cut within the bound")
    tap.ok(all(s.status() in (408, None) for s in admitted),
           "they end with 408 or a closed connection: %r" % sorted(set(s.status() for s in admitted), key=str))
    cut = [s for s in admitted if s.status() == 408]
    tap.ok(cut, "the client really sees 408 through lighttpd (%d of %d)" % (len(cut), len(admitted)))
    if cut:
        p = cut[0].problem()
        tap.is_(p.get("type"), "urn:imagetools:problem:too-slow", "408 problem type")
        tap.like(p.get("detail"), r"500 bytes per second", "408 detail names the rate")
        tap.ok(min(s.ended - s.opened for s in cut) >= GRACE - 0.5, "nobody is cut before the grace period")
    tap.is_(st.sql("SELECT count(*) FROM images"), str(len(client.stored)), "slow uploads stored nothing")

    # ---- a full upload pool: 10 slow uploads from 10 addresses take 6 threads and 4 queue slots
    slows = []
    for i in range(10):
        slows.append(SlowUploader(st.port, owner, "127.0.0.%d" % (10 + i)))
        pump_all(slows, 0.05)
    pump_all(slows, 1.0)
    tap.ok(all(s.ended is None for s in slows), "ten slow uploads from ten addresses are all taken")
    sid = st.new_session()
    status, retry, body = normal_upload(st, sid, png_bytes(8, 8), "busy.png")
    tap.is_(status, 503, "an upload beyond upload_threads + upload_queue is refused at once with 503")
    tap.ok(retry and retry.isdigit(), "503 carries Retry-After")
    try:
        p = json.loads(body)
    except ValueError:
        p = {}
    tap.is_(p.get("type"), "urn:imagetools:problem:server-busy", "503 problem type")
    # Short requests do not wait for the upload threads.
    r = st.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0"}, timeout=BOUND)
    tap.is_(r.status, 201, "sessions are created while every upload slot is taken")
    r = st.request("GET", "/api/v1/events?session_id=%s&cursor=0&timeout=1" % sid, timeout=BOUND)
    tap.is_(r.status, 200, "a long-poll is answered while every upload slot is taken")
    sse = SSEStream(st.port, sid, timeout=BOUND)
    tap.is_(sse.status, 200, "an SSE stream opens while every upload slot is taken")
    sse.close()
    tap.ok(pump_all(slows, 2 * (GRACE + BOUND), until=lambda: all(s.ended is not None for s in slows)),
           "the ten slow uploads are cut, the queued ones after the running ones")
    tap.ok(all(s.status() in (408, None) for s in slows),
           "with 408 or a closed connection: %r" % sorted(set(s.status() for s in slows), key=str))
    data = png_bytes(33, 22)

    def stored_after_busy():
        status, _, body = normal_upload(st, sid, data, "after.png")
        return json.loads(body)["images"][0] if status == 201 else None
    img = wait_for(stored_after_busy, timeout=BOUND, interval=1, what="an upload once the pool is free")
    got = st.request("GET", img["file_url"], timeout=BOUND)
    tap.ok(got.status == 200 and got.body == data, "then an upload succeeds and downloads byte for byte")

    # ---- the refusals are counted
    def counted():
        m = upload_errors(st)
        return m if all(m.get('imagetools_upload_errors_total{status="%d"}' % c, 0) > 0
                        for c in (408, 429, 503)) else None
    try:
        m = wait_for(counted, timeout=BOUND, interval=1, what="upload refusals in /metrics")
    except TimeoutError:
        m = upload_errors(st)
        tap.diag(repr(m))
    tap.ok(m and all(m.get('imagetools_upload_errors_total{status="%d"}' % c, 0) > 0 for c in (408, 429, 503)),
           "imagetools_upload_errors_total counts 408, 429 and 503")

tap.done()
