"""test_presence.py: who is connected to a session (docs/presence.md): WebSocket and SSE clients that say
who they are show up in GET /api/v1/presence and as presence.joined (once) on another stream; a reconnect
within the grace makes no churn; a clean close leaves ("closed"); kill -9 of the bridge holding a connection
leaves ("expired") and shows no ghost; a bridge restart with the client back quickly keeps the entry; two
nodes on one database see the same presence; the HTTP heartbeat shows a device uploading; anonymous
connections add nothing."""

import http.client
import json
import os
import signal
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from apache import LighttpdCgiStack  # noqa: E402
from harness import Tap, Stack, wait_for  # noqa: E402
from sseclient import SSEStream  # noqa: E402
from wsclient import WsClient  # noqa: E402

tap = Tap()

# A short time to live keeps the crash case quick: entries are renewed every 2 s and swept 6 s after
# their process stopped renewing them.
TTL = 6
GRACE = 5  # IT_PRESENCE_GRACE
SETTINGS = {"presence_ttl": TTL}


def presence_events(st, sid):
    """The presence events of the log, in order, as (type, data)."""
    out = st.sql("SELECT type || ' ' || payload::text FROM events WHERE session_id = :'p1'"
                 " AND type LIKE 'presence.%' ORDER BY seq", sid)
    return [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in out.splitlines() if line]


def of(evs, client, etype=None):
    return [(t, d) for t, d in evs if d.get("client_id") == client and (etype is None or t == etype)]


def query(client_id, label=None, source=None, sid=None, **more):
    q = {}
    if sid:
        q["session_id"] = sid
    q["client_id"] = client_id
    if label:
        q["client_label"] = label
    if source:
        q["client_source"] = source
    q.update(more)
    return urllib.parse.urlencode(q)


def ws(st, sid, client_id=None, label=None, source=None, port=None):
    path = "/api/v1/ws/" + sid + ("?" + query(client_id, label, source) if client_id else "")
    c = WsClient.connect("127.0.0.1", port or st.port, path)
    first = c.recv_json()
    tap.ok(first.get("type") == "connection.status", "the WebSocket is admitted (%s)" % (client_id or "anonymous"))
    return c


def sse(st, sid, client_id=None, label=None, source=None, port=None):
    path = "/api/v1/events/stream?" + (query(client_id, label, source, sid=sid) if client_id
                                       else "session_id=" + sid)
    s = SSEStream(port or st.port, sid, path=path)
    tap.is_(s.status, 200, "the SSE stream is admitted (%s)" % (client_id or "anonymous"))
    return s


def listed(st, sid, port=None):
    r = (st.request("GET", "/api/v1/presence", headers={"Authorization": "Bearer " + sid}))
    if r.status != 200:
        raise RuntimeError("GET /presence: %r" % r)
    return r.json()


def clients(doc):
    return {e["client_id"]: e for e in doc["presence"]}


