"""cli_helpers.py: what test_cli.py needs besides the stack: valid test images, a scripted HTTP
server that answers uploads with canned statuses, and a line reader for long-running clients."""

import email.parser
import email.policy
import http.server
import json
import os
import queue
import random
import struct
import subprocess
import threading
import time
import zlib

from harness import BUILDDIR


def png_bytes(width, height, seed=0, noisy=False):
    """A valid RGB PNG; noisy pixels do not compress, so the file is about 3*w*h bytes."""
    rnd = random.Random(seed)
    rows = bytearray()
    for y in range(height):
        rows.append(0)
        if noisy:
            rows += rnd.randbytes(width * 3)
        else:
            rows += bytes(v for x in range(width) for v in ((x + seed) % 256, (y * 3) % 256, (x ^ y) % 256))

    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(bytes(rows), 1)) + chunk(b"IEND", b""))


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return path


def run(prog, *args, env=None, timeout=120, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE):
    """Runs one of the built clients to completion; returns the CompletedProcess (text)."""
    e = dict(os.environ)
    # The user's own settings must not leak into the test.
    for k in ("IMAGETOOLS_SERVER", "IMAGETOOLS_SESSION", "IMAGETOOLS_SOURCE"):
        e.pop(k, None)
    e["XDG_CONFIG_HOME"] = "/nonexistent-config"
    e.update(env or {})
    return subprocess.run([os.path.join(BUILDDIR, prog)] + list(args), env=e, stdin=stdin,
                          stdout=subprocess.PIPE, stderr=stderr, timeout=timeout, text=True)


class Scripted(http.server.ThreadingHTTPServer):
    """A loopback HTTP server that answers POST /api/v1/images with the next canned answer
    (status, headers, body) and records every request: time, headers, parsed multipart parts.
    Presence announcements (POST and DELETE /api/v1/presence) are recorded apart, in presence,
    and answered presence_status: by default 404, as a server from before presence does."""

    daemon_threads = True

    def __init__(self, answers, files=None, presence_status=404):
        super().__init__(("127.0.0.1", 0), _ScriptedHandler)
        self.answers = list(answers)
        self.files = dict(files or {})  # path -> (content type, bytes) served on GET
        self.requests = []
        self.presence = []
        self.presence_status = presence_status
        self.lock = threading.Lock()
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()
        return False


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        ctype, data = self.server.files.get(self.path.split("?")[0], ("text/plain", None))
        self.send_response(200 if data is not None else 404)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data or b"")))
        self.end_headers()
        self.wfile.write(data or b"")

    def _presence(self):
        srv = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with srv.lock:
            srv.presence.append({"t": time.monotonic(), "method": self.command, "path": self.path,
                                 "headers": dict(self.headers), "body": json.loads(body) if body else None})
        out = b"" if srv.presence_status == 204 else json.dumps(
            {"type": "urn:imagetools:problem:not-found", "title": "Not Found", "status": srv.presence_status,
             "detail": "No such route."}).encode()
        self.send_response(srv.presence_status)
        if out:
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_DELETE(self):
        self._presence()

    def do_POST(self):
        srv = self.server
        if self.path.split("?")[0].endswith("/api/v1/presence"):
            return self._presence()
        length = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Expect", "").lower() == "100-continue":
            self.send_response_only(100)
            self.end_headers()
        body = self.rfile.read(length)
        msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + self.headers.get("Content-Type", "").encode() + b"\r\n\r\n" + body)
        parts = {}
        for p in msg.iter_parts() if msg.is_multipart() else []:
            name = p.get_param("name", header="content-disposition")
            parts[name] = (p.get_filename(), p.get_payload(decode=True))
        with srv.lock:
            srv.requests.append({"t": time.monotonic(), "path": self.path, "headers": dict(self.headers),
                                 "parts": parts})
            status, headers, out = srv.answers.pop(0) if srv.answers else (500, {}, b"")
        if isinstance(out, (dict, list)):
            out = json.dumps(out).encode()
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


def problem(status, slug, detail):
    return (status, {"Content-Type": "application/problem+json"},
            {"type": "urn:imagetools:problem:" + slug, "title": "Error", "status": status, "detail": detail})


class Follower:
    """Runs imagetools-watch in the background and collects its stdout lines."""

    def __init__(self, *args, env=None):
        e = dict(os.environ)
        for k in ("IMAGETOOLS_SERVER", "IMAGETOOLS_SESSION", "IMAGETOOLS_SOURCE"):
            e.pop(k, None)
        e["XDG_CONFIG_HOME"] = "/nonexistent-config"
        e.update(env or {})
        self.proc = subprocess.Popen([os.path.join(BUILDDIR, "imagetools-watch")] + list(args), env=e,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        self.lines = queue.Queue()
        self.stderr = []
        self.pumps = [threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines.put), daemon=True),
                      threading.Thread(target=self._pump, args=(self.proc.stderr, self.stderr.append), daemon=True)]
        for t in self.pumps:
            t.start()

    @staticmethod
    def _pump(stream, put):
        for line in stream:
            put(line)

    def events(self, n, timeout=20):
        """Returns the next n printed lines parsed as JSON (fewer on timeout)."""
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                out.append(json.loads(self.lines.get(timeout=left)))
            except queue.Empty:
                break
        return out

    def stored(self, n, timeout=20):
        """The next n printed events that carry an id (skipping connection.status)."""
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n and time.monotonic() < deadline:
            for ev in self.events(1, timeout=max(0.1, deadline - time.monotonic())):
                if "id" in ev:
                    out.append(ev)
        return out

    def rest(self, wait=1.0):
        """Every line printed within wait seconds from now."""
        time.sleep(wait)
        out = []
        while True:
            try:
                out.append(json.loads(self.lines.get_nowait()))
            except queue.Empty:
                return out

    def _drain(self):
        # The process has exited: its last lines may still be on their way
        # through the pipes, so wait for the readers to reach end of file.
        for t in self.pumps:
            t.join(timeout=5)

    def wait(self, timeout=20):
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._drain()
        return code

    def stop(self, sig=15):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain()
        return self.proc.returncode
