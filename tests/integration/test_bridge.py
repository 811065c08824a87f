"""test_bridge.py: the WebSocket bridge through lighttpd with a raw-socket client: delivery in order
exactly once, ping/pong and the Pong deadline, resume and resync, 4004, Origin, PostgreSQL restart,
bridge restart, protocol errors, floods of empty frames, slow consumers and graceful shutdown."""

import json
import os
import re
import select
import signal
import socket
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Tap, Stack, wait_for  # noqa: E402
from wsclient import WsClient, HandshakeError, Closed, frame, OP_TEXT, OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_CLOSE  # noqa: E402,F401

tap = Tap()


def append(st, sid, n, etype="image.uploaded", size=0):
    """Appends n events, each in its own committed transaction (the NOTIFY path users trigger)."""
    pad = "x" * size
    stmts = ["SELECT it_append_event(:'p1', '%s', json_build_object('n', %d, 'pad', '%s')::jsonb);"
             % (etype, i, pad) for i in range(n)]
    out = st.sql("\n".join(stmts), sid)
    return [int(x) for x in out.split()]


def ws(st, sid, last=None, origin=None, port=None, **kw):
    path = "/api/v1/ws/" + sid + ("" if last is None else "?last_event_id=%d" % last)
    return WsClient.connect("127.0.0.1", port or st.port, path, origin=origin, **kw)


def status_first(tap, c, name):
    ev = c.recv_json()
    tap.ok(ev.get("type") == "connection.status" and ev["data"] == {"status": "connected", "transport": "websocket"}
           and "id" not in ev and ev.get("timestamp", "").endswith("Z"),
           name + ": connection.status first, without id")


def ids(evs):
    return [e.get("id") for e in evs]


def expect_close(tap, c, code, name):
    got = c.expect_close()
    tap.is_(got[0], code, name + ": closed with %d" % code)
    return got


# ------------------------------------------------------------------ main stack

