"""test_bridge_routing.py: the optional routing of lighttpd.conf.example that sends all streaming
to the bridge (the pattern on its "## streams:" line, as a site would set it). Through lighttpd,
SSE and long-poll are then answered by the bridge, not by imagetools.fcgi's hub (its health shows
no stream while they are open, and they end with the bridge), with every event in order and
exactly once, resumable with Last-Event-ID, the CORS preflight of imagetools.fcgi, and uploads and
the rest of the API still served by imagetools.fcgi."""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SRCDIR, Stack, Tap  # noqa: E402
from sseclient import SSEStream  # noqa: E402
from uploads_util import png_bytes  # noqa: E402

tap = Tap()

with open(os.path.join(SRCDIR, "lighttpd.conf.example")) as f:
    m = re.search(r'^## streams: var\.bridge_urls = "([^"]+)"$', f.read(), re.M)
tap.ok(m is not None, "lighttpd.conf.example documents the routing of all streams to the bridge")
pattern = m.group(1) if m else "^/api/v1/(ws/|events(/stream)?$)"

EVENTS = 60


def append(st, sid, n):
    sql = "".join("SELECT it_append_event(:'p1', 'image.uploaded', '{\"n\": %d}'::jsonb);\n" % i for i in range(n))
    st.sql(sql, sid)


def hub(st):
    r = st.request("GET", "/api/v1/health")
    return (r.json() if r.status in (200, 503) else {}).get("hub") or {}


def poller(st, sid, out, stop):
    """Long-polls through lighttpd from cursor 0 until EVENTS events, as a client does."""
    cursor = 0
    while len(out["ids"]) < EVENTS and not stop.is_set():
        r = st.request("GET", "/api/v1/events?session_id=%s&cursor=%d&timeout=10" % (sid, cursor), timeout=30)
        out["statuses"].add(r.status)
        if r.status != 200:
            time.sleep(0.2)
            continue
        b = r.json()
        out["ids"] += [e["id"] for e in b["events"] if "id" in e]
        cursor = b["cursor"]
        out["polls"] += 1


with Stack(tap, bridge=True, lighttpd_vars={"bridge_urls": pattern},
           settings={"keepalive_interval": 2, "allowed_origins": "https://app.example"}) as st:
    sid = st.new_session()
    tap.ok(len(sid) >= 22, "a session from imagetools.fcgi through lighttpd")

    streams = [SSEStream(st.port, sid) for _ in range(3)]
    for s in streams:
        s.read_until(lambda s: len(s.parser.events) >= 1)
    tap.ok(all(s.status == 200 and s.parser.events and s.parser.events[0]["type"] == "connection.status"
               for s in streams), "three SSE streams through lighttpd, connected")
    out = {"ids": [], "statuses": set(), "polls": 0}
    stop = threading.Event()
    th = threading.Thread(target=poller, args=(st, sid, out, stop))
    th.start()
    # Both servers count their parked streams; give the first poll time to be parked somewhere.
    time.sleep(0.5)
    h = hub(st)
    tap.ok(h.get("sse_streams") == 0 and h.get("longpoll_waiters") == 0,
           "imagetools.fcgi's hub holds none of them (%r)" % {k: h.get(k) for k in ("sse_streams", "longpoll_waiters")})

    # Events in bursts while everything is open, one of them a real upload.
    for burst in range(3):
        append(st, sid, (EVENTS - 1) // 3 if burst < 2 else EVENTS - 1 - 2 * ((EVENTS - 1) // 3))
        time.sleep(0.2)
    r = st.request("POST", "/api/v1/images", body=b"--b\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n"
                   + sid.encode() + b"\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                   b"Content-Type: image/png\r\n\r\n" + png_bytes(8, 8) + b"\r\n--b--\r\n",
                   headers={"Content-Type": "multipart/form-data; boundary=b"})
    tap.is_(r.status, 201, "an upload through lighttpd is served by imagetools.fcgi")
    for i, s in enumerate(streams):
        s.read_until(lambda s: len(s.ids()) >= EVENTS, timeout=20)
        tap.is_(s.ids(), list(range(1, EVENTS + 1)), "SSE stream %d through lighttpd: every event once, in order" % i)
    tap.is_(streams[0].parser.events[-1]["type"], "image.uploaded", "the upload's event among them")
    th.join(30)
    stop.set()
    tap.is_(out["ids"], list(range(1, EVENTS + 1)), "long-poll through lighttpd: every event once, in order (%d polls)"
            % out["polls"])
    tap.is_(out["statuses"], {200}, "every poll answered 200")

    again = SSEStream(st.port, sid, last_event_id=EVENTS - 3)
    again.read_until(lambda s: len(s.ids()) >= 3)
    tap.is_(again.ids(), [EVENTS - 2, EVENTS - 1, EVENTS], "Last-Event-ID resumes through lighttpd")
    again.close()
    streams[0].read_until(lambda s: b": keepalive" in s.body, timeout=10)
    tap.ok(b": keepalive" in streams[0].body, "keepalives reach the client through the proxy")

    r = st.request("OPTIONS", "/api/v1/events/stream", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "cache-control,last-event-id,x-requested-with"})
    f = st.request("OPTIONS", "/api/v1/images", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "cache-control,last-event-id,x-requested-with"})
    tap.ok(r.status == 204 and r.header("Access-Control-Allow-Origin") == "https://app.example",
           "a preflight for the stream, answered by the bridge through lighttpd")
    tap.ok(all(r.header(h) == f.header(h) for h in ("Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                                                    "Access-Control-Max-Age")),
           "with the very headers imagetools.fcgi's preflight has")
    r = st.request("GET", "/api/v1/events?timeout=0&session_id=" + "A" * 43)
    st.is_problem(r, 404, "an unknown session through lighttpd")
    tap.is_(r.json().get("type") if r.status == 404 else None, "urn:imagetools:problem:unknown-session",
            "the unknown-session problem")

    # Proof of the route: the streams end with the bridge, and polls fail without it, while
    # imagetools.fcgi answers the rest.
    st.bridge.terminate()
    st.bridge.wait(timeout=15)
    for i, s in enumerate(streams):
        tap.ok(s.read_until(lambda s: s.closed, timeout=10), "SSE stream %d ends when the bridge stops" % i)
        s.close()
    r = st.request("GET", "/api/v1/events?timeout=0&session_id=" + sid)
    tap.ok(r.status >= 500, "without the bridge a long-poll through lighttpd fails (%d): it was the bridge's" % r.status)
    tap.is_(st.request("GET", "/api/v1/sessions/" + sid, headers={"Authorization": "Bearer " + sid}).status, 200,
            "the rest of the API is still imagetools.fcgi's")

tap.done()
