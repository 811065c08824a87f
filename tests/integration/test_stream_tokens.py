"""test_stream_tokens.py: scoped tokens on every event stream, on both servers.

A view token follows the session's events over the bridge's WebSocket (credential in the
subprotocol, in Authorization, or in the first message; no event before it), SSE and long-poll
on imagetools.fcgi and on the bridge: in order, each once. An upload-only token is refused (403
insufficient-scope, WebSocket close 4403), a forged, truncated or expired token too (401
invalid-token, close 4401), with the same answer from both servers; a token in the old path
form /ws/<token> is not a session id (4004). Revoking the device closes its open WebSocket,
both SSE streams and the parked long-polls within a bounded wait, each seeing session.revoked
first, while a session-id stream of the same session goes on; its next request is 401. A token
that expires ends its streams the same way. Refused tokens are counted per address on both
servers."""

import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Stack, Tap, http_get, wait_for  # noqa: E402
from sseclient import SSEStream  # noqa: E402
from wsclient import Closed, HandshakeError, WsClient  # noqa: E402

tap = Tap()


def get(port, path, headers=None, timeout=30):
    return http_get(port, path, headers, timeout)


def append(st, sid, n):
    st.sql("".join("SELECT it_append_event(:'p1', 'image.uploaded', '{\"n\": %d}'::jsonb);\n" % i
                   for i in range(n)), sid)


def mint(st, sid, scope, label, ttl=None):
    body = {"scope": scope, "label": label, "source": "cli"}
    if ttl is not None:
        body["ttl"] = ttl
    r = st.request("POST", "/api/v1/tokens", body=body, headers={"Authorization": "Bearer " + sid})
    if r.status != 201:
        raise RuntimeError("minting a token failed: %r" % r)
    j = r.json()
    return j["token"], j["device_id"]


# A token's streams show in presence (docs/presence.md): their presence.* events are in the log
# too, between the ones this test appends. The assertions are about the others.
def presence(e):
    return e.get("type", "").startswith("presence.")


def ids(events):
    return [e["id"] for e in events if "id" in e and not presence(e)]


def sse_ids(s):
    return ids(s.stored())


def logged(st, sid):
    """The ids of the session's stored events but presence ones, in order."""
    out = st.sql("SELECT seq FROM events WHERE session_id = :'p1' AND type NOT LIKE 'presence.%' ORDER BY seq", sid)
    return [int(x) for x in out.split()]


def ws_events(ws, n, timeout=10):
    """The next n stored events but presence ones (connection.status skipped)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        out += [e for e in ws.recv_events(1, timeout=max(0.01, deadline - time.monotonic())) if not presence(e)]
    return out


def until_close(ws, timeout=10):
    """Reads until the server's Close: (messages before it, code)."""
    got = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            got.append(json.loads(ws.recv_text(max(0.01, deadline - time.monotonic()))))
    except Closed as c:
        return got, c.code
    except (EOFError, TimeoutError):
        return got, None


def ws_connect(st, path="/api/v1/ws", **kw):
    return WsClient.connect("127.0.0.1", st.bridge_port, path, **kw)


def refused_ws(st, name, want, **kw):
    """A WebSocket that is upgraded and then closed with want, with no event before."""
    try:
        ws = ws_connect(st, **kw.pop("conn", {}))
    except HandshakeError as e:
        tap.ok(False, name + ": upgraded (got %d)" % e.status)
        return
    if "send" in kw:
        ws.send_text(kw["send"])
    got, code = until_close(ws)
    tap.ok(code == want and not [m for m in got if "id" in m], name + ": closed %s (%r), no event before" % (want, code))
    ws.abort()


