"""test_bridge_streams.py: SSE and long-poll served by the bridge on its own port, through the same
delivery core as its WebSockets: the answers of imagetools.fcgi (heads, problems, retry hint,
keepalives), order and exactly-once, resume, resync, unknown sessions, a deleted session ending the
stream, a PostgreSQL restart losing nothing, CORS for a listed origin and rate_streams. Then the
same requests to both servers: every refusal (unknown session, bad cursor, wrong origin, method,
rate limit) and every CORS answer, preflights included, is the one imagetools.fcgi gives, and the
credential may come as Authorization: Bearer. Scoped tokens likewise: view and full tokens follow
the session on both servers; upload-only, forged, truncated and unknown tokens get the same
problem (403 insufficient-scope, 401 invalid-token) and the same WWW-Authenticate from both."""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Stack, Tap, http_get, wait_for  # noqa: E402
from sseclient import SSEStream  # noqa: E402

tap = Tap()


def append(st, sid, n):
    sql = "".join("SELECT it_append_event(:'p1', 'image.uploaded', '{\"n\": %d}'::jsonb);\n" % i for i in range(n))
    st.sql(sql, sid)


def get(st, path, headers=None, timeout=30, method="GET", port=None):
    """A GET (or method) to the bridge's own port (or port)."""
    return http_get(port or st.bridge_port, path, headers, timeout, method)


# The headers whose values must be the same from both servers.
SAME_HEADERS = ("content-type", "cache-control", "allow", "vary", "www-authenticate", "access-control-allow-origin",
                "access-control-allow-methods", "access-control-allow-headers", "access-control-max-age",
                "access-control-expose-headers", "x-content-type-options")


def same_answer(st, method, path, headers, name, ignore=()):
    """The same request to imagetools.fcgi (through lighttpd) and to the bridge: the same status,
    the same headers of SAME_HEADERS and the same problem body (but for the members in ignore)."""
    f = get(st, path, headers=headers, method=method, port=st.port)
    b = get(st, path, headers=headers, method=method)
    tap.is_(b.status, f.status, name + ": status %d from both" % f.status)
    diff = [h for h in SAME_HEADERS if f.headers.get(h) != b.headers.get(h)]
    tap.ok(not diff, name + ": the same headers (%s)" % "; ".join(
        "%s: fcgi %r, bridge %r" % (h, f.headers.get(h), b.headers.get(h)) for h in diff))
    if f.headers.get("content-type") == "application/problem+json":
        fj, bj = f.json(), b.json()
        for k in ignore:
            fj.pop(k, None)
            bj.pop(k, None)
        tap.is_(bj, fj, name + ": the same problem")
    return f, b


def longpoll(st, sid, cursor, timeout=5):
    r = get(st, "/api/v1/events?session_id=%s&cursor=%d&timeout=%d" % (sid, cursor, timeout), timeout=timeout + 10)
    return r, (r.json() if r.status == 200 else None)


def ids(b):
    return [e["id"] for e in (b or {}).get("events", []) if "id" in e]


def problem(r, status, slug, name):
    tap.is_(r.status, status, name + ": status %d" % status)
    tap.is_(r.headers.get("content-type"), "application/problem+json", name + ": problem+json")
    try:
        body = r.json()
    except ValueError:
        body = {}
    tap.is_(body.get("type"), "urn:imagetools:problem:" + slug, name + ": type " + slug)
    tap.ok(body.get("status") == status and body.get("title") and body.get("instance", "").startswith("/api/v1/events"),
           name + ": title, status and instance")