with Stack(tap, bridge=True) as st:
    tap.ok(st.bridge is not None and st.bridge.poll() is None, "the bridge is running")
    sid = st.new_session()

    # Delivery: every event, in order, exactly once, to every client of the session.
    a = ws(st, sid)
    b = ws(st, sid, last=0)
    status_first(tap, a, "client a")
    status_first(tap, b, "client b")
    seqs = append(st, sid, 40)
    tap.is_(seqs, list(range(1, 41)), "40 events committed with ids 1..40")
    ea = a.recv_events(40)
    eb = b.recv_events(40)
    tap.is_(ids(ea), list(range(1, 41)), "client a: ids 1..40 in order")
    tap.is_(ids(eb), list(range(1, 41)), "client b: ids 1..40 in order")
    tap.ok(all(e["type"] == "image.uploaded" and e["data"]["n"] == i for i, e in enumerate(ea)),
           "payloads arrive as stored")
    wire = st.sql("SELECT it_event_json(e) FROM events e WHERE session_id = :'p1' AND seq = 7", sid)
    tap.is_(ea[6], json.loads(wire), "the frame is the event's wire JSON (same object as SSE)")
    tap.is_(a.quiet(0.5), [], "client a: nothing more (no duplicates)")
    tap.is_(b.quiet(0.1), [], "client b: nothing more")

    # Text ping and protocol Ping.
    a.send_text("ping")
    tap.is_(a.recv_text(), "pong", "text ping answered by text pong")
    a.send_frame(OP_PING, b"abc")
    op, payload, fin = a.recv_frame()
    tap.ok(op == OP_PONG and payload == b"abc" and fin, "Ping answered by Pong with the same payload")
    a.send_frame(OP_TEXT, "pi", fin=False)
    a.send_frame(OP_CONT, "ng")
    tap.is_(a.recv_text(), "pong", "fragmented text ping answered too")
    a.send_text("pings")
    a.send_text("ping")
    tap.is_(a.recv_text(), "pong", "only exactly 'ping' gets a pong")

    # Resume after a disconnect: exactly the missed events.
    tap.is_(a.close(), (1000, ""), "client closes normally; server echoes 1000")
    append(st, sid, 5)
    eb = b.recv_events(5)
    tap.is_(ids(eb), list(range(41, 46)), "client b kept receiving")
    a = ws(st, sid, last=40)
    status_first(tap, a, "resumed client")
    tap.is_(ids(a.recv_events(5)), list(range(41, 46)), "resume with last_event_id=40 gets exactly 41..45")
    tap.is_(a.quiet(0.3), [], "and nothing else")
    append(st, sid, 1)
    tap.is_(ids(a.recv_events(1)), [46], "then live events continue")
    b.recv_events(1)

    # Cursor ahead of the log: resync, then live from the current last id.
    c = ws(st, sid, last=999)
    status_first(tap, c, "cursor ahead")
    ev = c.recv_json()
    tap.ok(ev.get("type") == "session.resync" and "id" not in ev and ev["data"].get("last_event_id") == 46
           and ev["data"].get("reason") == "cursor-ahead", "cursor ahead: session.resync with last_event_id 46, no id")
    append(st, sid, 1)
    tap.is_(ids(c.recv_events(1)), [47], "cursor ahead: continues with 47")
    c.close()
    a.recv_events(1)
    b.recv_events(1)

    # Cursor older than the log keeps: resync too; one at the edge is served.
    st.sql("DELETE FROM events WHERE session_id = :'p1' AND seq < 20;"
           "UPDATE sessions SET first_kept_seq = 20 WHERE id = :'p1'", sid)
    c = ws(st, sid, last=5)
    status_first(tap, c, "pruned cursor")
    ev = c.recv_json()
    tap.ok(ev.get("type") == "session.resync" and ev["data"].get("last_event_id") == 47
           and ev["data"].get("reason") == "cursor-expired", "cursor older than the log: session.resync to 47")
    tap.is_(c.quiet(0.3), [], "cursor older than the log: no stale events after the resync")
    c.close()
    c = ws(st, sid, last=19)
    status_first(tap, c, "edge cursor")
    got = c.recv_events(28)
    tap.is_(ids(got), list(range(20, 48)), "cursor at first_kept_seq - 1 is served 20..47, no resync")
    c.close()

    # Unknown, malformed, expired and deleted sessions: 4004 after the upgrade.
    c = ws(st, "A" * 32)
    tap.is_(c.expect_close(), (4004, "Invalid session"), "unknown session: 4004 Invalid session")
    c = ws(st, "not*valid")
    tap.is_(c.expect_close()[0], 4004, "malformed session id: 4004")
    gone = st.new_session()
    st.sql("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = :'p1'", gone)
    c = ws(st, gone)
    tap.is_(c.expect_close()[0], 4004, "expired session: 4004")
    doomed = st.new_session()
    c = ws(st, doomed)
    status_first(tap, c, "session to delete")
    r = st.request("DELETE", "/api/v1/sessions/" + doomed)
    tap.is_(r.status, 204, "session deleted through the API")
    tap.is_(c.expect_close(5)[0], 4004, "deleted session closes its sockets with 4004")
    short = st.new_session()
    st.sql("UPDATE sessions SET expires_at = now() + interval '2 seconds' WHERE id = :'p1'", short)
    c = ws(st, short)
    status_first(tap, c, "session about to expire")
    t0 = time.monotonic()
    tap.is_(c.expect_close(8)[0], 4004, "session expiring while connected: 4004")
    tap.ok(time.monotonic() - t0 < 4.5, "closed close to its expiry")

    # Origin: empty allowed_origins means same origin only.
    try:
        ws(st, sid, origin="http://evil.example")
        tap.ok(False, "foreign Origin refused")
    except HandshakeError as e:
        tap.is_(e.status, 403, "foreign Origin refused with 403")
        tap.like(e.body.decode(), "origin-not-allowed", "403 body says why")
    c = ws(st, sid, last=47, origin="http://127.0.0.1:%d" % st.port)
    status_first(tap, c, "same Origin accepted")
    c.close()

    # Handshake errors straight from the bridge.
    for name, kw, status in (("version 8", {"version": "8"}, 426),
                             ("bad key", {"key": "short"}, 400)):
        try:
            ws(st, sid, **kw)
            tap.ok(False, name + " refused")
        except HandshakeError as e:
            tap.is_(e.status, status, "%s refused with %d" % (name, status))
    try:
        WsClient.connect("127.0.0.1", st.port, "/api/v1/ws/%s?last_event_id=abc" % sid)
        tap.ok(False, "bad last_event_id refused")
    except HandshakeError as e:
        tap.is_(e.status, 400, "non-numeric last_event_id: 400")
    s = socket.create_connection(("127.0.0.1", st.bridge_port))
    s.sendall(b"GET /api/v1/ws/x HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    tap.like(s.recv(4096).decode(errors="replace"), r"^HTTP/1.1 400 (.|\n)*Host", "no Host header: 400")
    s.close()
    s = socket.create_connection(("127.0.0.1", st.bridge_port))
    s.sendall(b"GET /api/v1/ws/x HTTP/1.1\r\n" + b"X-Filler: " + b"a" * 9000 + b"\r\n\r\n")
    tap.like(s.recv(4096).decode(errors="replace"), r"^HTTP/1.1 431 ", "request head over 8 KiB: 431")
    s.close()

    # Protocol errors: each gets its close code, and the others keep being served.
    witness = ws(st, sid, last=47)
    status_first(tap, witness, "witness")
    big = b"x" * (64 * 1024 + 1)
    cases = [
        ("unmasked frame", frame(OP_TEXT, "ping", mask=False), 1002),
        ("reserved bit", frame(OP_TEXT, "ping", rsv=4), 1002),
        ("unknown opcode", frame(3, "x"), 1002),
        ("control frame over 125 bytes", frame(OP_PING, b"p" * 126), 1002),
        ("fragmented Ping", frame(OP_PING, b"p", fin=False), 1002),
        ("continuation without a message", frame(OP_CONT, "x"), 1002),
        ("new message inside a fragmented one", frame(OP_TEXT, "a", fin=False) + frame(OP_TEXT, "b"), 1002),
        ("invalid UTF-8", frame(OP_TEXT, b"\xc3\x28"), 1007),
        ("invalid UTF-8 across fragments", frame(OP_TEXT, b"\xe2\x82", fin=False) + frame(OP_CONT, b"("), 1007),
        ("oversize message", frame(OP_TEXT, big), 1009),
        ("oversize by fragments", frame(OP_TEXT, b"y" * 40000, fin=False) + frame(OP_CONT, b"y" * 40000), 1009),
        ("binary message", frame(OP_BINARY, b"\x00\x01"), 1003),
        ("bad close code", frame(OP_CLOSE, struct.pack("!H", 999)), 1002),
        ("message rate", b"".join(frame(OP_TEXT, "hello") for _ in range(101)), 1008),
    ]
    for name, data, code in cases:
        c = ws(st, sid, last=47)
        status_first(tap, c, name)
        c.send_raw(data)
        expect_close(tap, c, code, name)
        c.abort()

    # Endless empty continuation frames: a message that never ends is still counted, frame by
    # frame, against ws_rate (100 per 10 s here), and the connection is closed with 1008.
    c = ws(st, sid, last=47)
    status_first(tap, c, "empty continuation flood")
    one = frame(OP_CONT, b"", fin=False)
    c.send_frame(OP_TEXT, "p", fin=False)
    sent = 0
    try:
        while sent < 200000:
            c.send_raw(one * 5000)
            sent += 5000
            if select.select([c.sock], [], [], 0)[0]:
                break  # the server has answered (its Close): stop sending
    except OSError:
        pass
    try:
        got = c.expect_close(timeout=10)
    except (TimeoutError, OSError):
        got = ("still open", None)
    tap.is_(got[0], 1008, "empty continuation frames: closed with 1008")
    c.abort()

    # Truncated frames and abrupt closes: nothing to answer, nothing must break.
    for name, data in (("truncated header", b"\x81"), ("truncated length", b"\x81\xfe\x01"),
                       ("truncated payload", frame(OP_TEXT, "hello")[:-2]), ("abrupt close", b"")):
        c = ws(st, sid, last=47)
        c.send_raw(data)
        c.abort()
    s = socket.create_connection(("127.0.0.1", st.port))
    s.sendall(b"GET /api/v1/ws/" + sid.encode() + b" HTTP/1.1\r\nHost: x\r\nUpg")
    s.close()
    append(st, sid, 2)
    tap.is_(ids(witness.recv_events(2)), [48, 49], "a client of the same session kept receiving throughout")
    c = ws(st, sid, last=48)
    status_first(tap, c, "new client after the errors")
    tap.is_(ids(c.recv_events(1)), [49], "the daemon still serves new clients")
    c.close()
    witness.close()
    tap.ok(st.bridge.poll() is None, "the bridge is still running")

# ------------------------------------------------------------------ pings, origins list, slow consumers

with Stack(tap, bridge=True, settings={"ws_ping_interval": 1, "ws_pong_timeout": 1, "allowed_origins": "https://app.example",
                                       "stream_buffer": "4K", "max_streams_per_session": 3}) as st:
    sid = st.new_session()
    # max_streams_per_session: the fourth socket on one session is told to come back later.
    few = [ws(st, sid) for _ in range(3)]
    for i, f in enumerate(few):
        status_first(tap, f, "socket %d of 3" % (i + 1))
    extra = ws(st, sid)
    tap.is_(extra.expect_close()[0], 1013, "a fourth socket on the session is closed with 1013")
    for f in few:
        f.close()
    again = wait_for(lambda: ws(st, sid), timeout=5, what="a socket after the others closed")
    status_first(tap, again, "a socket is admitted again once the others closed")
    again.close()
    c = ws(st, sid, origin="https://app.example")
    status_first(tap, c, "listed Origin accepted")
    tap.is_(c.quiet(2.5), [], "idle client gets no text frames")
    tap.ok(c.pings >= 1, "the server pinged the idle client (%d pings)" % c.pings)
    tap.ok(c.quiet(1.5) == [] and c.pings >= 2, "a client answering Pings stays connected")
    own = ws(st, sid, origin="http://127.0.0.1:%d" % st.port)
    status_first(tap, own, "with allowed_origins set, the site's own Origin is still accepted")
    own.close()
    try:
        ws(st, sid, origin="https://evil.example")
        tap.ok(False, "unlisted Origin refused")
    except HandshakeError as e:
        tap.is_(e.status, 403, "with allowed_origins set, an unlisted Origin is 403")
    c.close()

    dead = ws(st, sid)
    status_first(tap, dead, "client that will not answer")
    dead.auto_pong = False
    try:
        got = dead.expect_close(timeout=10)
    except TimeoutError:
        got = (None, "still open")
    tap.is_(got, (1008, "Ping not answered"), "a client that never answers Pings is closed with 1008")
    tap.ok(dead.eof(5), "and its connection is dropped")

    # Only a Pong answers a Ping: a client that keeps sending (text pings, its own Pings) but
    # never answers is closed as well, however busy it is.
    chatty = ws(st, sid)
    status_first(tap, chatty, "client that sends but does not answer Pings")
    chatty.auto_pong = False
    code = None
    deadline = time.monotonic() + 10
    try:
        while code is None and time.monotonic() < deadline:
            chatty.send_text("ping")
            chatty.send_frame(OP_PING, b"me")
            end = time.monotonic() + 0.3
            while time.monotonic() < end:
                try:
                    op, payload, fin = chatty.recv_frame(max(0.01, end - time.monotonic()))
                except TimeoutError:
                    break
                if op == OP_CLOSE:
                    code = struct.unpack("!H", payload[:2])[0]
                    break
    except (EOFError, OSError):
        pass
    tap.is_(code, 1008, "a client that sends but never answers Pings is closed with 1008")
    chatty.abort()
    polite = ws(st, sid)
    status_first(tap, polite, "client that sends and answers Pings")
    answers = []
    for _ in range(10):
        polite.send_text("ping")
        answers.append(polite.recv_text())
        time.sleep(0.3)
    tap.is_(answers, ["pong"] * 10, "a busy client answering Pings stays connected")
    tap.ok(polite.pings >= 2, "it was pinged while busy (%d Pings)" % polite.pings)
    polite.close()

    # A consumer that does not read: it is cut off with 1013 (or dropped), and
    # resuming by id then gives it the rest without gaps or duplicates.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", st.bridge_port))
    s.close()
    slow = None
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", st.bridge_port))
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /api/v1/ws/%s?last_event_id=0 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
                  % (sid, key)).encode())
    time.sleep(0.3)
    # More than the kernel's socket buffers hold (tcp_wmem allows 4 MiB).
    n_events = 1000
    append(st, sid, n_events, size=6000)
    time.sleep(3.0)  # the client reads nothing for three ping intervals
    data = b""
    sock.settimeout(5)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    sock.close()
    head, rest = data.split(b"\r\n\r\n", 1)
    slow = WsClient(None, rest)
    got, close_code = [], None
    try:
        while True:
            op, payload, fin = slow.recv_frame(0.1)
            if op == OP_TEXT:
                got.append(json.loads(payload))
            elif op == OP_CLOSE:
                close_code = struct.unpack("!H", payload[:2])[0]
                break
    except (EOFError, AttributeError, TimeoutError):
        pass
    evs = [e for e in got if "id" in e]
    # It stops answering Pings too: whichever limit comes first closes it.
    tap.ok(close_code in (1013, 1008, None) and 0 < len(evs) < n_events,
           "a consumer that stops reading is cut off (code %r after %d events)" % (close_code, len(evs)))
    tap.is_(ids(evs), list(range(1, len(evs) + 1)), "what it got was in order, without gaps")
    c = ws(st, sid, last=len(evs), origin="https://app.example")
    status_first(tap, c, "slow consumer resumes")
    rest_evs = c.recv_events(n_events - len(evs), timeout=30)
    tap.is_(ids(rest_evs), list(range(len(evs) + 1, n_events + 1)), "resuming by id gives exactly the rest")
    c.close()

