"""test_deploy_two_nodes.py: web nodes over one PostgreSQL, as in docs/scaling.md: node A
is lighttpd + imagetools.fcgi (+ bridge), node B is Apache + imagetools.fcgi (+ bridge),
node C is Apache mod_cgi (shared hosting), each with its own processes and nothing shared
but the database. What happens through A reaches clients of B (the session, and every
event, on SSE, long-poll and WebSocket) and of C (SSE)."""

import hashlib
import json
import threading
import time

from apache import ApacheStack, prerequisites
from deploy_scenarios import (SSEClient, WSClient, api, append_event, has_route, multipart, new_session,
                              png_bytes, skip)
from harness import Stack, Tap

why = prerequisites("lighttpd", "apache")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
with Stack(tap, bridge=True) as a, ApacheStack(tap, mode="fcgi", bridge=True, pg=a.pg, dbname=a.dbname) as b:
    tap.ok(set(a.fcgi_pids()).isdisjoint(b.fcgi_pids()) and a.fcgi_pids() and b.fcgi_pids(),
           "each node runs its own imagetools.fcgi")
    sid = new_session(a)
    r = b.request("GET", api(b, "/sessions/" + sid))
    tap.is_(r.status, 200, "a session created on A is valid on B")

    uploads = has_route("POST", "/api/v1/images")
    sse = has_route("GET", "/api/v1/events/stream")
    longpoll = has_route("GET", "/api/v1/events")
    bridge = b.bridge is not None

    def make_event():
        """An event caused on node A: an upload when uploads exist, else a direct append."""
        if uploads:
            data = png_bytes(32, 32, seed=3)
            ctype, body = multipart({"session_id": sid, "source": "android_app"},
                                    [("file", "from-a.png", "image/png", data)])
            r = a.request("POST", api(a, "/images"), body=body, headers={"Content-Type": ctype})
            tap.is_(r.status, 201, "upload through node A")
            img = r.json()["images"][0] if r.status == 201 else {}
            tap.is_(img.get("sha256"), hashlib.sha256(data).hexdigest(), "stored as sent")
            # Signed on A, checked on B: the nodes share the key through the database.
            f = b.request("GET", img.get("file_url", "/"))
            tap.ok(f.status == 200 and f.body == data, "the image uploaded through A downloads from B byte for byte")
            return int(a.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid)), "image.uploaded"
        return append_event(a, sid, "image.deleted", {"image_id": "two-nodes"}), "image.deleted"

    if not (sse or longpoll or bridge):
        skip(tap, "no transport on node B yet (SSE, long-poll and the bridge are not built)")
    else:
        start = int(a.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
        sse_c = ws_c = None
        lp = {}
        if sse:
            sse_c = SSEClient("127.0.0.1", b.port, api(b, "/events/stream?session_id=" + sid),
                              headers={"Last-Event-ID": str(start)})
            tap.is_(sse_c.next().get("event"), "connection.status", "SSE on B is open")
        if bridge:
            ws_c = WSClient("127.0.0.1", b.port, api(b, "/ws/%s?last_event_id=%d" % (sid, start)),
                            "http://127.0.0.1:%d" % b.port)
            tap.is_(json.loads(ws_c.recv_text()).get("type"), "connection.status", "WebSocket on B is open")
        if longpoll:
            def poll():
                lp["r"] = b.request("GET", api(b, "/events?session_id=%s&cursor=%d&timeout=20" % (sid, start)),
                                    timeout=40)
            th = threading.Thread(target=poll)
            th.start()
            time.sleep(1.0)
        eid, etype = make_event()
        if sse_c:
            ev = sse_c.next()
            tap.is_((int(ev.get("id", -1)), ev.get("event")), (eid, etype), "the event from A reaches SSE on B")
            sse_c.close()
        else:
            skip(tap, "SSE is not built yet")
        if ws_c:
            msg = json.loads(ws_c.recv_text())
            tap.is_((msg.get("id"), msg.get("type")), (eid, etype), "the event from A reaches WebSocket on B")
            ws_c.close()
        else:
            skip(tap, "the bridge is not built yet")
        if longpoll:
            th.join(40)
            r = lp.get("r")
            evs = r.json().get("events", []) if r is not None and r.status == 200 else []
            tap.is_([(e.get("id"), e.get("type")) for e in evs], [(eid, etype)],
                    "the event from A ends a waiting long-poll on B")
        else:
            skip(tap, "long-poll is not built yet")

    # A third node on shared hosting (Apache mod_cgi, no daemons) joins the same database:
    # what happens through A reaches its SSE clients as well.
    with ApacheStack(tap, mode="cgi", pg=a.pg, dbname=a.dbname) as c:
        r = c.request("GET", api(c, "/sessions/" + sid))
        tap.is_(r.status, 200, "the session is valid on the CGI node C")
        if sse:
            start = int(a.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
            sse_c = SSEClient("127.0.0.1", c.port, api(c, "/events/stream?session_id=" + sid),
                              headers={"Last-Event-ID": str(start)})
            tap.is_(sse_c.next().get("event"), "connection.status", "SSE on C is open")
            eid, etype = make_event()
            ev = sse_c.next()
            tap.is_((int(ev.get("id", -1)), ev.get("event")), (eid, etype), "the event from A reaches SSE on C")
            sse_c.close()
        else:
            skip(tap, "SSE is not built yet")

    r = a.request("DELETE", api(a, "/sessions/" + sid))
    tap.is_(r.status, 204, "session deleted on A")
    b.is_problem(b.request("GET", api(b, "/sessions/" + sid)), 404, "and gone on B")
tap.done()