with Stack(tap, bridge=True, settings=SETTINGS) as st:
    sid = st.new_session()

    # ---------------------------------------------------------------- anonymous connections
    a_ws = ws(st, sid)
    a_sse = sse(st, sid)
    r = st.request("GET", "/api/v1/events?timeout=1&session_id=" + sid)
    tap.is_(r.status, 200, "an anonymous long-poll is answered")
    a_ws.close()
    a_sse.close()
    tap.is_(listed(st, sid)["presence"], [], "anonymous connections are not in presence")

    # ---------------------------------------------------------------- joined, listed, seen by another stream
    observer = sse(st, sid)  # through imagetools.fcgi's hub
    desk = ws(st, sid, "desk-1", "Desktop \u00e9cran", "web")
    tab = sse(st, sid, "tab-2", "Second tab", "web", port=st.port)

    def seen(s, etype, client):
        return [e for e in s.stored() if e["type"] == etype and e["data"].get("client_id") == client]

    observer.read_until(lambda s: seen(s, "presence.joined", "desk-1") and seen(s, "presence.joined", "tab-2"),
                        timeout=15)
    j = seen(observer, "presence.joined", "desk-1")
    tap.is_(len(j), 1, "another stream sees presence.joined for the WebSocket client once")
    if j:
        d = j[0]["data"]
        tap.is_((d.get("label"), d.get("source"), d.get("transport"), d.get("state")),
                ("Desktop \u00e9cran", "web", "websocket", "connected"), "its label, source, transport and state")
        tap.like(d.get("since", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", "and since, a timestamp")
        tap.ok("device_id" not in d, "no device for a session-id client")
    j = seen(observer, "presence.joined", "tab-2")
    tap.is_(len(j), 1, "another stream sees presence.joined for the SSE client once")
    if j:
        tap.is_(j[0]["data"].get("transport"), "sse", "its transport is sse")

    doc = listed(st, sid)
    got = clients(doc)
    tap.is_(sorted(got), ["desk-1", "tab-2"], "GET /presence lists both clients")
    tap.is_(got.get("desk-1", {}).get("label"), "Desktop \u00e9cran", "with their labels")
    tap.ok(doc["last_event_id"] >= max(e["id"] for e in observer.stored()),
           "and the id of the last event it is as of")

    # Several connections of one client make one entry and one event.
    desk_b = ws(st, sid, "desk-1", "Desktop \u00e9cran", "web")
    desk_b.close()

    # ---------------------------------------------------------------- reconnect within the grace: no churn
    before = len(presence_events(st, sid))
    desk.close()
    desk = ws(st, sid, "desk-1", "Desktop \u00e9cran", "web")
    # The window in which a left would have been appended: the grace, then a sweep (every TTL / 3 s).
    time.sleep(GRACE + TTL)
    evs = presence_events(st, sid)[before:]
    tap.is_(of(evs, "desk-1"), [], "a client that reconnects within the grace makes no left/joined churn")
    tap.ok("desk-1" in clients(listed(st, sid)), "and stays listed")

    # ---------------------------------------------------------------- clean close
    desk.close()
    observer.read_until(lambda s: seen(s, "presence.left", "desk-1"), timeout=GRACE + TTL + 10)
    left = seen(observer, "presence.left", "desk-1")
    tap.is_([e["data"].get("reason") for e in left], ["closed"], "a clean close: presence.left \"closed\", once")
    tap.ok("desk-1" not in clients(listed(st, sid)), "and it is no longer listed")
    tab.close()
    wait_for(lambda: of(presence_events(st, sid), "tab-2", "presence.left"), timeout=GRACE + TTL + 10,
             what="the SSE client's left")
    tap.is_([d["reason"] for _, d in of(presence_events(st, sid), "tab-2", "presence.left")], ["closed"],
            "an SSE stream that ends leaves too")

    # ---------------------------------------------------------------- kill -9 of the bridge holding a connection
    doomed = ws(st, sid, "doomed-3", "Phone", "android_app")
    wait_for(lambda: "doomed-3" in clients(listed(st, sid)), timeout=10, what="the entry")
    t0 = time.monotonic()
    st.bridge.send_signal(signal.SIGKILL)
    st.bridge.wait()
    observer.read_until(lambda s: seen(s, "presence.left", "doomed-3"), timeout=TTL + 20)
    left = seen(observer, "presence.left", "doomed-3")
    tap.is_([e["data"].get("reason") for e in left], ["expired"],
            "kill -9 of the bridge: presence.left \"expired\", once, seen by a stream on another process")
    tap.diag("left %.1f s after the kill (ttl %d s)" % (time.monotonic() - t0, TTL))
    tap.ok("doomed-3" not in clients(listed(st, sid)), "GET /presence shows no ghost")
    doomed.abort()
    st.procs.remove(st.bridge)
    st.start_bridge()

    # ---------------------------------------------------------------- bridge restart, the client back quickly
    phone = ws(st, sid, "phone-4", "Phone", "android_app")
    wait_for(lambda: "phone-4" in clients(listed(st, sid)), timeout=10, what="the entry")
    before = len(presence_events(st, sid))
    st.bridge.terminate()
    code, _ = phone.expect_close()
    tap.is_(code, 1001, "the bridge going down closes the client with 1001")
    st.bridge.wait()
    st.procs.remove(st.bridge)
    st.start_bridge()
    phone = ws(st, sid, "phone-4", "Phone", "android_app")
    time.sleep(GRACE + TTL)
    tap.is_(of(presence_events(st, sid)[before:], "phone-4"), [],
            "a bridge restart with the client back quickly keeps the entry: no left, no joined")
    tap.ok("phone-4" in clients(listed(st, sid)), "and it is listed")

    # ---------------------------------------------------------------- HTTP heartbeat
    auth = {"Authorization": "Bearer " + sid}
    r = st.request("POST", "/api/v1/presence", body={"client_id": "cam-5", "state": "uploading",
                                                      "label": "Anna's phone", "source": "android_app"},
                   headers=auth)
    tap.is_(r.status, 204, "POST /presence: 204")
    e = clients(listed(st, sid)).get("cam-5", {})
    tap.is_((e.get("state"), e.get("transport"), e.get("label"), e.get("source")),
            ("uploading", "http", "Anna's phone", "android_app"), "the heartbeat shows the device uploading")
    observer.read_until(lambda s: seen(s, "presence.joined", "cam-5"), timeout=10)
    tap.is_([x["data"].get("state") for x in seen(observer, "presence.joined", "cam-5")], ["uploading"],
            "presence.joined says uploading")
    r = st.request("POST", "/api/v1/presence", body={"client_id": "cam-5", "state": "idle"}, headers=auth)
    tap.is_(r.status, 204, "a second heartbeat")
    observer.read_until(lambda s: seen(s, "presence.updated", "cam-5"), timeout=10)
    tap.is_([x["data"].get("state") for x in seen(observer, "presence.updated", "cam-5")], ["idle"],
            "a change of state is presence.updated")
    r = st.request("POST", "/api/v1/presence", body={"client_id": "cam-5", "state": "idle"}, headers=auth)
    tap.is_(len(of(presence_events(st, sid), "cam-5")), 2, "a heartbeat that changes nothing appends nothing")
    # The same client's stream and its heartbeat are one entry.
    r = st.request("POST", "/api/v1/presence", body={"client_id": "phone-4", "state": "uploading"}, headers=auth)
    e = clients(listed(st, sid)).get("phone-4", {})
    tap.is_((e.get("state"), e.get("transport")), ("uploading", "websocket"),
            "a heartbeat of a client with a stream sets its state and keeps its transport")
    r = st.request("DELETE", "/api/v1/presence?client_id=cam-5", headers=auth)
    tap.is_(r.status, 204, "DELETE /presence: 204")
    tap.is_([d["reason"] for _, d in of(presence_events(st, sid), "cam-5", "presence.left")], ["closed"],
            "and it leaves now")

    # ---------------------------------------------------------------- a paired device's token
    r = st.request("POST", "/api/v1/tokens", body={"scope": "upload", "label": "Anna's phone",
                                                   "source": "android_app"}, headers=auth)
    tap.is_(r.status, 201, "an upload token is minted")
    tok, dev = r.json()["token"], r.json()["device_id"]
    bearer = {"Authorization": "Bearer " + tok}
    r = st.request("POST", "/api/v1/presence", body={"state": "uploading", "label": "ignored"}, headers=bearer)
    tap.is_(r.status, 204, "POST /presence with an upload token: 204")
    e = clients(listed(st, sid)).get(dev, {})
    tap.is_((e.get("device_id"), e.get("label"), e.get("source"), e.get("state")),
            (dev, "Anna's phone", "android_app", "uploading"),
            "the device appears uploading, under its own id, label and source")
    st.is_problem(st.request("GET", "/api/v1/presence", headers=bearer), 403,
                  "an upload token cannot read presence")
    r = st.request("POST", "/api/v1/tokens", body={"scope": "view", "label": "Wall screen"}, headers=auth)
    view_tok, view_dev = r.json()["token"], r.json()["device_id"]
    viewer = {"Authorization": "Bearer " + view_tok}
    r = st.request("GET", "/api/v1/presence", headers=viewer)
    tap.is_((r.status, dev in clients(r.json()) if r.status == 200 else None), (200, True),
            "a view token reads presence")
    r = st.request("DELETE", "/api/v1/presence?client_id=phone-4", headers=bearer)
    tap.ok("phone-4" in clients(listed(st, sid)), "a device's token cannot make another client leave")
    r = st.request("DELETE", "/api/v1/devices/" + dev, headers=auth)
    tap.is_(r.status, 204, "the device is revoked")
    tap.is_([d["reason"] for _, d in of(presence_events(st, sid), dev, "presence.left")], ["revoked"],
            "its entry leaves with reason \"revoked\", at once")
    r = st.request("POST", "/api/v1/presence", body={"state": "uploading"}, headers=bearer)
    st.is_problem(r, 401, "a revoked token's heartbeat")
    tap.ok(dev not in clients(listed(st, sid)), "and does not bring it back")

    # A stream that comes with a device's token announces itself, without a client_id.
    screen = SSEStream(st.port, sid, path="/api/v1/events/stream?session_id=" + view_tok)
    tap.is_(screen.status, 200, "an SSE stream with a view token")
    wait_for(lambda: view_dev in clients(listed(st, sid)), timeout=10, what="the token's stream listed")
    e = clients(listed(st, sid)).get(view_dev, {})
    tap.is_((e.get("device_id"), e.get("label"), e.get("transport")), (view_dev, "Wall screen", "sse"),
            "it is listed as its device, with the device's label")
    r = st.request("DELETE", "/api/v1/devices/" + view_dev, headers=auth)
    tap.is_(r.status, 204, "that device is revoked while its stream is open")
    tap.ok(screen.read_until(lambda x: x.closed, timeout=10), "its stream ends")
    tap.is_([d["reason"] for _, d in of(presence_events(st, sid), view_dev, "presence.left")], ["revoked"],
            "its entry leaves \"revoked\", once")
    time.sleep(GRACE + TTL)
    tap.is_([t for t, _ in of(presence_events(st, sid), view_dev)], ["presence.joined", "presence.left"],
            "and it does not come back while its connection closes")
    screen.close()

    # ---------------------------------------------------------------- bad input
    st.is_problem(st.request("POST", "/api/v1/presence", body={"client_id": "bad id"}, headers=auth), 400,
                  "a malformed client_id")
    st.is_problem(st.request("POST", "/api/v1/presence", body={"client_id": "x", "state": "asleep"},
                             headers=auth), 400, "an unknown state")
    st.is_problem(st.request("POST", "/api/v1/presence", body={"client_id": "x", "label": "a\u0007b"},
                             headers=auth), 400, "a control character in a label")
    st.is_problem(st.request("POST", "/api/v1/presence", body={"client_id": "x", "extra": 1}, headers=auth),
                  400, "an unknown field")
    st.is_problem(st.request("POST", "/api/v1/presence", body=b"[1]", headers=auth), 400, "not an object")
    st.is_problem(st.request("POST", "/api/v1/presence", body={"client_id": "x"}), 401, "no credential")
    st.is_problem(st.request("GET", "/api/v1/presence"), 401, "no credential to list")
    st.is_problem(st.request("GET", "/api/v1/presence", headers={"Authorization": "Bearer " + "A" * 32}), 404,
                  "an unknown session")
    st.is_problem(st.request("GET", "/api/v1/events/stream?session_id=%s&client_id=a%%20b" % sid), 400,
                  "SSE with a malformed client_id")
    st.is_problem(st.request("GET", "/api/v1/events?session_id=%s&client_id=ok&client_label=" % sid), 400,
                  "a long-poll with an empty client_label")
    tap.is_(st.sql("SELECT count(*) FROM presence WHERE client_id IN ('x', 'bad id', 'ok')"), "0",
            "refusals store nothing")

    # ---------------------------------------------------------------- two nodes, one database
    with Stack(tap, pg=st.pg, dbname=st.dbname, settings=SETTINGS) as b:
        on_b = sse(b, sid, "node-b-6", "On B", "cli", port=b.port)
        wait_for(lambda: "node-b-6" in clients(listed(st, sid)), timeout=10, what="B's client listed on A")
        tap.is_(sorted(clients(listed(st, sid))), sorted(clients(listed(b, sid))),
                "two nodes on one database list the same presence")
        observer.read_until(lambda s: seen(s, "presence.joined", "node-b-6"), timeout=10)
        tap.is_(len(seen(observer, "presence.joined", "node-b-6")), 1,
                "a client of node B joins on a stream of node A")
        on_b.close()
        observer.read_until(lambda s: seen(s, "presence.left", "node-b-6"), timeout=GRACE + TTL + 10)
        tap.is_([x["data"].get("reason") for x in seen(observer, "presence.left", "node-b-6")], ["closed"],
                "and its leaving is seen on node A")

    # ---------------------------------------------------------------- the bridge's SSE and long-poll
    bs = sse(st, sid, "bridge-sse-7", "Add-on", "browser_addon", port=st.bridge_port)
    wait_for(lambda: of(presence_events(st, sid), "bridge-sse-7", "presence.joined"), timeout=10,
             what="the bridge's SSE client joined")
    tap.is_([d["transport"] for _, d in of(presence_events(st, sid), "bridge-sse-7", "presence.joined")], ["sse"],
            "an SSE client of the bridge joins with transport sse")
    bs.close()

    def poll(cursor):
        conn = http.client.HTTPConnection("127.0.0.1", st.bridge_port, timeout=30)
        try:
            conn.request("GET", "/api/v1/events?" + query("poll-8", "CLI watcher", "cli", sid=sid, cursor=cursor,
                                                            timeout=1))
            r = conn.getresponse()
            return r.status, json.loads(r.read() or b"{}")
        finally:
            conn.close()

    cursor = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    for i in range(3):
        status, body = poll(cursor)
        tap.is_(status, 200, "long-poll %d through the bridge" % (i + 1))
        cursor = body.get("cursor", cursor)
    evs = of(presence_events(st, sid), "poll-8")
    tap.is_([(t, d.get("transport")) for t, d in evs], [("presence.joined", "longpoll")],
            "a long-poll client that polls again and again joins once, and does not leave between polls")
    wait_for(lambda: of(presence_events(st, sid), "poll-8", "presence.left"), timeout=30,
             what="the long-poll client's left")
    tap.is_([d["reason"] for _, d in of(presence_events(st, sid), "poll-8", "presence.left")], ["closed"],
            "once it stops polling it leaves, \"closed\"")
    wait_for(lambda: of(presence_events(st, sid), "bridge-sse-7", "presence.left"), timeout=GRACE + TTL + 10,
             what="the bridge's SSE client's left")

    # ---------------------------------------------------------------- plain CGI: no process renews an entry
    with LighttpdCgiStack(tap, pg=st.pg, dbname=st.dbname, settings=SETTINGS) as cgi:
        cursor = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
        result = {}

        def cgi_poll():
            result["r"] = cgi.request("GET", "/api/v1/events?" + query("cgi-9", "Shared host tab", "web", sid=sid,
                                                                       cursor=cursor, timeout=3))

        t = threading.Thread(target=cgi_poll)
        t.start()
        wait_for(lambda: "cgi-9" in clients(listed(st, sid)), timeout=10, what="the CGI long-poll listed")
        tap.is_(clients(listed(st, sid))["cgi-9"]["transport"], "longpoll",
                "a waiting CGI long-poll registers itself, transport longpoll")
        t.join()
        tap.is_(result["r"].status, 200, "and is answered")
        wait_for(lambda: of(presence_events(st, sid), "cgi-9", "presence.left"), timeout=3 + GRACE + TTL + 10,
                 what="the CGI client's left")
        tap.is_([d["reason"] for _, d in of(presence_events(st, sid), "cgi-9", "presence.left")], ["closed"],
                "it leaves \"closed\" once its wait and the grace are over")

    # ---------------------------------------------------------------- every event once, every stream
    evs = presence_events(st, sid)
    joined = [d["client_id"] for t, d in evs if t == "presence.joined"]
    tap.is_(sorted(joined), sorted(set(joined)), "no client joined twice without leaving in between")
    phone.abort()  # not read for a while: the bridge may have closed it for unanswered Pings
    observer.close()

tap.done()
