"""test_events.py: long-poll and Server-Sent Events against real lighttpd + PostgreSQL:
order, exactly-once, resume, fan-out, isolation, disconnects, 500 streams, a PostgreSQL
restart, resync, session end, CGI mode and a second node on the same database."""

import json
import os
import subprocess
import threading
import time

from harness import Stack, Tap, wait_for
from sseclient import ManySSE, SSEStream

tap = Tap()


def append(st, sid, n, kind="image.uploaded"):
    """Commits n events in the session through the one SQL entry point (same NOTIFY path)."""
    sql = "".join("SELECT it_append_event(:'p1', '%s', '{\"n\": %d}'::jsonb);\n" % (kind, i) for i in range(n))
    st.sql(sql, sid)


def longpoll(st, sid, cursor, timeout=5):
    r = st.request("GET", "/api/v1/events?session_id=%s&cursor=%d&timeout=%d" % (sid, cursor, timeout),
                   timeout=timeout + 10)
    return r, (r.json() if r.status == 200 else None)


def health(st):
    return st.request("GET", "/api/v1/health").json()


with Stack(tap, own_cluster=True, settings={"keepalive_interval": 1}) as st:
    sid = st.new_session()
    other = st.new_session()

    # --- long-poll: immediate answers, waiting, timeout
    r, b = longpoll(st, sid, 0, timeout=0)
    tap.is_(b, {"events": [], "cursor": 0}, "long-poll with nothing to say answers at once with timeout=0")
    t0 = time.monotonic()
    r, b = longpoll(st, sid, 0, timeout=1)
    tap.ok(time.monotonic() - t0 >= 0.9, "long-poll waits for its timeout when nothing happens")
    tap.is_((b or {}).get("events"), [], "and then answers with no events")
    tap.is_(r.header("Content-Type"), "application/json", "long-poll answers JSON")

    got = {}
    th = threading.Thread(target=lambda: got.update(zip(("r", "b"), longpoll(st, sid, 0, timeout=10))))
    th.start()
    time.sleep(0.5)
    tap.ok(health(st)["hub"]["longpoll_waiters"] >= 1, "a waiting long-poll is parked on the hub")
    t0 = time.monotonic()
    append(st, sid, 1)
    th.join()
    tap.ok(time.monotonic() - t0 < 2.0, "a waiting long-poll answers as soon as an event commits")
    b = got.get("b") or {}
    tap.is_([e["id"] for e in b.get("events", [])], [1], "long-poll receives the new event")
    tap.is_(b.get("cursor"), 1, "cursor is the last id returned")
    ev = (b.get("events") or [{}])[0]
    tap.is_(sorted(ev.keys()), ["data", "id", "timestamp", "type"], "event has id, type, timestamp, data")
    tap.like(ev.get("timestamp", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", "timestamp format")

    append(st, sid, 3)
    r, b = longpoll(st, sid, 1)
    tap.is_([e["id"] for e in b["events"]], [2, 3, 4], "long-poll returns every missed event at once, in order")
    r, b = longpoll(st, sid, 4, timeout=1)
    tap.is_(b["events"], [], "nothing after the last id")

    # --- SSE: head, connection.status, live events, keepalive
    s1 = SSEStream(st.port, sid)
    tap.is_(s1.status, 200, "SSE answers 200")
    tap.is_((s1.content_type or "").split(";")[0], "text/event-stream", "SSE content type")
    hdrs = {k.lower(): v for k, v in s1.headers}
    tap.is_(hdrs.get("cache-control"), "no-cache", "SSE is not cached")
    tap.is_(hdrs.get("x-accel-buffering"), "no", "SSE tells proxies not to buffer")
    s1.read_until(lambda s: len(s.ids()) >= 4)
    tap.is_(s1.ids(), [1, 2, 3, 4], "a new SSE stream gets the session's log from the start")
    first = s1.parser.events[0]
    tap.is_(first["type"], "connection.status", "first event is connection.status")
    tap.is_(first["id"], "", "connection.status carries no id")
    tap.is_(s1.parser.retry, 3000, "retry hint sent")
    append(st, sid, 2)
    s1.read_until(lambda s: len(s.ids()) >= 6)
    tap.is_(s1.ids(), [1, 2, 3, 4, 5, 6], "live events arrive in order")
    tap.is_(s1.parser.last_event_id, "6", "Last-Event-ID follows the stored events")
    tap.ok(all(e["type"] == e["json"]["type"] for e in s1.parser.events), "event: line matches the JSON type")
    s1.read_until(lambda s: s.parser.comments >= 1, timeout=4)
    tap.ok(s1.parser.comments >= 1, "keepalive comments while idle")

    # --- resume
    s2 = SSEStream(st.port, sid, last_event_id=4)
    s2.read_until(lambda s: len(s.ids()) >= 2)
    tap.is_(s2.ids(), [5, 6], "Last-Event-ID resumes with exactly the missed events")
    s2.close()
    s3 = SSEStream(st.port, sid, query_id=5)
    s3.read_until(lambda s: len(s.ids()) >= 1)
    tap.is_(s3.ids(), [6], "last_event_id query parameter resumes too")
    s3.close()

    # --- fan-out and isolation
    fans = [SSEStream(st.port, sid, last_event_id=6) for _ in range(3)]
    iso = SSEStream(st.port, other)
    lp_res = {}
    th = threading.Thread(target=lambda: lp_res.update(zip(("r", "b"), longpoll(st, sid, 6, timeout=10))))
    th.start()
    time.sleep(0.3)
    append(st, sid, 5)
    append(st, other, 1, "image.deleted")
    th.join()
    for i, f in enumerate(fans):
        f.read_until(lambda s: len(s.ids()) >= 5)
        tap.is_(f.ids(), [7, 8, 9, 10, 11], "fan-out: client %d gets every event once, in order" % (i + 1))
    tap.ok(len(lp_res["b"]["events"]) >= 1 and lp_res["b"]["events"][0]["id"] == 7,
           "a long-poll on the same session is woken too")
    iso.read_until(lambda s: len(s.ids()) >= 1)
    tap.is_([(e["id"], e["type"]) for e in iso.stored()], [(1, "image.deleted")],
            "another session's stream sees only its own events")
    s1.read_until(lambda s: len(s.ids()) >= 11)
    tap.is_(s1.ids(), list(range(1, 12)), "the first stream still has everything, once")

    # --- disconnect releases the waiter
    before = health(st)["hub"]
    for f in fans:
        f.close()
    iso.close()
    wait_for(lambda: health(st)["hub"]["sse_streams"] <= before["sse_streams"] - 4, timeout=5,
             what="streams to be released")
    after = health(st)["hub"]
    tap.is_(after["sse_streams"], before["sse_streams"] - 4, "closed clients are released at once")
    tap.ok(after["released"] >= before["released"] + 4, "released counter counts them")

    # --- errors before streaming
    st.is_problem(st.request("GET", "/api/v1/events/stream?session_id=" + "Q" * 32), 404, "SSE unknown session")
    st.is_problem(st.request("GET", "/api/v1/events?session_id=" + "Q" * 32), 404, "long-poll unknown session")
    st.is_problem(st.request("GET", "/api/v1/events"), 400, "long-poll without session")
    st.is_problem(st.request("GET", "/api/v1/events?session_id=%s&cursor=-1" % sid), 400, "negative cursor")
    st.is_problem(st.request("GET", "/api/v1/events?session_id=%s&cursor=99999999999999999999999" % sid), 400,
                  "overflowing cursor")
    st.is_problem(st.request("GET", "/api/v1/events?session_id=%s&timeout=abc" % sid), 400, "bad timeout")
    st.is_problem(st.request("GET", "/api/v1/events/stream?session_id=%s" % sid, headers={"Last-Event-ID": "x"}),
                  400, "malformed Last-Event-ID")

    # --- resync: a cursor older than the log keeps, or ahead of it
    st.sql("DELETE FROM events WHERE session_id = :'p1' AND seq <= 5; "
           "UPDATE sessions SET first_kept_seq = 6 WHERE id = :'p1'", sid)
    r, b = longpoll(st, sid, 2)
    tap.is_([e["type"] for e in b["events"]], ["session.resync"], "expired cursor gets session.resync on long-poll")
    tap.ok("id" not in b["events"][0], "session.resync carries no id")
    tap.is_(b["cursor"], 11, "and the cursor to continue from")
    r, b = longpoll(st, sid, 500)
    tap.is_([e["type"] for e in b["events"]], ["session.resync"], "a cursor ahead of the log gets session.resync")
    s4 = SSEStream(st.port, sid, last_event_id=1)
    tap.is_(s4.status, 200, "SSE with an expired cursor still answers 200")
    s4.read_until(lambda s: any(e["type"] == "session.resync" for e in s.parser.events), timeout=5)
    tap.ok(any(e["type"] == "session.resync" for e in s4.parser.events), "SSE gets session.resync")
    append(st, sid, 1)
    s4.read_until(lambda s: len(s.ids()) >= 1)
    tap.is_(s4.ids(), [12], "then continues with new events only")
    s4.close()

    # --- the session ends: its streams end
    gone = st.new_session()
    s5 = SSEStream(st.port, gone)
    s5.read_until(lambda s: len(s.parser.events) >= 1)
    st.request("DELETE", "/api/v1/sessions/" + gone)
    s5.read_until(lambda s: False, timeout=3)
    tap.ok(s5.closed, "deleting a session closes its streams")
    s6 = SSEStream(st.port, gone)
    tap.is_(s6.status, 404, "reconnecting to it is 404")
    s6.close()

    # --- the session expires: its streams end at expiry
    short = st.new_session()
    st.sql("UPDATE sessions SET expires_at = now() + interval '2 seconds' WHERE id = :'p1'", short)
    s7 = SSEStream(st.port, short)
    lp7 = {}
    th = threading.Thread(target=lambda: lp7.update(zip(("r", "b"), longpoll(st, short, 0, timeout=20))))
    th.start()
    t0 = time.monotonic()
    s7.read_until(lambda s: False, timeout=6)
    th.join()
    tap.ok(s7.closed and time.monotonic() - t0 < 5, "an SSE stream ends when its session expires")
    tap.ok(lp7.get("b") == {"events": [], "cursor": 0}, "a waiting long-poll answers when its session expires")
    st.is_problem(st.request("GET", "/api/v1/events/stream?session_id=" + short), 404, "expired session")

    # --- streams joining from old cursors while events stream in: each gets exactly its next ones
    busy = st.new_session()
    append(st, busy, 50)
    flowing = {"stop": False}

    def writer():
        while not flowing["stop"]:
            append(st, busy, 3)

    wt = threading.Thread(target=writer)
    wt.start()
    joiners = []
    for k in range(24):
        joiners.append((k * 2, SSEStream(st.port, busy, last_event_id=k * 2)))
        time.sleep(0.05)
    time.sleep(1.0)
    flowing["stop"] = True
    wt.join()
    last = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", busy))
    bad = 0
    for start, j in joiners:
        j.read_until(lambda s: s.ids() and s.ids()[-1] >= last, timeout=15)
        if j.ids() != list(range(start + 1, last + 1)):
            bad += 1
            tap.diag("joined after %d, got %r" % (start, j.ids()[:12]))
        j.close()
    tap.is_(bad, 0, "24 streams joining at different cursors under a stream of events each get exactly "
            "their next events, in order")

    # --- concurrent streams per session are capped (max_streams_per_session = 64)
    crowd = st.new_session()
    many = ManySSE(st.port, [crowd] * 70)
    many.pump_until(lambda: sum(1 for s in many.streams if s["closed"]) >= 6, 15)
    tap.is_(sum(1 for s in many.streams if s["closed"]), 6, "streams past the per-session cap are ended")
    tap.ok(all(s["parser"].retry == 5000 for s in many.streams if s["closed"]), "with a retry hint")
    many.close()

    # --- 500 concurrent streams while events flow
    sessions = [st.new_session() for _ in range(10)]
    many = ManySSE(st.port, [sessions[i % 10] for i in range(500)])
    ok = many.pump_until(lambda: all(s["status"] == 200 and s["parser"].events for s in many.streams), 30)
    tap.ok(ok, "500 SSE streams open")
    tap.ok(health(st)["hub"]["sse_streams"] >= 500, "all 500 parked on the hub")
    for round_ in range(5):
        for s in sessions:
            append(st, s, 2)
    want = list(range(1, 11))
    ok = many.pump_until(lambda: all(ManySSE.ids(s) == want for s in many.streams), 60)
    bad = [i for i, s in enumerate(many.streams) if ManySSE.ids(s) != want]
    tap.ok(ok and not bad, "500 streams each got their session's 10 events exactly once, in order")
    if bad:
        tap.diag("first bad stream %d got %r" % (bad[0], ManySSE.ids(many.streams[bad[0]])))
    many.close()
    wait_for(lambda: health(st)["hub"]["sse_streams"] <= 2, timeout=15, what="the 500 streams to be released")
    tap.ok(health(st)["hub"]["sse_streams"] <= 2, "all released after the clients left")

    # --- PostgreSQL restarts under open streams while events keep coming
    rs = st.new_session()
    watchers = [SSEStream(st.port, rs) for _ in range(3)]
    for w in watchers:
        w.read_until(lambda s: len(s.parser.events) >= 1)
    append(st, rs, 3)
    st.pg.stop()
    time.sleep(1.0)
    st.pg.start()
    wait_for(lambda: health(st)["hub"]["listening"], timeout=20, what="the hub to listen again")
    append(st, rs, 3)
    for i, w in enumerate(watchers):
        w.read_until(lambda s: len(s.ids()) >= 6, timeout=20)
        tap.is_(w.ids(), [1, 2, 3, 4, 5, 6], "after a PostgreSQL restart stream %d has every event once" % (i + 1))
    statuses = [e["json"]["data"]["status"] for e in watchers[0].parser.events if e["type"] == "connection.status"]
    tap.ok("degraded" in statuses and statuses[-1] == "connected",
           "clients were told degraded, then connected (%s)" % ",".join(statuses))
    for w in watchers:
        w.close()

    # --- CGI mode: the same binary, one request per process
    env = st.env()
    env.update({"REQUEST_METHOD": "GET", "REQUEST_URI": "/api/v1/events?session_id=%s&cursor=0&timeout=0" % rs,
                "QUERY_STRING": "session_id=%s&cursor=0&timeout=0" % rs, "REMOTE_ADDR": "127.0.0.1"})
    p = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=30)
    body = p.stdout.split(b"\r\n\r\n", 1)[-1]
    tap.is_([e["id"] for e in json.loads(body)["events"]], [1, 2, 3, 4, 5, 6], "CGI long-poll returns events")

    env["QUERY_STRING"] = "session_id=%s&cursor=6&timeout=10" % rs
    env["REQUEST_URI"] = "/api/v1/events?" + env["QUERY_STRING"]
    cgi = subprocess.Popen([st.bin("cgi-bin/imagetools.fcgi")], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE)
    time.sleep(1.0)
    t0 = time.monotonic()
    append(st, rs, 1)
    out, _ = cgi.communicate(timeout=20)
    tap.ok(time.monotonic() - t0 < 3, "a waiting CGI long-poll is woken by NOTIFY")
    tap.is_([e["id"] for e in json.loads(out.split(b"\r\n\r\n", 1)[-1])["events"]], [7],
            "and returns the new event")

    env_cap = dict(env)
    env_cap["QUERY_STRING"] = "session_id=%s&cursor=7&timeout=10" % rs
    env_cap["REQUEST_URI"] = "/api/v1/events?" + env_cap["QUERY_STRING"]
    env_cap["IMAGETOOLS_CGI_MAX_WAITERS"] = "0"
    p = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], env=env_cap, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    b = json.loads(p.stdout.split(b"\r\n\r\n", 1)[-1])
    tap.ok(b.get("retry_after_ms", 0) > 0 and b["events"] == [], "past the waiter cap a CGI long-poll answers "
           "at once with a retry hint")
    tap.like(p.stdout.decode(errors="replace"), r"^Status: 200", "and still 200, not an error")

    env_sse = dict(env)
    env_sse["QUERY_STRING"] = "session_id=%s" % rs
    env_sse["REQUEST_URI"] = "/api/v1/events/stream?session_id=%s" % rs
    env_sse["HTTP_LAST_EVENT_ID"] = "5"
    env_sse["IMAGETOOLS_CGI_STREAM_LIFETIME"] = "5"
    p = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], env=env_sse, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    from sseclient import SSEParser
    sp = SSEParser()
    sp.feed(p.stdout.split(b"\r\n\r\n", 1)[-1])
    tap.is_([e["json"]["id"] for e in sp.events if e["json"] and "id" in e["json"]], [6, 7],
            "CGI SSE resumes after Last-Event-ID and ends after its lifetime")

    # --- a second node (its own lighttpd and FastCGI process) on the same database
    with Stack(tap, pg=st.pg, dbname=st.dbname) as node_b:
        nb = SSEStream(node_b.port, rs, last_event_id=7)
        time.sleep(0.3)
        append(st, rs, 2)
        nb.read_until(lambda s: len(s.ids()) >= 2)
        tap.is_(nb.ids(), [8, 9], "events committed through one node reach a stream on the other")
        nb.close()

tap.done()