with Stack(tap, own_cluster=True, bridge=True,
           settings={"keepalive_interval": 1, "allowed_origins": "https://app.example",
                     "server_names": '"127.0.0.1 localhost"'}) as st:
    sid = st.new_session()

    # --- long-poll
    r, b = longpoll(st, sid, 0, timeout=0)
    tap.is_(b, {"events": [], "cursor": 0}, "long-poll with nothing to say answers at once with timeout=0")
    tap.is_(r.headers.get("content-type"), "application/json", "long-poll answers JSON")
    tap.is_(r.headers.get("cache-control"), "no-store", "long-poll answers are not stored")
    got = {}
    th = threading.Thread(target=lambda: got.update(zip(("r", "b"), longpoll(st, sid, 0, timeout=10))))
    th.start()
    time.sleep(0.5)
    append(st, sid, 1)
    th.join()
    tap.is_(ids(got.get("b")), [1], "a waiting long-poll answers with the event that committed")
    tap.is_((got.get("b") or {}).get("cursor"), 1, "cursor is the last id returned")
    append(st, sid, 3)
    r, b = longpoll(st, sid, 1)
    tap.is_(ids(b), [2, 3, 4], "long-poll returns every missed event at once, in order")
    t0 = time.monotonic()
    r, b = longpoll(st, sid, 4, timeout=1)
    tap.ok(b == {"events": [], "cursor": 4} and time.monotonic() - t0 >= 0.9,
           "nothing after the last id: answered empty at the timeout")

    # --- SSE
    s1 = SSEStream(st.bridge_port, sid)
    tap.is_(s1.status, 200, "SSE answers 200")
    tap.is_((s1.content_type or "").split(";")[0], "text/event-stream", "SSE content type")
    hd = {k.lower(): v for k, v in s1.headers}
    tap.is_(hd.get("cache-control"), "no-cache", "SSE is not cached")
    tap.is_(hd.get("x-accel-buffering"), "no", "SSE tells proxies not to buffer")
    s1.read_until(lambda s: len(s.ids()) >= 4)
    tap.is_(s1.ids(), [1, 2, 3, 4], "a new SSE stream gets the session's log from the start")
    first = s1.parser.events[0]
    tap.ok(first["type"] == "connection.status" and first["id"] == ""
           and first["json"]["data"] == {"status": "connected", "transport": "sse"},
           "first event is connection.status connected, without id")
    tap.is_(s1.parser.retry, 3000, "retry hint sent")
    append(st, sid, 2)
    s1.read_until(lambda s: len(s.ids()) >= 6)
    tap.is_(s1.ids(), [1, 2, 3, 4, 5, 6], "live events arrive in order, once")
    s1.read_until(lambda s: b": keepalive" in s.body, timeout=5)
    tap.ok(b": keepalive" in s1.body, "keepalive comments while idle")

    s2 = SSEStream(st.bridge_port, sid, last_event_id=4)
    s3 = SSEStream(st.bridge_port, sid, query_id=5)
    s2.read_until(lambda s: len(s.ids()) >= 2)
    s3.read_until(lambda s: len(s.ids()) >= 1)
    append(st, sid, 1)
    s2.read_until(lambda s: len(s.ids()) >= 3)
    s3.read_until(lambda s: len(s.ids()) >= 2)
    s1.read_until(lambda s: len(s.ids()) >= 7)
    tap.is_(s2.ids(), [5, 6, 7], "Last-Event-ID 4 resumes with exactly 5, 6, then 7")
    tap.is_(s3.ids(), [6, 7], "last_event_id=5 in the query resumes with 6, then 7")
    tap.is_(s1.ids(), list(range(1, 8)), "the first stream got 7 once as well")
    for s in (s2, s3):
        s.close()

    # --- resync: pruned and ahead
    st.sql("DELETE FROM events WHERE session_id = :'p1' AND seq < 4;"
           "UPDATE sessions SET first_kept_seq = 4 WHERE id = :'p1'", sid)
    s4 = SSEStream(st.bridge_port, sid, last_event_id=1)
    s4.read_until(lambda s: len(s.parser.events) >= 2)
    ev = s4.parser.events[1] if len(s4.parser.events) > 1 else {"type": None, "id": None, "json": {}}
    tap.ok(ev["type"] == "session.resync" and ev["id"] == ""
           and ev["json"]["data"] == {"reason": "cursor-expired", "last_event_id": 7},
           "SSE: a pruned cursor gets session.resync cursor-expired to 7, without id")
    tap.ok(not s4.read_until(lambda s: len(s.ids()) > 0, timeout=0.5), "and no stale events after it")
    s4.close()
    r, b = longpoll(st, sid, 1)
    tap.ok(b and b["cursor"] == 7 and len(b["events"]) == 1 and b["events"][0]["type"] == "session.resync"
           and b["events"][0]["data"]["reason"] == "cursor-expired", "long-poll: a pruned cursor gets the resync")
    r, b = longpoll(st, sid, 500)
    tap.ok(b and b["cursor"] == 7 and b["events"][0]["type"] == "session.resync"
           and b["events"][0]["data"] == {"reason": "cursor-ahead", "last_event_id": 7},
           "long-poll: a cursor ahead gets session.resync cursor-ahead")

    # --- refusals, with the FastCGI app's problems
    problem(get(st, "/api/v1/events?session_id=" + "A" * 43), 404, "unknown-session", "long-poll of an unknown session")
    problem(get(st, "/api/v1/events/stream?session_id=" + "A" * 43), 404, "unknown-session", "SSE of an unknown session")
    problem(get(st, "/api/v1/events/stream?session_id=bad!"), 400, "invalid-session-id", "SSE of a malformed id")
    problem(get(st, "/api/v1/events"), 400, "missing-session-id", "long-poll without session_id")
    problem(get(st, "/api/v1/events?session_id=%s&cursor=x" % sid), 400, "invalid-cursor", "long-poll with a bad cursor")
    r = get(st, "/api/v1/events?timeout=0&session_id=" + sid, headers={"Host": "evil.example"})
    tap.is_(r.status, 421, "a Host not in server_names is 421")

    # --- CORS: the Origin rule of every server
    r = get(st, "/api/v1/events?timeout=0&session_id=" + sid, headers={"Origin": "https://app.example"})
    tap.ok(r.status == 200 and r.headers.get("access-control-allow-origin") == "https://app.example"
           and r.headers.get("vary") == "Origin", "a listed origin gets Access-Control-Allow-Origin")
    r = get(st, "/api/v1/events?timeout=0&session_id=" + sid, headers={"Origin": "https://evil.example"})
    tap.ok(r.status == 200 and "access-control-allow-origin" not in r.headers,
           "an unlisted origin is answered without CORS headers")

    # --- the same answers as imagetools.fcgi
    unknown = "A" * 43
    for method, path, headers, name in (
            ("GET", "/api/v1/events?session_id=" + unknown, {}, "long-poll of an unknown session"),
            ("GET", "/api/v1/events/stream?session_id=" + unknown, {}, "SSE of an unknown session"),
            ("GET", "/api/v1/events", {}, "long-poll without a credential"),
            ("GET", "/api/v1/events?timeout=0", {"Authorization": "Bearer " + unknown},
             "long-poll of an unknown Bearer credential"),
            ("GET", "/api/v1/events/stream", {"Authorization": "Bearer bad!"}, "SSE of a malformed Bearer credential"),
            ("GET", "/api/v1/events?timeout=0&cursor=99", {"Authorization": "Bearer " + sid},
             "long-poll with a Bearer credential, cursor ahead"),
            ("GET", "/api/v1/events/stream?session_id=bad!", {}, "SSE of a malformed id"),
            ("GET", "/api/v1/events?session_id=%s&cursor=x" % sid, {}, "long-poll with a bad cursor"),
            ("GET", "/api/v1/events?session_id=%s&cursor=-1" % sid, {}, "long-poll with a negative cursor"),
            ("GET", "/api/v1/events?session_id=%s&timeout=soon" % sid, {}, "long-poll with a bad timeout"),
            ("GET", "/api/v1/events/stream?session_id=%s&last_event_id=1e3" % sid, {}, "SSE with a bad last_event_id"),
            ("GET", "/api/v1/events/stream?session_id=" + sid, {"Last-Event-ID": "x"}, "SSE with a bad Last-Event-ID"),
            ("POST", "/api/v1/events?session_id=" + sid, {"Content-Length": "0"}, "POST to the long-poll"),
            ("DELETE", "/api/v1/events/stream?session_id=" + sid, {}, "DELETE on the stream"),
            ("POST", "/api/v1/events?session_id=" + sid, {"Origin": "https://evil.example", "Content-Length": "0"},
             "POST from an unlisted origin"),
            ("GET", "/api/v1/events?timeout=0&session_id=" + sid, {"Origin": "https://app.example"},
             "a listed origin's long-poll"),
            ("GET", "/api/v1/events?timeout=0&session_id=" + sid, {"Origin": "https://evil.example"},
             "an unlisted origin's long-poll"),
            ("OPTIONS", "/api/v1/events/stream", {"Origin": "https://app.example", "Access-Control-Request-Method": "GET",
                                                  "Access-Control-Request-Headers": "cache-control,last-event-id"},
             "a listed origin's preflight"),
            ("OPTIONS", "/api/v1/events", {"Origin": "http://localhost", "Host": "localhost",
                                           "Access-Control-Request-Method": "GET",
                                           "Access-Control-Request-Headers": "authorization"},
             "a same-origin preflight"),
            ("OPTIONS", "/api/v1/events", {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
             "an unlisted origin's preflight"),
            ("OPTIONS", "/api/v1/events", {}, "OPTIONS without Origin")):
        same_answer(st, method, path, headers, name)
    r = get(st, "/api/v1/events/stream", method="OPTIONS", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "cache-control,x-requested-with"})
    tap.ok(r.status == 204 and {"cache-control", "x-requested-with"} <= {
        h.strip().lower() for h in r.headers.get("access-control-allow-headers", "").split(",")},
        "the bridge's preflight allows what Dropzone sends")
    r = get(st, "/api/v1/events?timeout=0&session_id=" + sid, headers={"Origin": "https://app.example"})
    tap.ok("Retry-After" in r.headers.get("access-control-expose-headers", "")
           and "Location" in r.headers.get("access-control-expose-headers", ""),
           "a listed origin may read the headers imagetools.fcgi exposes")
    r, b = (lambda r: (r, r.json() if r.status == 200 else None))(
        get(st, "/api/v1/events?timeout=0&cursor=6", headers={"Authorization": "Bearer " + sid}))
    tap.is_(ids(b), [7], "the credential as Authorization: Bearer")
    r = get(st, "/api/v1/events?timeout=0&cursor=6&session_id=" + sid, headers={"Authorization": "Basic dTpw"})
    tap.is_(ids(r.json() if r.status == 200 else None), [7], "another scheme is passed over for ?session_id=")
    problem(get(st, "/api/v1/events?timeout=0", headers={"Authorization": "Bearer " + unknown}), 404,
            "unknown-session", "an unknown Bearer credential")
    problem(get(st, "/api/v1/events?timeout=0", headers={"Authorization": "Bearer bad!"}), 400,
            "invalid-session-id", "a malformed Bearer credential")

    # --- scoped tokens: the same answers from both servers
    def mint(scope, label):
        r = st.request("POST", "/api/v1/tokens", body={"scope": scope, "label": label},
                       headers={"Authorization": "Bearer " + sid})
        return r.json()["token"] if r.status == 201 else "itk." + "Z" * 32

    view_tok, upload_tok, full_tok = mint("view", "Viewer"), mint("upload", "Phone"), mint("full", "Laptop")
    newest = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    for method, path, headers, name in (
            ("GET", "/api/v1/events?timeout=0&cursor=%d" % (newest - 1), {"Authorization": "Bearer " + view_tok},
             "long-poll with a view token"),
            ("GET", "/api/v1/events?timeout=0&cursor=%d&session_id=%s" % (newest - 1, full_tok), {},
             "long-poll with a full token in the query"),
            ("GET", "/api/v1/events?timeout=0", {"Authorization": "Bearer " + upload_tok},
             "long-poll with an upload-only token"),
            ("GET", "/api/v1/events/stream?session_id=" + upload_tok, {}, "SSE with an upload-only token"),
            ("GET", "/api/v1/events?timeout=0", {"Authorization": "Bearer itk." + "Q" * 32},
             "long-poll with an unknown token"),
            ("GET", "/api/v1/events/stream", {"Authorization": "Bearer " + view_tok[:20]}, "SSE with a truncated token"),
            ("GET", "/api/v1/events?timeout=0&session_id=itk.", {}, "long-poll with a bare token prefix"),
            ("GET", "/api/v1/events?timeout=0&cursor=x", {"Authorization": "Bearer " + view_tok},
             "a token with a bad cursor")):
        f, b = same_answer(st, method, path, headers, name)
        if name.startswith("long-poll with a") and f.status == 200:
            # A token's connection joins presence, and its presence.joined is
            # appended when the loop gets to it: compare the events that were
            # there before the requests.
            tap.is_([i for i in ids(b.json()) if i <= newest], [i for i in ids(f.json()) if i <= newest],
                    name + ": the same events")
    tap.ok(same_answer(st, "GET", "/api/v1/events?timeout=0", {"Authorization": "Bearer " + upload_tok},
                       "upload-only token again")[0].status == 403, "an upload-only token is 403 on events")

    # --- a deleted session ends its streams
    doomed = st.new_session()
    s5 = SSEStream(st.bridge_port, doomed)
    s5.read_until(lambda s: len(s.parser.events) >= 1)
    got = {}
    th = threading.Thread(target=lambda: got.update(zip(("r", "b"), longpoll(st, doomed, 0, timeout=20))))
    th.start()
    time.sleep(0.5)
    r = st.request("DELETE", "/api/v1/sessions/" + doomed)
    tap.ok(r.status in (200, 204), "session deleted through the API")
    tap.ok(s5.read_until(lambda s: s.closed, timeout=10), "the SSE stream of a deleted session ends")
    th.join(15)
    tap.ok(got.get("b") == {"events": [], "cursor": 0}, "a waiting long-poll of a deleted session is answered")
    s5.close()
    s1.close()

    # --- PostgreSQL restarts under open streams while events keep coming
    rs = st.new_session()
    watchers = [SSEStream(st.bridge_port, rs) for _ in range(3)]
    for w in watchers:
        w.read_until(lambda s: len(s.parser.events) >= 1)
    append(st, rs, 3)
    for w in watchers:
        w.read_until(lambda s: len(s.ids()) >= 3)
    st.pg.stop()
    # New requests meanwhile are answered as imagetools.fcgi answers them: a long-poll 503, an
    # SSE stream a short one that says degraded and asks to come back (EventSource gives up
    # for good on any other status).
    lp_path = "/api/v1/events?timeout=0&session_id=" + rs
    try:
        wait_for(lambda: get(st, lp_path).status == 503, timeout=15, interval=0.2, what="the bridge to notice")
    except TimeoutError:
        pass
    same_answer(st, "GET", lp_path, {}, "long-poll while the database is down")
    for name, port in (("imagetools.fcgi", st.port), ("bridge", st.bridge_port)):
        d = SSEStream(port, rs)
        d.read_until(lambda s: s.closed, timeout=15)
        tap.ok(d.status == 200 and d.closed and d.parser.retry == 5000
               and [(e["type"], e["json"]["data"]) for e in d.parser.events]
               == [("connection.status", {"status": "degraded", "transport": "sse"})],
               "%s: a new SSE stream while the database is down: 200, retry 5000, degraded, end" % name)
        d.close()
    time.sleep(1.0)
    st.pg.start()
    wait_for(lambda: st.request("GET", "/api/v1/health").status == 200, timeout=20, what="the database")
    append(st, rs, 3)
    for i, w in enumerate(watchers):
        w.read_until(lambda s: len(s.ids()) >= 6, timeout=20)
        tap.is_(w.ids(), [1, 2, 3, 4, 5, 6], "after a PostgreSQL restart stream %d has every event once" % (i + 1))
    statuses = [e["json"]["data"]["status"] for e in watchers[0].parser.events if e["type"] == "connection.status"]
    tap.ok("degraded" in statuses and statuses[-1] == "connected",
           "clients were told degraded, then connected (%s)" % ",".join(statuses))
    for w in watchers:
        w.close()

with Stack(tap, bridge=True, settings={"rate_streams": 2}) as st:
    sid = st.new_session()
    streams = [SSEStream(port, sid) for port in (st.bridge_port, st.bridge_port, st.port, st.port)]
    r = get(st, "/api/v1/events/stream?session_id=" + sid)
    tap.is_(r.status, 429, "rate_streams: the third stream in a minute is 429")
    tap.ok(r.headers.get("retry-after", "").isdigit(), "with Retry-After")
    tap.ok(r.json().get("retry_after") == int(r.headers.get("retry-after", "-1")),
           "and retry_after in the problem, as Retry-After says")
    # The seconds to wait differ by when each server's window began.
    same_answer(st, "GET", "/api/v1/events/stream?session_id=" + sid, {}, "rate_streams",
                ignore=("retry_after", "detail"))
    for s in streams:
        s.close()

tap.done()