# ------------------------------------------------------------------ connections per address

with Stack(tap, bridge=True, settings={"rate_streams": 3}) as st:
    sid = st.new_session()
    for i in range(3):
        c = ws(st, sid)
        status_first(tap, c, "upgrade %d of 3 in a minute" % (i + 1))
        c.close()
    try:
        # A client cannot escape the limit by claiming another address:
        # the bridge trusts only the entry its web server adds.
        ws(st, sid, headers={"X-Forwarded-For": "203.0.113.9"})
        tap.ok(False, "fourth upgrade from one address refused")
    except HandshakeError as e:
        tap.is_(e.status, 429, "fourth upgrade in a minute from one address: 429, even with a forged X-Forwarded-For")
        tap.ok(e.headers.get("retry-after", "").isdigit(), "429 says when to retry")
        tap.like(e.body.decode(), "rate-limited", "429 body is a problem")
    c = ws(st, sid, port=st.bridge_port, headers={"X-Forwarded-For": "198.51.100.7"})
    status_first(tap, c, "another address (as the local web server reports it) has its own budget")
    c.close()

# ------------------------------------------------------------------ one read per session per notification

with Stack(tap, bridge=True) as st:
    sid = st.new_session()
    many = [ws(st, sid) for _ in range(20)]
    for c in many:
        c.recv_json()  # connection.status
    append(st, sid, 5)
    tap.ok(all(ids(c.recv_events(5)) == [1, 2, 3, 4, 5] for c in many), "20 clients got events 1..5")
    st.bridge.send_signal(signal.SIGTERM)
    tap.is_(st.bridge.wait(timeout=10), 0, "bridge stopped")
    with open(os.path.join(st.dir, "bridge.log")) as f:
        log = f.read()
    m = re.search(r"stopped: (\d+) event frames delivered, (\d+) reads of the log", log)
    tap.ok(m is not None, "the bridge logs what it delivered")
    if m:
        tap.is_(int(m.group(1)), 100, "100 frames delivered (5 events x 20 clients)")
        tap.ok(int(m.group(2)) <= 5, "with at most one read of the log per notification, not one per client (%s reads)"
               % m.group(2))

