"""h2client.py: a small HTTP/2 client over one TLS connection (hyper-h2, Debian's python3-h2), for
tests that must know every request shares that one connection.

    c = H2Client("127.0.0.1", port, cafile, authority="127.0.0.1:%d" % port)
    s = c.request("GET", "/api/v1/events/stream?session_id=" + sid)
    c.wait(lambda: len(s.events()) >= 1, what="connection.status")
    u = c.request("POST", "/api/v1/images", body=b"...", headers=[("content-type", ctype)])
    c.wait(lambda: u.ended, what="the upload's answer")
    c.close()

Everything runs in the caller's thread: wait() reads the socket, feeds hyper-h2, sends request
bodies as the flow-control windows allow, and returns once the predicate holds (or raises
TimeoutError). Received data is acknowledged at once, so a stream nobody reads never stalls the
others.
"""

import json
import select
import socket
import ssl
import sys
import time

try:
    import h2.config
    import h2.connection
    import h2.events
except ImportError:
    # The tests may run under another Python than Debian's, whose python3-h2 is pure Python.
    sys.path.append("/usr/lib/python3/dist-packages")
    try:
        import h2.config
        import h2.connection
        import h2.events
    except ImportError:
        h2 = None
    finally:
        sys.path.remove("/usr/lib/python3/dist-packages")


def available():
    return h2 is not None


class Stream:
    """One request and its answer as far as it has arrived."""

    def __init__(self, sid, method, path):
        self.id = sid
        self.method = method
        self.path = path
        self.status = None
        self.headers = {}
        self.data = bytearray()
        self.ended = False
        self.reset = None

    def body(self):
        return bytes(self.data)

    def json(self):
        return json.loads(self.body().decode("utf-8"))

    def events(self):
        """The complete Server-Sent Events received so far, as {"id", "event", "data"} dicts (data
        parsed as JSON); comments are skipped."""
        out = []
        text = self.body().decode("utf-8", "replace").replace("\r\n", "\n")
        for block in text.split("\n\n")[:-1]:
            ev, data = {}, []
            for line in block.split("\n"):
                if not line or line.startswith(":"):
                    continue
                k, _, v = line.partition(":")
                v = v[1:] if v.startswith(" ") else v
                if k == "data":
                    data.append(v)
                elif k in ("id", "event"):
                    ev[k] = v
            if data or ev:
                ev["data"] = json.loads("\n".join(data)) if data else None
                out.append(ev)
        return out


class H2Client:
    def __init__(self, host, port, cafile, authority=None, timeout=15):
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.set_alpn_protocols(["h2"])
        raw = socket.create_connection((host, port), timeout=timeout)
        self.sock = ctx.wrap_socket(raw, server_hostname=host)
        self.alpn = self.sock.selected_alpn_protocol()
        if self.alpn != "h2":
            self.sock.close()
            raise RuntimeError("the server did not choose h2 by ALPN (it chose %r)" % self.alpn)
        self.sock.setblocking(False)
        self.authority = authority or "%s:%d" % (host, port)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                         header_encoding="utf-8"))
        self.conn.initiate_connection()
        self.streams = {}
        self.pending = {}  # stream id -> body bytes not sent yet
        self.closed = False
        self.settings_seen = False
        self.max_open = 0  # the most streams open at once
        self._flush()

    # -- requests

    def request(self, method, path, headers=(), body=None):
        """Starts a request; returns its Stream. body (bytes) is sent as the windows allow; it gets
        a content-length unless headers carry one or say ("content-length", None) to omit it."""
        sid = self.conn.get_next_available_stream_id()
        hdrs = [(":method", method), (":scheme", "https"), (":authority", self.authority), (":path", path)]
        names = {k.lower() for k, _ in headers}
        hdrs += [(k.lower(), v) for k, v in headers if v is not None]
        if body is not None and "content-length" not in names:
            hdrs.append(("content-length", str(len(body))))
        self.conn.send_headers(sid, hdrs, end_stream=body is None)
        s = self.streams[sid] = Stream(sid, method, path)
        if body is not None:
            self.pending[sid] = memoryview(bytes(body))
        self._send_bodies()
        self._flush()
        self.max_open = max(self.max_open, self.open_streams())
        return s

    def open_streams(self):
        return sum(1 for s in self.streams.values() if not s.ended and s.reset is None)

    def cancel(self, stream):
        if not stream.ended and stream.reset is None:
            self.conn.reset_stream(stream.id)
            stream.reset = "cancelled"
            self._flush()

    # -- the loop

    def wait(self, pred, timeout=15.0, what="condition"):
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("HTTP/2: timed out waiting for " + what)
            if self.closed:
                raise EOFError("HTTP/2: the connection ended while waiting for " + what)
            self._pump(min(left, 0.5))
        return True

    def _pump(self, timeout):
        if not self.sock.pending():
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        if not data:
            self.closed = True
            return
        for ev in self.conn.receive_data(data):
            self._event(ev)
        self._send_bodies()
        self._flush()

    def _event(self, ev):
        s = self.streams.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived) and s:
            hd = dict(ev.headers)
            s.status = int(hd.get(":status", "0"))
            s.headers = hd
        elif isinstance(ev, h2.events.DataReceived):
            if s:
                s.data += ev.data
            self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.StreamEnded) and s:
            s.ended = True
        elif isinstance(ev, h2.events.StreamReset) and s:
            s.reset = ev.error_code
            self.pending.pop(ev.stream_id, None)
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            self.settings_seen = True
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.closed = True

    def _send_bodies(self):
        for sid in list(self.pending):
            rest = self.pending[sid]
            while len(rest):
                n = min(self.conn.local_flow_control_window(sid), self.conn.max_outbound_frame_size, len(rest))
                if n <= 0:
                    break
                self.conn.send_data(sid, rest[:n].tobytes())
                rest = rest[n:]
            if len(rest):
                self.pending[sid] = rest
            else:
                del self.pending[sid]
                self.conn.end_stream(sid)

    def _flush(self):
        out = self.conn.data_to_send()
        while out:
            try:
                n = self.sock.send(out)
                out = out[n:]
            except (ssl.SSLWantWriteError, BlockingIOError):
                select.select([], [self.sock], [], 1.0)

    @property
    def peer_max_concurrent_streams(self):
        return self.conn.remote_settings.max_concurrent_streams

    def close(self):
        try:
            self.conn.close_connection()
            self._flush()
        except Exception:
            pass
        self.sock.close()
