"""wsclient.py: a small RFC 6455 client on a raw socket (standard library only) for the bridge tests.

It speaks the protocol correctly by default and can also break it on purpose (unmasked
frames, reserved bits, raw bytes) so tests can check how the server reacts.

    ws = WsClient.connect("127.0.0.1", port, "/api/v1/ws/" + sid + "?last_event_id=3")
    ev = ws.recv_json()            # next text frame as JSON (Pings are answered)
    ws.send_text("ping"); ws.recv_text() == "pong"
    code, reason = ws.close()
"""

import base64
import hashlib
import json
import os
import socket
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeError(Exception):
    def __init__(self, status, headers, body):
        Exception.__init__(self, "handshake refused with %d" % status)
        self.status = status
        self.headers = headers
        self.body = body


class Closed(Exception):
    """The server closed the connection; code and reason of its Close frame (None when there was none)."""

    def __init__(self, code, reason):
        Exception.__init__(self, "closed: %r %r" % (code, reason))
        self.code = code
        self.reason = reason


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0, length=None, key=None):
    """Encodes one client frame; length overrides the length field (to lie about it)."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n <= 0xFFFF:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = key or os.urandom(4)
    masked = bytes(b ^ key[i & 3] for i, b in enumerate(payload))
    return head + key + masked


class WsClient:
    def __init__(self, sock, leftover=b""):
        self.sock = sock
        self.buf = bytearray(leftover)
        self.pings = 0
        self.auto_pong = True
        self.headers = {}  # the 101 answer's headers, lower-case names

    @classmethod
    def connect(cls, host, port, path, origin=None, headers=None, timeout=10.0, version="13", key=None,
                host_header=None):
        """host_header replaces the Host header (host:port by default)."""
        sock = socket.create_connection((host, port), timeout=timeout)
        key = key or base64.b64encode(os.urandom(16)).decode()
        lines = ["GET %s HTTP/1.1" % path, "Host: " + (host_header or "%s:%d" % (host, port)), "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + key, "Sec-WebSocket-Version: " + version]
        if origin:
            lines.append("Origin: " + origin)
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data:
            if time.monotonic() > deadline:
                raise TimeoutError("no handshake answer")
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("connection closed during the handshake: %r" % data)
            data += chunk
        head, rest = data.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, v = line.split(":", 1)
            hdrs[k.strip().lower()] = v.strip()
        if status != 101:
            # Read the (short) body for the caller's assertions.
            n = int(hdrs.get("content-length", "0"))
            while len(rest) < n:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                rest += chunk
            sock.close()
            raise HandshakeError(status, hdrs, rest)
        want = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        if hdrs.get("sec-websocket-accept") != want:
            sock.close()
            raise ConnectionError("bad Sec-WebSocket-Accept %r" % hdrs.get("sec-websocket-accept"))
        ws = cls(sock, rest)
        ws.headers = hdrs
        return ws

    # -- sending

    def send_raw(self, data):
        self.sock.sendall(data)

    def send_frame(self, opcode, payload=b"", **kw):
        self.sock.sendall(frame(opcode, payload, **kw))

    def send_text(self, s):
        self.send_frame(OP_TEXT, s)

    # -- receiving

    def _read(self, n, deadline):
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no frame within the timeout")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv_frame(self, timeout=10.0):
        """Returns (opcode, payload, fin) of the next frame, exactly as sent."""
        deadline = time.monotonic() + timeout
        b0, b1 = self._read(2, deadline)
        if b1 & 0x80:
            raise AssertionError("server frame is masked")
        if b0 & 0x70:
            raise AssertionError("server frame has reserved bits")
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2, deadline))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8, deadline))[0]
        payload = self._read(n, deadline) if n else b""
        return b0 & 0x0F, payload, bool(b0 & 0x80)

    def recv_text(self, timeout=10.0):
        """Returns the next text message; answers Pings; raises Closed on a Close frame."""
        deadline = time.monotonic() + timeout
        while True:
            op, payload, fin = self.recv_frame(max(0.01, deadline - time.monotonic()))
            if op == OP_PING:
                self.pings += 1
                if self.auto_pong:
                    self.send_frame(OP_PONG, payload)
                continue
            if op == OP_PONG:
                continue
            if op == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                raise Closed(code, payload[2:].decode("utf-8", "replace"))
            if op != OP_TEXT or not fin:
                raise AssertionError("unexpected frame opcode %d fin %r" % (op, fin))
            return payload.decode("utf-8")

    def recv_json(self, timeout=10.0):
        return json.loads(self.recv_text(timeout))

    def recv_events(self, n, timeout=10.0, skip_status=True):
        """Returns the next n events that carry an id (connection.status frames skipped when asked)."""
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            ev = self.recv_json(max(0.01, deadline - time.monotonic()))
            if skip_status and ev.get("type") == "connection.status":
                continue
            out.append(ev)
        return out

    def expect_close(self, timeout=10.0):
        """Reads until the server's Close frame; returns (code, reason), or (None, None) on a bare EOF."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.recv_text(max(0.01, deadline - time.monotonic()))
        except Closed as c:
            try:
                self.send_frame(OP_CLOSE, struct.pack("!H", c.code) if c.code else b"")
            except OSError:
                pass
            return c.code, c.reason
        except EOFError:
            return None, None

    def quiet(self, seconds):
        """Returns the text messages that arrive within seconds (normally none)."""
        got = []
        deadline = time.monotonic() + seconds
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return got
            try:
                got.append(self.recv_text(left))
            except TimeoutError:
                return got

    def close(self, code=1000, reason=""):
        """Runs the closing handshake from our side; returns the server's (code, reason)."""
        try:
            self.send_frame(OP_CLOSE, struct.pack("!H", code) + reason.encode())
            return self.expect_close()
        finally:
            self.sock.close()

    def abort(self):
        self.sock.close()

    def eof(self, timeout=5.0):
        """True when the server closes the TCP connection within timeout (after any frames)."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self.recv_frame(max(0.01, deadline - time.monotonic()))
        except EOFError:
            return True
        except TimeoutError:
            return False