# ------------------------------------------------------------------ restarts and shutdown (own cluster)

with Stack(tap, own_cluster=True, bridge=True) as st:
    sid = st.new_session()
    c = ws(st, sid)
    status_first(tap, c, "before the PostgreSQL restart")
    append(st, sid, 3)
    tap.is_(ids(c.recv_events(3)), [1, 2, 3], "events before the restart")
    st.pg.stop()
    ev = c.recv_json(10)
    tap.ok(ev.get("type") == "connection.status" and ev["data"]["status"] == "degraded" and "id" not in ev,
           "the bridge tells clients when the database goes away")
    st.pg.start()
    # Commit at once: the bridge may not be listening again yet, so these can
    # only arrive through its re-read from the client's cursor.
    append(st, sid, 4)
    got = []
    deadline = time.monotonic() + 20
    statuses = []
    while len(got) < 4 and time.monotonic() < deadline:
        ev = c.recv_json(max(0.1, deadline - time.monotonic()))
        if ev.get("type") == "connection.status":
            statuses.append(ev["data"]["status"])
        else:
            got.append(ev)
    tap.is_(ids(got), [4, 5, 6, 7], "PostgreSQL restart: events 4..7 arrive exactly once, in order")
    append(st, sid, 1)
    tap.is_(ids(c.recv_events(1)), [8], "live delivery resumes after the restart")
    tap.is_(c.quiet(0.5), [], "no duplicates after the restart")

    # The bridge dies: the client reconnects and resumes from its last id.
    st.bridge.kill()
    st.bridge.wait()
    tap.ok(c.eof(5), "client sees the connection end when the bridge dies")
    append(st, sid, 3)
    st.start_bridge()
    c = wait_for(lambda: ws(st, sid, last=8), timeout=10, what="reconnect to the new bridge")
    status_first(tap, c, "after the bridge restart")
    tap.is_(ids(c.recv_events(3)), [9, 10, 11], "bridge killed and restarted: resume loses nothing")
    append(st, sid, 1)
    tap.is_(ids(c.recv_events(1)), [12], "and live events flow again")

    # SIGTERM: every socket is closed with 1001 and the process exits.
    c2 = ws(st, sid, last=12)
    status_first(tap, c2, "second client before SIGTERM")
    st.bridge.send_signal(signal.SIGTERM)
    tap.is_(c.expect_close(5)[0], 1001, "SIGTERM: client closed with 1001")
    tap.is_(c2.expect_close(5)[0], 1001, "SIGTERM: every client closed with 1001")
    try:
        rc = st.bridge.wait(timeout=10)
    except Exception:
        rc = None
    tap.is_(rc, 0, "the bridge exits 0 after a graceful shutdown")

tap.done()
