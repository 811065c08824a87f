"""sseclient.py: a text/event-stream client for the tests, parsing exactly as the WHATWG
HTML standard says (server-sent events, "interpreting an event stream"), plus a many-stream
reader on one thread for load tests."""

import json
import select
import selectors
import socket
import time


class SSEParser:
    """Incremental parser: feed bytes, collect dispatched events.

    Each event is a dict {type, data, id (last event id at dispatch), json (parsed data or None)}.
    Lines end in CRLF, LF or CR; comments start with ':'; unknown fields are ignored.
    """

    def __init__(self):
        self.buf = b""
        self.data = []
        self.event_type = ""
        self.last_id_buffer = ""
        self.last_event_id = ""
        self.retry = None
        self.events = []
        self.comments = 0

    def feed(self, chunk):
        self.buf += chunk
        while True:
            i_lf, i_cr = self.buf.find(b"\n"), self.buf.find(b"\r")
            cands = [i for i in (i_lf, i_cr) if i >= 0]
            if not cands:
                return
            i = min(cands)
            if self.buf[i] == 13:
                if i + 1 == len(self.buf):
                    return  # a CR at the end: the next byte says whether it is CRLF
                step = 2 if self.buf[i + 1] == 10 else 1
            else:
                step = 1
            line = self.buf[:i]
            self.buf = self.buf[i + step:]
            self._line(line.decode("utf-8", errors="replace"))

    def _line(self, line):
        if line == "":
            self._dispatch()
            return
        if line.startswith(":"):
            self.comments += 1
            return
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        if field == "event":
            self.event_type = value
        elif field == "data":
            self.data.append(value)
        elif field == "id":
            if "\0" not in value:
                self.last_id_buffer = value
        elif field == "retry":
            if value.isdigit():
                self.retry = int(value)

    def _dispatch(self):
        self.last_event_id = self.last_id_buffer
        if not self.data:
            self.event_type = ""
            return
        data = "\n".join(self.data)
        ev = {"type": self.event_type or "message", "data": data, "id": self.last_event_id}
        try:
            ev["json"] = json.loads(data)
        except ValueError:
            ev["json"] = None
        self.events.append(ev)
        self.data = []
        self.event_type = ""


class Dechunker:
    """Incremental HTTP/1.1 chunked transfer decoding: size line, data, CRLF, repeat."""

    def __init__(self):
        self.buf = b""
        self.state = "size"
        self.left = 0
        self.done = False

    def feed(self, data):
        self.buf += data
        out = []
        while not self.done:
            if self.state == "size":
                i = self.buf.find(b"\r\n")
                if i < 0:
                    break
                self.left = int(self.buf[:i].split(b";")[0], 16)
                self.buf = self.buf[i + 2:]
                if self.left == 0:
                    self.done = True
                    break
                self.state = "data"
            elif self.state == "data":
                if not self.buf:
                    break
                take = self.buf[:self.left]
                out.append(take)
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                if self.left == 0:
                    self.state = "crlf"
            else:
                if len(self.buf) < 2:
                    break
                self.buf = self.buf[2:]
                self.state = "size"
        return b"".join(out)


class SSEStream:
    """One EventSource-like HTTP/1.1 connection (raw socket, chunked or not)."""

    def __init__(self, port, session, last_event_id=None, query_id=None, timeout=30, path=None, rcvbuf=None):
        if rcvbuf is None:
            self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        else:
            # A small receive window, set before connecting: a client that stops
            # reading stalls the server after a few KiB instead of megabytes.
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.settimeout(timeout)
            self.sock.connect(("127.0.0.1", port))
        if path is None:
            path = "/api/v1/events/stream?session_id=" + session
            if query_id is not None:
                path += "&last_event_id=%s" % query_id
        req = "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nAccept: text/event-stream\r\n" % (path, port)
        if last_event_id is not None:
            req += "Last-Event-ID: %s\r\n" % last_event_id
        self.sock.sendall((req + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            head += chunk
        head, _, rest = head.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ")[1]) if lines and lines[0] else 0
        self.headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
        hd = {k.lower(): v for k, v in self.headers}
        self.content_type = hd.get("content-type")
        self.chunked = "chunked" in hd.get("transfer-encoding", "").lower()
        self.length = int(hd["content-length"]) if "content-length" in hd else None
        self.dechunk = Dechunker() if self.chunked else None
        self.parser = SSEParser()
        self.body = b""
        self.closed = False
        self._take(rest)

    def _take(self, data):
        if self.dechunk:
            data = self.dechunk.feed(data)
            if self.dechunk.done:
                self.closed = True
        self.body += data
        self.parser.feed(data)
        if self.length is not None and len(self.body) >= self.length:
            self.closed = True

    def stored(self):
        """Events with an id (the stored ones), as parsed JSON."""
        return [e["json"] for e in self.parser.events if e["json"] and "id" in e["json"]]

    def ids(self):
        return [e["id"] for e in self.stored()]

    def read_until(self, pred, timeout=10):
        """Reads until pred(self) is true, the stream ends, or timeout passes. Returns pred's value."""
        deadline = time.monotonic() + timeout
        while not pred(self) and not self.closed:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.sock], [], [], min(left, 0.5))
            if not r:
                continue
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionError, socket.timeout):
                chunk = b""
            if not chunk:
                self.closed = True
                break
            self._take(chunk)
        return pred(self)

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class ManySSE:
    """Many raw HTTP/1.0 SSE connections read by one thread with a selector."""

    def __init__(self, port, sessions):
        self.sel = selectors.DefaultSelector()
        self.streams = []
        for i, s in enumerate(sessions):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(("GET /api/v1/events/stream?session_id=%s HTTP/1.0\r\nHost: 127.0.0.1\r\n"
                          "Accept: text/event-stream\r\n\r\n" % s).encode())
            sock.setblocking(False)
            st = {"sock": sock, "head": b"", "parser": SSEParser(), "session": s, "closed": False, "status": None}
            self.streams.append(st)
            self.sel.register(sock, selectors.EVENT_READ, st)

    def pump(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for key, _ in self.sel.select(timeout=0.2):
                st = key.data
                try:
                    chunk = st["sock"].recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionError:
                    chunk = b""
                if not chunk:
                    st["closed"] = True
                    self.sel.unregister(st["sock"])
                    continue
                if st["status"] is None:
                    st["head"] += chunk
                    if b"\r\n\r\n" not in st["head"]:
                        continue
                    head, body = st["head"].split(b"\r\n\r\n", 1)
                    st["status"] = int(head.split(b" ")[1])
                    chunk = body
                st["parser"].feed(chunk)

    def pump_until(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not pred():
            self.pump(0.2)
        return pred()

    @staticmethod
    def ids(st):
        return [e["json"]["id"] for e in st["parser"].events if e["json"] and "id" in e["json"]]

    def close(self):
        for st in self.streams:
            try:
                st["sock"].close()
            except OSError:
                pass
        self.sel.close()
