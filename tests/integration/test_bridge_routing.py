"""test_bridge_routing.py: the optional routing of the shipped configs that sends all streaming to
the bridge: lighttpd.conf.example with the pattern on its "## streams:" line, and
apache/imagetools.conf.example with IT_STREAMS_TO_BRIDGE defined, as a site would set them.
Through the web server, SSE and long-poll are then answered by the bridge, not by
imagetools.fcgi's hub (its health shows no stream while they are open, and they end with the
bridge), with every event in order and exactly once, resumable with Last-Event-ID, the CORS
preflight of imagetools.fcgi, and uploads and the rest of the API still served by
imagetools.fcgi."""

import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apache import ApacheStack, prerequisites  # noqa: E402
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
    """Long-polls through the web server from cursor 0 until EVENTS events, as a client does."""
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


SETTINGS = {"keepalive_interval": 2, "allowed_origins": "https://app.example"}


def check(st, web):
    """The checks through one web server (web names it)."""
    sid = st.new_session()
    tap.ok(len(sid) >= 22, "%s: a session from imagetools.fcgi" % web)

    streams = [SSEStream(st.port, sid) for _ in range(3)]
    for s in streams:
        s.read_until(lambda s: len(s.parser.events) >= 1)
    tap.ok(all(s.status == 200 and s.parser.events and s.parser.events[0]["type"] == "connection.status"
               for s in streams), "%s: three SSE streams, connected" % web)
    out = {"ids": [], "statuses": set(), "polls": 0}
    stop = threading.Event()
    th = threading.Thread(target=poller, args=(st, sid, out, stop))
    th.start()
    # Both servers count their parked streams; give the first poll time to be parked somewhere.
    time.sleep(0.5)
    h = hub(st)
    tap.ok(h.get("sse_streams") == 0 and h.get("longpoll_waiters") == 0,
           "%s: imagetools.fcgi's hub holds none of them (%r)"
           % (web, {k: h.get(k) for k in ("sse_streams", "longpoll_waiters")}))

    # Events in bursts while everything is open, one of them a real upload.
    for burst in range(3):
        append(st, sid, (EVENTS - 1) // 3 if burst < 2 else EVENTS - 1 - 2 * ((EVENTS - 1) // 3))
        time.sleep(0.2)
    r = st.request("POST", "/api/v1/images", body=b"--b\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n"
                   + sid.encode() + b"\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n"
                   b"Content-Type: image/png\r\n\r\n" + png_bytes(8, 8) + b"\r\n--b--\r\n",
                   headers={"Content-Type": "multipart/form-data; boundary=b"})
    tap.is_(r.status, 201, "%s: an upload is served by imagetools.fcgi" % web)
    for i, s in enumerate(streams):
        s.read_until(lambda s: len(s.ids()) >= EVENTS, timeout=20)
        tap.is_(s.ids(), list(range(1, EVENTS + 1)), "%s: SSE stream %d: every event once, in order" % (web, i))
    tap.is_(streams[0].parser.events[-1]["type"], "image.uploaded", "%s: the upload's event among them" % web)
    th.join(30)
    stop.set()
    tap.is_(out["ids"], list(range(1, EVENTS + 1)), "%s: long-poll: every event once, in order (%d polls)"
            % (web, out["polls"]))
    tap.is_(out["statuses"], {200}, "%s: every poll answered 200" % web)

    again = SSEStream(st.port, sid, last_event_id=EVENTS - 3)
    again.read_until(lambda s: len(s.ids()) >= 3)
    tap.is_(again.ids(), [EVENTS - 2, EVENTS - 1, EVENTS], "%s: Last-Event-ID resumes" % web)
    again.close()
    streams[0].read_until(lambda s: b": keepalive" in s.body, timeout=10)
    tap.ok(b": keepalive" in streams[0].body, "%s: keepalives reach the client" % web)

    r = st.request("OPTIONS", "/api/v1/events/stream", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "cache-control,last-event-id,x-requested-with"})
    f = st.request("OPTIONS", "/api/v1/images", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "cache-control,last-event-id,x-requested-with"})
    tap.ok(r.status == 204 and r.header("Access-Control-Allow-Origin") == "https://app.example",
           "%s: a preflight for the stream, answered by the bridge" % web)
    tap.ok(all(r.header(h) == f.header(h) for h in ("Access-Control-Allow-Methods", "Access-Control-Allow-Headers",
                                                    "Access-Control-Max-Age")),
           "%s: with the very headers imagetools.fcgi's preflight has" % web)
    r = st.request("GET", "/api/v1/events?timeout=0&session_id=" + "A" * 43)
    st.is_problem(r, 404, "%s: an unknown session" % web)
    tap.is_(r.json().get("type") if r.status == 404 else None, "urn:imagetools:problem:unknown-session",
            "%s: the unknown-session problem" % web)

    # Proof of the route: the streams end with the bridge, and polls fail without it, while
    # imagetools.fcgi answers the rest.
    st.bridge.terminate()
    st.bridge.wait(timeout=15)
    for i, s in enumerate(streams):
        tap.ok(s.read_until(lambda s: s.closed, timeout=10), "%s: SSE stream %d ends when the bridge stops" % (web, i))
        s.close()
    r = st.request("GET", "/api/v1/events?timeout=0&session_id=" + sid)
    tap.ok(r.status >= 500, "%s: without the bridge a long-poll fails (%d): it was the bridge's" % (web, r.status))
    tap.is_(st.request("GET", "/api/v1/sessions/" + sid, headers={"Authorization": "Bearer " + sid}).status, 200,
            "%s: the rest of the API is still imagetools.fcgi's" % web)



with Stack(tap, bridge=True, lighttpd_vars={"bridge_urls": pattern}, settings=SETTINGS) as st:
    check(st, "lighttpd")

why = prerequisites("apache")
with open(os.path.join(SRCDIR, "apache", "imagetools.conf.example")) as f:
    tap.ok(re.search(r"^#Define IT_STREAMS_TO_BRIDGE$", f.read(), re.M),
           "apache/imagetools.conf.example has the optional IT_STREAMS_TO_BRIDGE")
if why:
    tap.skip("Apache with IT_STREAMS_TO_BRIDGE", why)
else:
    with ApacheStack(tap, bridge=True, enable=("IT_STREAMS_TO_BRIDGE",), settings=SETTINGS) as st:
        check(st, "Apache")

tap.done()
