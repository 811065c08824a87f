"""test_presence_metrics.py: presence in /api/v1/metrics (docs/metrics.md): a device's WebSocket and a tab's
SSE stream that say who they are show as held entries and joins; when they close, their entries leave
("closed") after the grace and are no longer held; the HTTP heartbeat and DELETE /presence count their join and
leave; a heartbeat statement the database refuses is counted as a renewal failure; an entry nobody renews
leaves "expired"; the leaves counted over all processes equal the presence.left events. Against real PostgreSQL,
lighttpd, imagetools.fcgi and the bridge."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Tap, Stack, wait_for  # noqa: E402
from sseclient import SSEStream  # noqa: E402
from wsclient import WsClient  # noqa: E402

tap = Tap()

TTL = 6  # presence_ttl: heartbeats every 2 s
GRACE = 5  # IT_PRESENCE_GRACE
FLUSH = 5  # seconds between two metrics flushes of a process
ENTRIES = "imagetools_presence_entries"
JOINS = "imagetools_presence_joins_total"
CLOSED = 'imagetools_presence_leaves_total{reason="closed"}'
EXPIRED = 'imagetools_presence_leaves_total{reason="expired"}'
FAILURES = "imagetools_presence_renew_failures_total"


def metrics(st):
    """Fetches /metrics and returns {sample: value}."""
    r = st.request("GET", "/api/v1/metrics")
    if r.status != 200:
        raise RuntimeError("metrics answered %d" % r.status)
    out = {}
    for line in r.body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def until(st, pred, timeout, what):
    """The first /metrics for which pred holds, or None (and a diagnostic) when none did in time."""
    try:
        return wait_for(lambda: (lambda m: m if pred(m) else None)(metrics(st)), timeout=timeout, interval=0.5,
                        what=what)
    except TimeoutError:
        m = metrics(st)
        tap.diag("no %s; presence samples: %r" % (what, {k: v for k, v in m.items() if "presence" in k}))
        return None


def listed(st, sid):
    r = st.request("GET", "/api/v1/presence", headers={"Authorization": "Bearer " + sid})
    return {e["client_id"] for e in r.json()["presence"]} if r.status == 200 else set()


# The worker sweeps too (in its housekeeping): every process that appends a presence.left counts it.
with Stack(tap, bridge=True, worker=True, settings={"presence_ttl": TTL}) as st:
    sid = st.new_session()
    auth = {"Authorization": "Bearer " + sid}
    m0 = metrics(st)
    tap.is_(m0.get(ENTRIES, 0), 0, "no presence entry is held before anyone connects")

    # ---------------------------------------------------------------- joined and held
    r = st.request("POST", "/api/v1/tokens", body={"scope": "view", "label": "Wall screen"}, headers=auth)
    tap.is_(r.status, 201, "a view token is minted")
    view = r.json()["token"]
    ws = WsClient.connect("127.0.0.1", st.bridge_port, "/api/v1/ws?client_id=screen-m",
                          headers={"Authorization": "Bearer " + view})
    tap.is_(ws.recv_json().get("type"), "connection.status", "the device's WebSocket is admitted by the bridge")
    tab = SSEStream(st.port, sid, path="/api/v1/events/stream?session_id=%s&client_id=tab-m" % sid)
    tap.is_(tab.status, 200, "a tab's SSE stream is admitted by imagetools.fcgi's hub")
    wait_for(lambda: {"screen-m", "tab-m"} <= listed(st, sid), timeout=15, what="both clients listed")

    # Each process flushes every few seconds: wait for both to have told.
    m1 = until(st, lambda m: m.get(ENTRIES, 0) >= 2 and m.get(JOINS, 0) >= m0.get(JOINS, 0) + 2,
               3 * FLUSH + 10, "two held entries and two joins")
    tap.ok(m1 is not None, "/metrics shows the two entries held (bridge and hub) and their two joins")
    if m1:
        tap.is_((m1.get(ENTRIES), m1.get(JOINS, 0) - m0.get(JOINS, 0)), (2.0, 2.0),
                "exactly two held and two joined: a client is one entry")
        tap.is_(m1.get(CLOSED, 0), m0.get(CLOSED, 0), "nobody has left yet")
    text = st.request("GET", "/api/v1/metrics").body.decode()
    tap.ok("# TYPE imagetools_presence_entries gauge" in text and "# TYPE %s counter" % JOINS in text,
           "the presence metrics carry their help and type")

    # ---------------------------------------------------------------- closed: left after the grace
    ws.close()
    tab.close()
    m2 = until(st, lambda m: m.get(CLOSED, 0) >= m0.get(CLOSED, 0) + 2 and m.get(ENTRIES, 0) == 0,
               GRACE + TTL + 3 * FLUSH + 10, "two closed leaves and no held entry")
    tap.ok(m2 is not None, "after the grace both leaves are counted (reason closed) and no entry is held any more")
    tap.ok(not ({"screen-m", "tab-m"} & listed(st, sid)), "and GET /presence agrees: they are gone")
    if m2:
        tap.is_(m2.get(CLOSED, 0) - m0.get(CLOSED, 0), 2.0, "each entry left once")

    # ---------------------------------------------------------------- the HTTP heartbeat and DELETE /presence
    base = metrics(st)
    r = st.request("POST", "/api/v1/presence", body={"client_id": "cli-m", "state": "idle"}, headers=auth)
    tap.is_(r.status, 204, "an HTTP heartbeat joins")
    r = st.request("POST", "/api/v1/presence", body={"client_id": "cli-m", "state": "uploading"}, headers=auth)
    tap.is_(r.status, 204, "a second heartbeat updates the entry")
    r = st.request("DELETE", "/api/v1/presence?client_id=cli-m", headers=auth)
    tap.is_(r.status, 204, "DELETE /presence lets it go now")
    m3 = until(st, lambda m: m.get(JOINS, 0) >= base.get(JOINS, 0) + 1 and m.get(CLOSED, 0) >= base.get(CLOSED, 0) + 1,
               2 * FLUSH + 10, "the heartbeat's join and the DELETE's leave")
    tap.ok(m3 is not None, "the heartbeat's join and DELETE /presence's leave are counted")
    if m3:
        tap.is_((m3.get(JOINS, 0) - base.get(JOINS, 0), m3.get(CLOSED, 0) - base.get(CLOSED, 0)), (1.0, 1.0),
                "once each: the second heartbeat joined nothing")

    # ---------------------------------------------------------------- a heartbeat the database refuses
    tab = SSEStream(st.port, sid, path="/api/v1/events/stream?session_id=%s&client_id=tab-f" % sid)
    wait_for(lambda: "tab-f" in listed(st, sid), timeout=15, what="the tab listed")
    before = metrics(st).get(FAILURES, 0)
    original = st.sql("SELECT pg_get_functiondef('it_presence_beat'::regproc)")
    st.sql("CREATE OR REPLACE FUNCTION it_presence_beat(p_holder text, p_ttl integer, p_sessions text[],"
           " p_clients text[]) RETURNS TABLE (session_id text, client_id text) LANGUAGE plpgsql AS $$"
           " BEGIN RAISE EXCEPTION 'heartbeats refused by the test'; END $$")
    try:
        m4 = until(st, lambda m: m.get(FAILURES, 0) > before, TTL + 2 * FLUSH + 10, "a renewal failure")
    finally:
        st.sql(original)
    tap.ok(m4 is not None, "a heartbeat statement that fails is counted in %s" % FAILURES)
    tab.close()

    # ---------------------------------------------------------------- expired, and each left counted once
    # An entry whose holder died (it stopped renewing it): whichever process sweeps it counts it expired.
    base = metrics(st)
    st.sql("INSERT INTO presence (session_id, client_id, label, source, transport, state, holder, expires_at)"
           " VALUES (:'p1', 'ghost-m', 'Ghost', 'web', 'websocket', 'connected', 'dead/1/x',"
           " now() - interval '1 second')", sid)
    m5 = until(st, lambda m: m.get(EXPIRED, 0) >= base.get(EXPIRED, 0) + 1, TTL + 2 * FLUSH + 10,
               "an expired leave")
    tap.ok(m5 is not None, "an entry its process stopped renewing is counted as left \"expired\" when swept")

    def left_events():
        return int(st.sql("SELECT count(*) FROM events WHERE type = 'presence.left'"
                          " AND payload->>'reason' IN ('closed', 'expired')"))

    def counted(m):
        return m.get(CLOSED, 0) + m.get(EXPIRED, 0)

    n = left_events()
    tap.ok(n >= 4, "the log holds the presence.left events of this test (%d)" % n)
    m6 = until(st, lambda m: counted(m) == left_events(), 2 * FLUSH + 10, "as many leaves as presence.left events")
    tap.ok(m6 is not None, "the leaves counted over every process (hub, bridge, worker, requests) equal the"
           " presence.left events in the log: each is counted once")

tap.done()