with Stack(tap, bridge=True, settings={"keepalive_interval": 1, "rate_auth_failures": 1000}) as st:
    sid = st.new_session()
    view, view_dev = mint(st, sid, "view", "Viewer")
    upload, _ = mint(st, sid, "upload", "Phone")
    full, _ = mint(st, sid, "full", "Laptop")
    append(st, sid, 3)
    log = logged(st, sid)
    last = len(log)

    # --- WebSocket: the three ways to present a token
    ws = ws_connect(st, headers={"Sec-WebSocket-Protocol": "imagetools.v1, imagetools.bearer." + view})
    tap.is_(ws.headers.get("sec-websocket-protocol"), "imagetools.v1",
            "subprotocol: the answer selects imagetools.v1, never the one that carries the token")
    first = ws.recv_json()
    tap.ok(first.get("type") == "connection.status" and first["data"].get("status") == "connected",
           "subprotocol: connection.status connected first")
    evs = ws_events(ws, last)
    tap.is_(ids(evs), log, "subprotocol: the session's log from the start, in order")
    append(st, sid, 1)
    log = logged(st, sid)
    last = len(log)
    tap.is_(ids(ws_events(ws, 1)), log[-1:], "subprotocol: a live event arrives once")
    tap.is_([m for m in ws.quiet(0.5) if not presence(json.loads(m))], [], "and nothing twice")
    ws.close()

    ws = ws_connect(st, headers={"Authorization": "Bearer " + view})
    tap.is_(ids(ws_events(ws, last)), log, "Authorization: Bearer on the upgrade")
    ws.close()

    ws = WsClient.connect("127.0.0.1", st.port, "/api/v1/ws",
                          headers={"Sec-WebSocket-Protocol": "imagetools.v1, imagetools.bearer." + view})
    tap.ok(ws.headers.get("sec-websocket-protocol") == "imagetools.v1"
           and ids(ws_events(ws, last)) == log,
           "through lighttpd: the shipped config sends /api/v1/ws to the bridge, subprotocol and all")
    ws.close()

    ws = ws_connect(st)
    tap.is_(ws.quiet(1.0), [], "first message: nothing at all is sent before the auth message")
    ws.send_text(json.dumps({"type": "auth", "credential": view, "last_event_id": log[-3],
                             "client_id": "tab-1", "client_label": "Test tab", "client_source": "web"}))
    first = ws.recv_json()
    tap.is_(first.get("type"), "connection.status", "first message: connection.status after the auth message")
    tap.is_(ids(ws_events(ws, 2)), log[-2:], "first message: resumes after its last_event_id")
    ws.close()

    ws = ws_connect(st)
    ws.send_text("ping")
    tap.is_(ws.recv_text(), "pong", "a text ping before the auth message is answered")
    ws.send_text(json.dumps({"type": "auth", "credential": sid}))
    tap.is_(ids(ws_events(ws, last)), log, "first message: a session id works too")
    ws.close()

    ws = ws_connect(st, "/api/v1/ws/" + sid)
    tap.is_(ids(ws_events(ws, last)), log, "/api/v1/ws/{session_id} is unchanged")
    ws.close()

    # --- WebSocket refusals
    forged = "itk." + "A" * 32
    refused_ws(st, "upload token in the subprotocol", 4403,
               conn={"headers": {"Sec-WebSocket-Protocol": "imagetools.v1, imagetools.bearer." + upload}})
    refused_ws(st, "upload token in the first message", 4403,
               send=json.dumps({"type": "auth", "credential": upload}))
    refused_ws(st, "forged token", 4401, conn={"headers": {"Authorization": "Bearer " + forged}})
    refused_ws(st, "truncated token", 4401, conn={"headers": {"Authorization": "Bearer " + view[:-3]}})
    refused_ws(st, "an auth message that is not one", 4401, send='{"type":"hello"}')
    refused_ws(st, "an unknown session id in the first message", 4004,
               send=json.dumps({"type": "auth", "credential": "B" * 43}))
    refused_ws(st, "a token in the old path form /ws/<token>", 4004, conn={"path": "/api/v1/ws/" + view})

    # --- SSE and long-poll on both servers
    for name, port in (("imagetools.fcgi", st.port), ("bridge", st.bridge_port)):
        s = SSEStream(port, None, path="/api/v1/events/stream?session_id=" + view)
        s.read_until(lambda x: len(sse_ids(x)) >= last)
        tap.is_(sse_ids(s), log, name + ": SSE with a view token: the log in order")
        s.close()
        r = get(port, "/api/v1/events?timeout=0&cursor=%d" % log[-3], headers={"Authorization": "Bearer " + view})
        tap.is_(ids(r.json()["events"]) if r.status == 200 else r.status, log[-2:],
                name + ": long-poll with a view token (Bearer)")
        r = get(port, "/api/v1/events?timeout=0&cursor=%d&session_id=%s" % (log[-2], full))
        tap.is_(ids(r.json()["events"]) if r.status == 200 else r.status, log[-1:],
                name + ": long-poll with a full token (query)")

    same_headers = ("content-type", "www-authenticate", "cache-control")
    for path, hdrs, status, slug, name in (
            ("/api/v1/events?timeout=0", {"Authorization": "Bearer " + upload}, 403, "insufficient-scope",
             "long-poll with an upload token"),
            ("/api/v1/events/stream?session_id=" + upload, {}, 403, "insufficient-scope", "SSE with an upload token"),
            ("/api/v1/events?timeout=0", {"Authorization": "Bearer " + forged}, 401, "invalid-token",
             "long-poll with a forged token"),
            ("/api/v1/events/stream", {"Authorization": "Bearer " + view[:-1]}, 401, "invalid-token",
             "SSE with a truncated token"),
            ("/api/v1/events?timeout=0", {"Authorization": "Bearer " + view + "xyz"}, 401, "invalid-token",
             "long-poll with a token with a tail"),
            ("/api/v1/events?timeout=0&client_id=no%20spaces&session_id=" + view, {}, 400, "invalid-client-identity",
             "a malformed client_id")):
        f = get(st.port, path, hdrs)
        b = get(st.bridge_port, path, hdrs)
        tap.ok(f.status == status and f.headers.get("content-type") == "application/problem+json"
               and f.json().get("type") == "urn:imagetools:problem:" + slug,
               "imagetools.fcgi: %s: %d %s" % (name, status, slug))
        tap.is_(b.status, f.status, "bridge: %s: the same status" % name)
        diff = [h for h in same_headers if f.headers.get(h) != b.headers.get(h)]
        tap.ok(not diff, "bridge: %s: the same headers (%s)" % (name, "; ".join(
            "%s: %r / %r" % (h, f.headers.get(h), b.headers.get(h)) for h in diff)))
        fj = f.json() if f.headers.get("content-type") == "application/problem+json" else {}
        bj = b.json() if b.headers.get("content-type") == "application/problem+json" else {}
        tap.is_(bj, fj, "bridge: %s: the same problem" % name)
    tap.ok(st.sql("SELECT count(*) FROM events WHERE session_id = :'p1' AND seq > %d"
                  " AND type NOT LIKE 'presence.%%'" % log[-1], sid) == "0",
           "no refusal stored anything")

    # --- revocation closes every open stream of the device within a bounded wait
    victim, victim_dev = mint(st, sid, "view", "Doomed phone")
    ws = ws_connect(st, headers={"Sec-WebSocket-Protocol": "imagetools.v1, imagetools.bearer." + victim})
    ws_events(ws, len(logged(st, sid)))  # with device.paired
    # The device's first stream joins presence: its other streams wait after that event.
    wait_for(lambda: st.sql("SELECT count(*) FROM presence WHERE device_id = :'p1'", victim_dev) == "1",
             what="the device in presence")
    last = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    streams = {name: SSEStream(port, None, path="/api/v1/events/stream?session_id=%s&last_event_id=%d"
                               % (victim, last))
               for name, port in (("imagetools.fcgi", st.port), ("bridge", st.bridge_port))}
    for s in streams.values():
        s.read_until(lambda x: len(x.parser.events) >= 1)
    bystander = SSEStream(st.bridge_port, sid, last_event_id=last)
    bystander.read_until(lambda x: len(x.parser.events) >= 1)
    polls = {}

    def parked_longpolls(st):
        r = st.request("GET", "/api/v1/metrics")
        m = re.search(r'^imagetools_connections_open\{transport="longpoll"\}\s+(\d+)', r.body.decode(), re.M)
        return int(m.group(1)) if r.status == 200 and m else 0

    def poll(name, port):
        polls[name] = get(port, "/api/v1/events?cursor=%d&timeout=30" % last,
                          headers={"Authorization": "Bearer " + victim}, timeout=40)

    threads = [threading.Thread(target=poll, args=a) for a in (("imagetools.fcgi", st.port),
                                                               ("bridge", st.bridge_port))]
    for t in threads:
        t.start()
    # Both polls are parked once /metrics counts them (each process flushes
    # its gauges every few seconds); revoking before would answer them 401.
    try:
        wait_for(lambda: parked_longpolls(st) >= 2, timeout=20, interval=0.25, what="both long-polls parked")
    except TimeoutError:
        pass  # the checks below say what the polls answered
    t0 = time.monotonic()
    r = st.request("DELETE", "/api/v1/devices/" + victim_dev, headers={"Authorization": "Bearer " + sid})
    tap.is_(r.status, 204, "the device is revoked through the API")
    got, code = until_close(ws, timeout=5)
    tap.ok([m.get("type") for m in got if "id" not in m][-1:] == ["session.revoked"] and code == 4401,
           "WebSocket: session.revoked, then close 4401 (%r, %r)" % ([m.get("type") for m in got], code))
    tap.ok(got and got[-1].get("data") == {"reason": "revoked", "device_id": victim_dev},
           "session.revoked says revoked and which device")
    for name, s in streams.items():
        s.read_until(lambda x: x.closed, timeout=5)
        types = [e["type"] for e in s.parser.events]
        tap.ok(s.closed and types[-1:] == ["session.revoked"],
               "%s: the SSE stream gets session.revoked, then ends (%s)" % (name, ",".join(types)))
    for t in threads:
        t.join(10)
    for name in ("imagetools.fcgi", "bridge"):
        r = polls.get(name)
        evs = r.json().get("events", []) if r is not None and r.status == 200 else None
        tap.ok(evs is not None and [e["type"] for e in evs if "id" not in e] == ["session.revoked"],
               "%s: a parked long-poll answers with session.revoked (%r)" % (name, r and r.body[:200]))
    tap.ok(time.monotonic() - t0 < 10, "all of them within a bounded wait")
    append(st, sid, 1)
    bystander.read_until(lambda x: len(sse_ids(x)) >= 2)
    tap.ok(not bystander.closed and len(sse_ids(bystander)) >= 2,
           "a session-id stream of the same session goes on (device.revoked, then new events)")
    bystander.close()
    for name, port in (("imagetools.fcgi", st.port), ("bridge", st.bridge_port)):
        r = get(port, "/api/v1/events?timeout=0", headers={"Authorization": "Bearer " + victim})
        tap.ok(r.status == 401 and r.json().get("type") == "urn:imagetools:problem:invalid-token",
               "%s: the revoked token's next poll is 401 invalid-token" % name)
    refused_ws(st, "the revoked token's next WebSocket", 4401,
               conn={"headers": {"Sec-WebSocket-Protocol": "imagetools.v1, imagetools.bearer." + victim}})

    # --- a token that expires ends its streams
    brief, brief_dev = mint(st, sid, "view", "Brief", ttl=4)
    last = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    ws = ws_connect(st)
    ws.send_text(json.dumps({"type": "auth", "credential": brief, "last_event_id": last}))
    tap.is_(ws.recv_json().get("type"), "connection.status", "a short-lived token is admitted")
    s = SSEStream(st.port, None, path="/api/v1/events/stream?session_id=%s&last_event_id=%d" % (brief, last))
    got, code = until_close(ws, timeout=15)
    tap.ok(code == 4401 and got and got[-1].get("type") == "session.revoked"
           and got[-1]["data"].get("reason") == "expired",
           "at its expiry: session.revoked (expired), then close 4401 (%r)" % (code,))
    s.read_until(lambda x: x.closed, timeout=10)
    tap.ok(s.closed and [e["type"] for e in s.parser.events][-1:] == ["session.revoked"],
           "imagetools.fcgi: its SSE stream ends likewise")
    s.close()
    r = get(st.port, "/api/v1/events?timeout=0", headers={"Authorization": "Bearer " + brief})
    tap.is_(r.status, 401, "an expired token's next poll is 401")

    # --- nothing of a token in the bridge's log or in /metrics
    time.sleep(0.5)
    logs = ""
    for name in os.listdir(st.dir):
        if name.endswith(".log"):
            with open(os.path.join(st.dir, name), errors="replace") as f:
                logs += f.read()
    leaked = [t for t in (view, upload, full, victim, brief, sid) if t[4:] in logs or t in logs]
    tap.ok(not leaked, "no token and no session id in the logs of the stack")
    m = st.request("GET", "/api/v1/metrics")
    tap.ok(m.status == 200 and not [t for t in (view, victim, sid) if t[4:].encode() in m.body or t.encode() in m.body],
           "nor in /metrics")

    # --- the auth message must come within 10 s
    ws = ws_connect(st)
    got, code = until_close(ws, timeout=20)
    tap.ok(code == 4401 and not got, "no auth message within 10 s: close 4401, nothing sent before")

# --- refused tokens are counted per address: past rate_auth_failures, 429 before the look-up
with Stack(tap, bridge=True, settings={"rate_auth_failures": 2}) as st:
    forged = "itk." + "F" * 32
    for name, port in (("imagetools.fcgi", st.port), ("bridge", st.bridge_port)):
        answers = [get(port, "/api/v1/events?timeout=0", {"Authorization": "Bearer " + forged}) for _ in range(3)]
        tap.is_([a.status for a in answers], [401, 401, 429],
                name + ": two forged tokens are 401, the third request 429")
        tap.ok(answers[2].headers.get("retry-after", "").isdigit()
               and answers[2].json().get("type") == "urn:imagetools:problem:rate-limited",
               name + ": rate-limited, with Retry-After")
    refused_ws(st, "a WebSocket token from that address", 1013,
               conn={"headers": {"Authorization": "Bearer " + forged}})

tap.done()
