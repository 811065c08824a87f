"""test_security.py: rate limits shared by processes and nodes, Origin and CORS, the Host allow-list
(server_names), Range requests passing lighttpd untouched, security headers, log redaction and
/metrics across processes, against real lighttpd + PostgreSQL."""

import json
import os
import re
import socket
import subprocess
import threading
import time

from harness import Stack, Tap, wait_for
from uploads_util import multipart, png_bytes, read_to_end
from worker_util import _multipart, jpeg_bytes, put_image, start_operation, wait_operation
from wsclient import HandshakeError, WsClient

tap = Tap()

ALLOWED = "https://app.example moz-extension://0b7e3c1a-addon"
SETTINGS = {"rate_sessions": 3, "rate_streams": 3, "rate_uploads": 4, "rate_operations": 2, "max_session_bytes": 100000, "allowed_origins": '"%s"' % ALLOWED, "keepalive_interval": 1}


def post_session(st, headers=None):
    h = {"Content-Length": "0"}
    h.update(headers or {})
    return st.request("POST", "/api/v1/sessions", body=b"", headers=h)


def stream_head(port, sid, extra=""):
    """Opens an SSE stream over a raw socket and returns (status, head text), then hangs up."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(("GET /api/v1/events/stream?session_id=%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s"
                   "Connection: close\r\n\r\n" % (sid, extra)).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace")
        m = re.match(r"HTTP/1\.\d (\d+)", head)
        return (int(m.group(1)) if m else 0), head
    finally:
        s.close()


def metrics(st, headers=None):
    """Fetches /metrics and returns {sample: value} (value as float)."""
    r = st.request("GET", "/api/v1/metrics", headers=headers)
    if r.status != 200:
        raise RuntimeError("metrics answered %d" % r.status)
    out = {}
    for line in r.body.decode().splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


def cgi(st, method, uri, extra_env=None, headers=None):
    env = st.env()
    env.update({"REQUEST_METHOD": method, "REQUEST_URI": uri, "QUERY_STRING": uri.partition("?")[2],
                "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1", "HTTP_HOST": "127.0.0.1",
                "CONTENT_LENGTH": "0"})
    env.update(extra_env or {})
    for k, v in (headers or {}).items():
        env["HTTP_" + k.upper().replace("-", "_")] = v
    p = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    m = re.match(r"Status: (\d+)", out)
    return (int(m.group(1)) if m else 0), out


with Stack(tap, settings=SETTINGS, fcgi_procs=2) as st:
    origin_self = "http://127.0.0.1:%d" % st.port
    sessions_before = int(st.sql("SELECT count(*) FROM sessions"))

    # ---------------------------------------------------------------- Origin and CORS
    r = st.request("OPTIONS", "/api/v1/sessions", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    tap.is_(r.status, 204, "preflight from an allowed origin: 204")
    tap.is_(r.header("Access-Control-Allow-Origin"), "https://app.example", "preflight echoes the origin")
    tap.like(r.header("Access-Control-Allow-Methods") or "", r"\bPOST\b.*\bDELETE\b", "preflight lists the methods")
    tap.like(r.header("Access-Control-Allow-Headers") or "", r"Last-Event-ID", "preflight allows Last-Event-ID")
    tap.like(r.header("Access-Control-Max-Age") or "", r"^\d+$", "preflight has a max-age")
    tap.is_(r.header("Vary"), "Origin", "answers that depend on Origin say so")

    r = st.request("OPTIONS", "/api/v1/events/stream?session_id=x", headers={
        "Origin": "moz-extension://0b7e3c1a-addon", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "last-event-id"})
    tap.is_(r.status, 204, "preflight from the browser add-on's extension origin (listed)")
    tap.is_(r.header("Access-Control-Allow-Origin"), "moz-extension://0b7e3c1a-addon", "extension origin echoed")

    r = st.request("OPTIONS", "/api/v1/sessions", headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    st.is_problem(r, 403, "preflight from an unlisted origin")
    tap.is_(r.header("Access-Control-Allow-Origin"), None, "no Access-Control-Allow-Origin for it")

    r = post_session(st, {"Origin": "https://evil.example"})
    st.is_problem(r, 403, "POST from an unlisted origin is refused")
    r = post_session(st, {"Origin": "https://app.example.evil.example"})
    st.is_problem(r, 403, "an origin that merely starts with a listed one is refused")
    r = post_session(st, {"Origin": "null"})
    st.is_problem(r, 403, "the opaque origin null is refused")
    tap.is_(int(st.sql("SELECT count(*) FROM sessions")), sessions_before, "refused requests stored nothing")

    r = post_session(st, {"Origin": origin_self})
    tap.is_(r.status, 201, "POST from the site's own origin (Origin host = Host) is allowed")
    tap.is_(r.header("Access-Control-Allow-Origin"), None, "same-origin answers need no CORS header")
    sid = r.json()["session_id"]
    r = post_session(st, {"Origin": "https://app.example"})
    tap.is_(r.status, 201, "POST from an allowed origin is allowed")
    tap.is_(r.header("Access-Control-Allow-Origin"), "https://app.example", "and carries Allow-Origin")
    tap.like(r.header("Access-Control-Expose-Headers") or "", "Retry-After", "Retry-After is readable cross-origin")
    r = post_session(st)
    tap.is_(r.status, 201, "a request without Origin (curl, the Android app) is allowed")

    r = st.request("DELETE", "/api/v1/sessions/" + sid, headers={"Origin": "https://evil.example"})
    st.is_problem(r, 403, "DELETE from an unlisted origin is refused")
    tap.is_(st.request("GET", "/api/v1/sessions/" + sid).status, 200, "and the session is still there")
    r = st.request("GET", "/api/v1/sessions/" + sid, headers={"Origin": "https://evil.example"})
    tap.is_(r.status, 200, "a GET from an unlisted origin is answered")
    tap.is_(r.header("Access-Control-Allow-Origin"), None, "but without Allow-Origin, so its page cannot read it")
    tap.is_(r.header("X-Content-Type-Options"), "nosniff", "API answers carry nosniff")

    # The static web page gets a strict policy from the web server.
    status, headers, _ = st.curl("-s", st.url + "/")
    tap.like(headers, r"(?im)^Content-Security-Policy: default-src 'self';.*frame-ancestors 'none'",
             "static pages carry a strict Content-Security-Policy")
    tap.like(headers, r"(?im)^Content-Security-Policy:(?!.*unsafe-inline)", "which allows no inline script")
    tap.like(headers, r"(?im)^X-Frame-Options: DENY", "static pages refuse framing")
    status, headers, _ = st.curl("-s", st.url + "/api/v1/health")
    tap.ok("Content-Security-Policy" not in headers, "the page's policy is not put on API answers")

    # ---------------------------------------------------------------- rate limits: sessions
    st.sql("DELETE FROM rate_limits")
    before = int(st.sql("SELECT count(*) FROM sessions"))
    results = []
    lock = threading.Lock()

    def create():
        r = post_session(st)
        with lock:
            results.append(r)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    codes = sorted(r.status for r in results)
    tap.is_(codes, [201] * 3 + [429] * 5, "8 concurrent creations over 2 processes: exactly 3 pass (rate_sessions=3)")
    tap.is_(int(st.sql("SELECT count(*) FROM sessions")), before + 3, "only the allowed ones stored a session")
    limited = [r for r in results if r.status == 429]
    body = st.is_problem(limited[0], 429, "over the limit") if limited else None
    tap.is_((body or {}).get("type"), "urn:imagetools:problem:rate-limited", "problem type rate-limited")
    ra = limited[0].header("Retry-After") if limited else None
    tap.like(ra or "", r"^\d+$", "429 carries Retry-After in seconds")
    # 3 per minute: one token every 20 s, so the wait is at most 20 s and at least 1.
    tap.ok(ra and 1 <= int(ra) <= 20, "Retry-After is the time until a token is back (%s s)" % ra)

    # The limit holds across nodes and CGI processes: they share the bucket.
    with Stack(tap, settings=SETTINGS, pg=st.pg, dbname=st.dbname) as node_b:
        st.is_problem(post_session(node_b), 429, "a second node shares the same bucket")
        status, out = cgi(st, "POST", "/api/v1/sessions")
        tap.is_(status, 429, "so does a plain CGI process")
        tap.like(out, r"(?m)^Retry-After: \d+", "CGI 429 carries Retry-After")
        status, out = cgi(st, "POST", "/api/v1/sessions", {"IMAGETOOLS_RATE_SESSIONS": "0"})
        tap.is_(status, 201, "rate_sessions = 0 disables the limit")

        # Time passing refills the bucket: move the clock of the bucket back instead of sleeping.
        st.sql("UPDATE rate_limits SET updated = updated - interval '21 seconds' WHERE key LIKE 'sessions:%'")
        tap.is_(post_session(st).status, 201, "after Retry-After seconds a token is back")
        st.is_problem(post_session(st), 429, "and only one")
        st.sql("UPDATE rate_limits SET updated = updated - interval '1 hour' WHERE key LIKE 'sessions:%'")
        codes = [post_session(st).status for _ in range(4)]
        tap.is_(codes, [201, 201, 201, 429], "a long-idle bucket is full again, never fuller than its size")

        # Requests answered by node B count in node A's /metrics.
        m0 = metrics(st)
        for _ in range(7):
            node_b.request("GET", "/api/v1/sessions/" + "Q" * 32)
        key = 'imagetools_http_responses_total{route="/api/v1/sessions/{id}",status="404"}'

        def b_counted():
            m = metrics(st)
            return m if m.get(key, 0) - m0.get(key, 0) == 7 else None
        m1 = None
        try:
            m1 = wait_for(b_counted, timeout=20, interval=0.5, what="node B's counters in /metrics")
        except TimeoutError:
            pass
        tap.ok(m1 is not None, "requests answered by another node are counted in /metrics (flushed every 5 s)")
        progs = (m1 or {}).get('imagetools_processes{program="imagetools.fcgi"}', 0)
        tap.ok(progs >= 2, "/metrics sees the FastCGI processes of both nodes (%d)" % progs)
    # Node B has stopped: it flushed at exit, and its counts never go away.
    m2 = metrics(st)
    tap.ok(m2.get(key, 0) >= (m1 or {}).get(key, 0) > 0, "a stopped node's counters stay in the totals")
    live = ",".join(str(p) for p in st.fcgi_pids())
    st.sql("UPDATE process_metrics SET updated = now() - interval '2 hours'"
           " WHERE pid <> 0 AND program <> 'retired' AND pid NOT IN (%s)" % live)
    st.sql("SELECT it_metrics_retire(3600)")
    m3 = metrics(st)
    tap.ok(m3.get(key, 0) >= m2.get(key, 0), "folding silent processes into 'retired' keeps totals monotonic")
    tap.ok(int(st.sql("SELECT count(*) FROM process_metrics WHERE program = 'retired'")) == 1,
           "silent processes were folded into one retired row")

    # ---------------------------------------------------------------- rate limits: streams
    st.sql("DELETE FROM rate_limits")
    s2 = st.new_session()
    codes = [stream_head(st.port, s2)[0] for _ in range(3)]
    tap.is_(codes, [200, 200, 200], "three SSE connections within rate_streams=3")
    status, head = stream_head(st.port, s2)
    tap.is_(status, 429, "the fourth SSE connection in the minute is refused")
    tap.like(head, r"(?im)^Retry-After: \d+", "with Retry-After")
    tap.like(head, r"(?im)^Content-Type: application/problem\+json", "as problem+json")
    r = st.request("GET", "/api/v1/events?session_id=%s&cursor=0&timeout=0" % s2)
    tap.is_(r.status, 200, "a long-poll that answers at once is not a stream and is not limited")
    r = st.request("GET", "/api/v1/events?session_id=%s&cursor=0&timeout=5" % s2)
    st.is_problem(r, 429, "a long-poll that would wait counts as a stream")
    tap.is_(r.json().get("retry_after"), int(r.header("Retry-After") or -1), "body and header agree")

    # ---------------------------------------------------------------- rate limits: uploads
    st.sql("DELETE FROM rate_limits")
    up_a, up_b, up_c = st.new_session(), st.new_session(), st.new_session()
    png = os.path.join(st.dir, "tiny.png")
    with open(png, "wb") as f:
        f.write(png_bytes(8, 8))

    def upload(session):
        return st.curl("-s", "-F", "session_id=" + session, "-F", "source=cli", "-F", "file=@%s" % png,
                       st.url + "/api/v1/images")

    def images():
        return int(st.sql("SELECT count(*) FROM images"))

    m_up0 = metrics(st)
    n0 = images()
    codes = [upload(up_a)[0] for _ in range(4)]
    tap.is_(codes, [201] * 4, "four uploads within rate_uploads=4")
    status, headers, body = upload(up_b)
    tap.is_(status, 429, "the fifth upload from the address in the minute is refused")
    tap.like(headers, r"(?im)^Retry-After: \d+", "with Retry-After")
    tap.like(headers, r"(?im)^Content-Type: application/problem\+json", "as problem+json")
    tap.is_(images(), n0 + 4, "the refused upload stored nothing")
    tap.is_(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", up_b), "0", "and sent no event")

    # Per session: a fresh address bucket, but session A has had its four.
    st.sql("DELETE FROM rate_limits WHERE key LIKE 'uploads:%'")
    status, headers, body = upload(up_a)
    tap.is_(status, 429, "a session's own limit holds whatever the address")
    tap.like(headers, r"(?im)^Retry-After: \d+", "with Retry-After")
    tap.like(body.decode(errors="replace"), r"uploads into this session", "the problem says which limit")
    tap.is_(images(), n0 + 4, "nothing stored")
    tap.is_(upload(up_c)[0], 201, "another session uploads meanwhile")

    def uploads_counted():
        m = metrics(st)
        return m if m.get('imagetools_uploads_total{source="cli"}', 0) - m_up0.get('imagetools_uploads_total{source="cli"}', 0) == 5 \
            and m.get('imagetools_upload_errors_total{status="429"}', 0) - m_up0.get('imagetools_upload_errors_total{status="429"}', 0) == 2 \
            else None
    try:
        m_up1 = wait_for(uploads_counted, timeout=15, interval=0.5, what="upload metrics")
    except TimeoutError:
        m_up1 = metrics(st)
    key_u = 'imagetools_uploads_total{source="cli"}'
    tap.is_(m_up1.get(key_u, 0) - m_up0.get(key_u, 0), 5.0, "uploads counted by source")
    tap.is_(m_up1.get("imagetools_upload_bytes_total", 0) - m_up0.get("imagetools_upload_bytes_total", 0),
            5.0 * os.path.getsize(png), "upload bytes counted")
    key_e = 'imagetools_upload_errors_total{status="429"}'
    tap.is_(m_up1.get(key_e, 0) - m_up0.get(key_e, 0), 2.0, "refused uploads counted by status")
    tap.is_(m_up1.get("imagetools_images_stored"), float(images()), "imagetools_images_stored matches the database")
    tap.is_(m_up1.get("imagetools_image_bytes_stored"), float(st.sql("SELECT sum(size) FROM images")),
            "imagetools_image_bytes_stored matches the database")

    # ---------------------------------------------------------------- rate limits: operations
    st.sql("DELETE FROM rate_limits")
    op_a, op_b = st.new_session(), st.new_session()
    img_a = put_image(st, op_a, jpeg_bytes(32, 24))
    img_b = put_image(st, op_b, jpeg_bytes(32, 24))

    def post_operation(session, image):
        return st.request("POST", "/api/v1/operations",
                          body={"session_id": session, "type": "bulk_compress", "image_ids": [image]})

    def operations():
        return int(st.sql("SELECT count(*) FROM operations"))

    n_ops = operations()
    tap.is_([post_operation(op_a, img_a).status for _ in range(2)], [202, 202], "two operations within rate_operations=2")
    r = post_operation(op_b, img_b)
    tap.is_(r.status, 429, "the third operation from the address in the minute is refused")
    tap.ok(r.header("Retry-After") and r.header("Content-Type") == "application/problem+json",
           "with Retry-After, as problem+json")
    tap.is_(operations(), n_ops + 2, "the refused operation was not queued")
    st.sql("DELETE FROM rate_limits WHERE key LIKE 'operations:%'")
    r = post_operation(op_a, img_a)
    tap.is_(r.status, 429, "a session's own operation limit holds whatever the address")
    tap.like(r.body.decode(errors="replace"), r"operations in this session", "the problem says which limit")
    tap.is_(st.sql("SELECT count(*) FROM events WHERE session_id = :'p1' AND type = 'operation.started'", op_a), "2",
            "and no operation.started event was sent for it")
    tap.is_(post_operation(op_b, img_b).status, 202, "another session starts one meanwhile")

    # ---------------------------------------------------------------- storage quota per session
    def upload_files(session, *paths):
        st.sql("DELETE FROM rate_limits")  # this section is about the quota, not the rate
        args = ["-s", "-F", "session_id=" + session]
        for p in paths:
            args += ["-F", "file=@%s" % p]
        return st.curl(*(args + [st.url + "/api/v1/images"]))

    def held(session):
        return int(st.sql("SELECT COALESCE(sum(size), 0) FROM images WHERE session_id = :'p1'", session))

    big, half_a, half_b = (os.path.join(st.dir, n) for n in ("q60k.png", "q30k-a.png", "q30k-b.png"))
    for path, side in ((big, 140), (half_a, 100), (half_b, 100)):
        with open(path, "wb") as f:  # random pixels, stored: about 3 bytes a pixel
            f.write(png_bytes(side, side, level=0))
    q = st.new_session()
    status, _, body = upload_files(q, big)
    tap.is_(status, 201, "a %d-byte image fits the 100000-byte session quota" % os.path.getsize(big))
    first_id = json.loads(body)["images"][0]["id"] if status == 201 else ""
    status, headers, body = upload_files(q, big)
    tap.is_(status, 413, "a second one would pass the quota: 413")
    tap.like(headers, r"(?im)^Content-Type: application/problem\+json", "as problem+json")
    tap.like(body.decode(errors="replace"), r"session-quota-exceeded.*holds %d bytes" % os.path.getsize(big),
             "the problem says how much the session holds")
    tap.is_(held(q), os.path.getsize(big), "nothing more was stored")
    tap.is_(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", q), "1", "and no event was sent")
    status, _, _ = upload_files(q, half_a, half_b)
    tap.is_(status, 413, "two files that fit one by one but not together: 413")
    tap.is_(held(q), os.path.getsize(big), "neither of them was stored")
    tap.is_(st.request("DELETE", "/api/v1/images/" + first_id, headers={"Authorization": "Bearer " + q}).status, 204,
            "deleting the image")
    tap.is_(upload_files(q, half_a, half_b)[0], 201, "makes room for both")

    # Two uploads at once into an empty session, each fitting alone, not together.
    # An open transaction holds the session's row lock until both are waiting,
    # so both are inside their transactions at the same time: the lock taken
    # before the quota check makes the second count the first.
    r2 = st.new_session()
    st.sql("DELETE FROM rate_limits")
    holder = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-h", st.sockdir, "-p", str(st.pgport), "-U",
                               "postgres", "-d", st.dbname], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    holder.stdin.write("BEGIN;\nSELECT 'locked' FROM sessions WHERE id = '%s' FOR NO KEY UPDATE;\n" % r2)
    holder.stdin.flush()
    tap.is_(holder.stdout.readline().strip(), "locked", "a transaction holds the session's row lock")
    codes = []
    threads = [threading.Thread(target=lambda: codes.append(st.curl("-s", "-F", "session_id=" + r2, "-F",
                                                                       "file=@%s" % big, st.url + "/api/v1/images")[0]))
               for _ in range(2)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: int(st.sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'")) >= 2,
                 timeout=30, what="both uploads waiting for the session's lock")
        waited = True
    except TimeoutError:
        waited = False
    holder.stdin.write("COMMIT;\n")
    holder.stdin.close()
    holder.wait(timeout=30)
    for t in threads:
        t.join()
    tap.ok(waited, "both uploads reached the session's lock while the other was in flight")
    tap.is_(sorted(codes), [201, 413], "two concurrent uploads past the quota together: one stored, one 413")
    tap.is_(held(r2), os.path.getsize(big), "the session holds exactly one of them")

    # ---------------------------------------------------------------- metrics
    st.sql("DELETE FROM rate_limits")
    s3 = st.new_session()
    st.sql("SELECT it_append_event(:'p1', 'image.uploaded', '{}'); SELECT it_append_event(:'p1', 'image.deleted', '{}')",
           s3)
    m0 = metrics(st)
    r = st.request("GET", "/api/v1/events?session_id=%s&cursor=0&timeout=0" % s3)
    tap.is_(len(r.json()["events"]), 2, "long-poll delivers two events")
    m1 = metrics(st)
    lp = 'imagetools_events_delivered_total{transport="longpoll"}'
    tap.is_(m1.get(lp, 0) - m0.get(lp, 0), 2.0, "events delivered by long-poll counted exactly")
    rl = 'imagetools_rate_limited_total{limit="sessions"}'
    tap.ok(m1.get(rl, 0) >= 5 + 1 + 1 + 1, "rate-limited requests counted (%s)" % m1.get(rl))
    # The refusals may have been counted by the other FastCGI process, which
    # flushes every 5 s.
    m1 = wait_for(lambda: (lambda m: m if m.get('imagetools_rate_limited_total{limit="streams"}', 0) >= 2 else None)(
        metrics(st)), timeout=15, interval=0.5, what="stream refusals in /metrics")
    tap.ok(m1.get('imagetools_rate_limited_total{limit="streams"}', 0) >= 2, "stream limits counted")
    tap.is_(m1.get("imagetools_sessions_active"), float(st.sql("SELECT count(*) FROM sessions WHERE expires_at > now()")),
            "imagetools_sessions_active matches the database")
    tap.ok(m1.get("imagetools_origin_refused_total", 0) >= 5, "requests refused for their Origin counted")

    # An open SSE stream shows as an open connection, and a resume is counted.
    s = socket.create_connection(("127.0.0.1", st.port), timeout=10)
    s.sendall(("GET /api/v1/events/stream?session_id=%s HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 1\r\n\r\n" % s3).encode())
    got = b""
    while b"image.deleted" not in got:
        chunk = s.recv(4096)
        if not chunk:
            break
        got += chunk
    tap.ok(b"id: 2" in got, "the stream resumed after Last-Event-ID 1")
    sse = 'imagetools_connections_open{transport="sse"}'
    resumes = 'imagetools_resumes_total{transport="sse"}'
    try:
        m2 = wait_for(lambda: (lambda m: m if m.get(sse, 0) >= 1 and m.get(resumes, 0) > m1.get(resumes, 0) else None)(
            metrics(st)), timeout=15, interval=0.5, what="the open stream in /metrics")
    except TimeoutError:
        m2 = metrics(st)
    tap.ok(m2.get(sse, 0) >= 1, "an open SSE stream is an open connection")
    tap.is_(m2.get(resumes, 0) - m1.get(resumes, 0), 1.0, "a reconnect with Last-Event-ID counts as a resume")
    s.close()

    r = st.request("GET", "/api/v1/metrics")
    tap.is_(r.header("Content-Type"), "text/plain; version=0.0.4; charset=utf-8", "Prometheus text format")
    text = r.body.decode()
    families = re.findall(r"(?m)^# TYPE (\S+) (\S+)$", text)
    tap.is_(len(families), len(set(f for f, _ in families)), "each family is declared once")
    tap.ok(all(re.match(r'^[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.e+]+$', line)
               for line in text.splitlines() if line and not line.startswith("#")),
           "every sample line is name{labels} value")

    # metrics_token: the plain CGI run takes the setting from its environment.
    status, out = cgi(st, "GET", "/api/v1/metrics", {"IMAGETOOLS_METRICS_TOKEN": "s3cret-token"})
    tap.is_(status, 401, "with metrics_token set, /metrics needs the token")
    tap.like(out, r"application/problem\+json", "401 is problem+json")
    status, out = cgi(st, "GET", "/api/v1/metrics", {"IMAGETOOLS_METRICS_TOKEN": "s3cret-token"},
                      {"Authorization": "Bearer s3cret-tokeX"})
    tap.is_(status, 401, "a wrong token is refused")
    status, out = cgi(st, "GET", "/api/v1/metrics", {"IMAGETOOLS_METRICS_TOKEN": "s3cret-token"},
                      {"Authorization": "Bearer s3cret-token"})
    tap.is_(status, 200, "the right token opens /metrics")
    tap.like(out, r"(?m)^imagetools_sessions_active \d+$", "and it has the samples")

    # ---------------------------------------------------------------- logs
    # A CGI run logs to its stderr, which the test can read whole.
    env = {"IMAGETOOLS_LOG_LEVEL": "debug"}
    logs = ""
    for uri in ("/api/v1/sessions/" + sid, "/api/v1/events?session_id=%s&cursor=0&timeout=0" % sid,
                "/api/v1/sessions/" + sid + "/x", "/api/v1/events/stream?session_id=%s&last_event_id=9" % sid):
        env["IMAGETOOLS_CGI_STREAM_LIFETIME"] = "5"
        p = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], env=dict(st.env(), **env, REQUEST_METHOD="GET",
                           REQUEST_URI=uri, QUERY_STRING=uri.partition("?")[2], REMOTE_ADDR="127.0.0.1",
                           GATEWAY_INTERFACE="CGI/1.1"), stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        logs += p.stderr.decode(errors="replace")
    tap.ok(logs.count("\n") >= 4, "the CGI runs logged their requests")
    tap.ok(sid not in logs, "no whole session id reaches the log")
    tap.ok(sid[:6] in logs, "a short prefix does, for tracing")

# ---------------------------------------------------------------- the bridge and the worker in /metrics
with Stack(tap, bridge=True, worker=True, settings={"allowed_origins": "https://app.example"}) as st:
    sid = st.new_session()
    img = put_image(st, sid, jpeg_bytes(64, 48))
    m0 = metrics(st)
    ws = WsClient.connect("127.0.0.1", st.port, "/api/v1/ws/%s?last_event_id=1" % sid)
    op = start_operation(st, sid, [img])
    got = []
    while not got or got[-1].get("type") not in ("operation.completed", "operation.failed"):
        got += ws.recv_events(1, timeout=60)
    tap.is_(wait_operation(st, op)["status"], "completed", "an operation ran on the worker")
    n_ws = len([e for e in got if "id" in e])
    ws_open = 'imagetools_connections_open{transport="websocket"}'
    ws_ev = 'imagetools_events_delivered_total{transport="websocket"}'
    ws_res = 'imagetools_resumes_total{transport="websocket"}'
    fin = 'imagetools_operations_finished_total{type="bulk_compress",status="completed"}'

    def all_counted():
        m = metrics(st)
        return m if (m.get(ws_ev, 0) - m0.get(ws_ev, 0) == n_ws and m.get(ws_open, 0) == 1
                     and m.get(fin, 0) - m0.get(fin, 0) == 1) else None
    try:
        m1 = wait_for(all_counted, timeout=20, interval=0.5, what="bridge and worker counters")
    except TimeoutError:
        m1 = metrics(st)
    tap.is_(m1.get(ws_open, 0), 1.0, "the open WebSocket is counted by the bridge")
    tap.is_(m1.get(ws_ev, 0) - m0.get(ws_ev, 0), float(n_ws), "events delivered over WebSocket (%d) counted" % n_ws)
    tap.is_(m1.get(ws_res, 0) - m0.get(ws_res, 0), 1.0, "a WebSocket with last_event_id counts as a resume")
    tap.is_(m1.get(fin, 0) - m0.get(fin, 0), 1.0, "the worker's finished operation counted")
    tap.is_(m1.get('imagetools_processes{program="imagetools-wsbridge"}'), 1.0, "the bridge process is seen")
    tap.is_(m1.get('imagetools_processes{program="imagetools-worker"}'), 1.0, "the worker process is seen")
    tap.is_(m1.get('imagetools_operations{status="completed"}'), 1.0, "queue table by status")
    tap.is_(m1.get('imagetools_operations{status="queued"}'), 0.0, "queue depth 0 when idle")
    tap.is_(m1.get('imagetools_operation_duration_seconds_count{type="bulk_compress"}'), 1.0,
            "operation durations summarised from the queue table")
    tap.ok('imagetools_operation_duration_seconds{type="bulk_compress",quantile="0.5"}' in m1,
           "with quantiles")
    ws.close()
    try:
        WsClient.connect("127.0.0.1", st.port, "/api/v1/ws/" + sid, origin="https://evil.example")
        tap.ok(False, "a WebSocket from an unlisted origin is refused")
    except HandshakeError as e:
        tap.is_(e.status, 403, "a WebSocket from an unlisted origin is refused")
    try:
        m2 = wait_for(lambda: (lambda m: m if m.get(ws_open, 0) == 0 and m.get("imagetools_origin_refused_total", 0)
                                >= m0.get("imagetools_origin_refused_total", 0) + 1 else None)(metrics(st)),
                      timeout=20, interval=0.5, what="the closed WebSocket")
    except TimeoutError:
        m2 = metrics(st)
    tap.is_(m2.get(ws_open, 0), 0.0, "a closed WebSocket leaves the gauge")
    tap.ok(m2.get("imagetools_origin_refused_total", 0) >= m0.get("imagetools_origin_refused_total", 0) + 1,
           "the bridge's Origin refusals are counted")


# ---------------------------------------------------------------- credentials out of /metrics and web server logs
def credential_traffic(st, sid):
    """Uses a session id and tokens the ways clients do (Bearer uploads, SSE and long-poll, WebSocket
    with the credential in its subprotocol, refused and revoked tokens) and returns every secret."""
    def mint(scope):
        r = st.request("POST", "/api/v1/tokens", body={"scope": scope, "label": "audit " + scope},
                       headers={"Authorization": "Bearer " + sid})
        return r.json() if r.status == 201 else {"token": "itk.unminted", "device_id": "?"}
    up, view = mint("upload"), mint("view")
    code = st.request("POST", "/api/v1/pairings", body={"scope": "upload"},
                      headers={"Authorization": "Bearer " + sid}).json().get("code", "itp.none")
    ct, body = multipart([], [("file", 'filename="a.jpg"', jpeg_bytes(32, 24))])
    st.request("POST", "/api/v1/images", body=body, headers={"Content-Type": ct, "Authorization": "Bearer " + up["token"]})
    st.request("GET", "/api/v1/events?cursor=0&timeout=0", headers={"Authorization": "Bearer " + view["token"]})
    st.request("GET", "/api/v1/events?cursor=0&timeout=0", headers={"Authorization": "Bearer " + up["token"]})
    forged = "itk." + "F" * 32
    st.request("GET", "/api/v1/events?cursor=0&timeout=0", headers={"Authorization": "Bearer " + forged})
    st.request("POST", "/api/v1/pair", body={"code": code})
    st.request("POST", "/api/v1/pair", body={"code": code})
    ws = WsClient.connect("127.0.0.1", st.port, "/api/v1/ws?client_id=audit",
                          headers={"Sec-WebSocket-Protocol": "imagetools.v1, imagetools.bearer." + view["token"]})
    try:
        ws.recv_events(1, timeout=10)
    except Exception:
        pass
    st.request("DELETE", "/api/v1/devices/" + view["device_id"], headers={"Authorization": "Bearer " + sid})
    try:
        ws.recv_events(1, timeout=5)
    except Exception:
        pass
    ws.close()
    return [sid, up["token"], view["token"], forged, code]


with Stack(tap, bridge=True, worker=True) as st:
    sid = st.new_session()
    secrets = credential_traffic(st, sid)
    # Every process flushes its counters at least every 5 s: wait for the bridge's WebSocket.
    wait_for(lambda: all('imagetools_processes{program="%s"}' % p in metrics(st)
                         for p in ("imagetools-wsbridge", "imagetools-worker")), timeout=20, interval=0.5,
             what="the bridge and the worker in /metrics")
    text = st.request("GET", "/api/v1/metrics").body.decode(errors="replace")
    tap.ok(text.count("\n") > 50, "/metrics answers with the counters of every process")
    tap.ok(not any(x in text for x in secrets), "/metrics carries no session id, token or pairing code")
    tap.ok(not any(x[4:10] in text or x[:6] in text for x in secrets),
           "nor a prefix of one: no label is made from a credential")
    values = re.findall(r'="([^"]*)"', text)
    tap.ok(values and not [v for v in values if re.search(r"it[kp]\.|^[A-Za-z0-9_-]{22,}$", v)],
           "no label value has a credential's shape (%d values)" % len(values))
    logs = "".join(open(os.path.join(st.dir, n), errors="replace").read() for n in os.listdir(st.dir)
                   if n.endswith(".log"))
    tap.ok(not any(x in logs for x in secrets), "no log of the stack holds a whole session id, token or code")

# With the bridge down, the web server logs the URL it could not pass on. /api/v1/ws carries no
# credential (it travels in Sec-WebSocket-Protocol), so none reaches lighttpd's or Apache's logs.
from apache import ApacheStack, prerequisites  # noqa: E402


def ws_while_bridge_down(st, sid, token, logfile, marker):
    """Opens /api/v1/ws the way the page and the add-on do, with each credential, until the web
    server has logged the refusal; returns the statuses the client saw."""
    seen = []
    for cred, cid in ((sid, "audit-session"), (token, "audit-token")):
        def logged():
            try:
                WsClient.connect("127.0.0.1", st.port, "/api/v1/ws?client_id=" + cid, origin=st.url,
                                 headers={"Sec-WebSocket-Protocol": "imagetools.v1, imagetools.bearer." + cred})
            except HandshakeError as e:
                seen.append(e.status)
            text = open(logfile, errors="replace").read() if os.path.exists(logfile) else ""
            return marker(text, cid)
        wait_for(logged, timeout=30, interval=0.5, what="the web server's log of the bridge being down")
    return seen


with Stack(tap, bridge=True) as st:
    sid = st.new_session()
    token = st.request("POST", "/api/v1/tokens", body={"scope": "view", "label": "tab"},
                       headers={"Authorization": "Bearer " + sid}).json().get("token", "itk.none")
    st.bridge.terminate()
    st.bridge.wait(timeout=10)
    seen = ws_while_bridge_down(st, sid, token, st.errorlog, lambda text, cid: "/api/v1/ws?client_id=" + cid in text)
    tap.ok(seen and all(x == 503 for x in seen), "lighttpd: /api/v1/ws with the bridge down answers 503")
    text = open(st.errorlog, errors="replace").read()
    tap.like(text, r"/api/v1/ws\?client_id=audit-token", "lighttpd logs the URL of the refused WebSocket")
    tap.ok(sid not in text and token not in text and sid[:6] not in text,
           "lighttpd's error log holds neither the session id nor the token, nor a prefix of them")

why = prerequisites("apache")
if why:
    tap.skip("Apache: credentials out of the error log with the bridge down", why)
else:
    with ApacheStack(tap, mode="fcgi", bridge=True) as st:
        sid = st.new_session()
        token = st.request("POST", "/api/v1/tokens", body={"scope": "view", "label": "tab"},
                           headers={"Authorization": "Bearer " + sid}).json().get("token", "itk.none")
        st.bridge.terminate()
        st.bridge.wait(timeout=10)
        errlog = os.path.join(st.dir, "imagetools-error.log")
        before = [0]

        def refused(text, cid):
            n = text.count("AH01114")
            if n > before[0]:
                before[0] = n
                return True
            return False
        seen = ws_while_bridge_down(st, sid, token, errlog, refused)
        tap.ok(seen and all(x == 503 for x in seen), "Apache: /api/v1/ws with the bridge down answers 503")
        tap.ok(before[0] >= 2, "Apache's error log has the proxy's refusals (%d)" % before[0])
        text = "".join(open(os.path.join(st.dir, n), errors="replace").read() for n in os.listdir(st.dir)
                       if n.endswith(".log"))
        tap.ok(sid not in text and token not in text, "Apache's logs hold neither the session id nor the token")

# ---------------------------------------------------------------- server_names: the Host allow-list
NAMES = "127.0.0.1 [::1] app.example:8080 tls.example:443"
# A small thumbnail, answered whole at once: the answer lighttpd would cut to a Range.
with Stack(tap, bridge=True, settings={"server_names": '"%s"' % NAMES, "thumbnail_size": 64}) as st:
    def with_host(method, path, host, extra=None):
        h = {"Host": host, "Content-Length": "0"}
        h.update(extra or {})
        return st.request(method, path, body=b"" if method == "POST" else None, headers=h)

    before = st.sql("SELECT count(*) FROM sessions")
    # DNS rebinding: a page on evil.example, whose name now resolves to this server, is
    # same-origin with itself, so its Origin matches its Host.
    r = with_host("POST", "/api/v1/sessions", "evil.example", {"Origin": "http://evil.example"})
    b = st.is_problem(r, 421, "DNS rebinding: Host evil.example with a matching Origin")
    tap.like((b or {}).get("type", ""), "misdirected-request$", "421: problem slug")
    tap.is_((b or {}).get("title"), "Misdirected Request", "421: title")
    r = with_host("POST", "/api/v1/sessions", "evil.example:%d" % st.port, {"Origin": "http://evil.example:%d" % st.port})
    st.is_problem(r, 421, "DNS rebinding on the server's own port")
    tap.is_(st.sql("SELECT count(*) FROM sessions"), before, "the refused requests stored nothing")
    st.is_problem(with_host("GET", "/api/v1/health", "evil.example"), 421, "every API request is checked (health)")
    st.is_problem(with_host("OPTIONS", "/api/v1/sessions", "evil.example",
                            {"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"}),
                  421, "a preflight with an unlisted Host")
    sid = st.new_session()
    st.is_problem(with_host("GET", "/api/v1/sessions/" + sid, "evil.example"), 421,
                  "reads are refused too (before the session is looked at)")
    for host in ("127.0.0.1:%d" % st.port, "127.0.0.1", "[::1]:%d" % st.port, "[::1]", "app.example:8080",
                 "APP.example:8080", "tls.example", "tls.example:443"):
        r = with_host("POST", "/api/v1/sessions", host)
        tap.is_(r.status, 201, "Host %s is listed" % host.replace(str(st.port), "<port>"))
    for host in ("app.example", "app.example:9090", "tls.example:8443", "127.0.0.1.evil.example", "[::2]:%d" % st.port):
        st.is_problem(with_host("POST", "/api/v1/sessions", host), 421,
                      "Host %s is not listed" % host.replace(str(st.port), "<port>"))
    # HTTP/1.0 without Host: nothing names the site.
    s = socket.create_connection(("127.0.0.1", st.port), timeout=10)
    s.sendall(b"GET /api/v1/health HTTP/1.0\r\n\r\n")
    _, data = read_to_end(s)
    s.close()
    tap.like(data.split(b"\r\n", 1)[0].decode("latin-1"), r"^HTTP/1\.[01] 421", "a request without Host gets 421")
    # The bridge checks the same list, through lighttpd and directly.
    for port, where in ((st.port, "through lighttpd"), (st.bridge_port, "directly")):
        try:
            WsClient.connect("127.0.0.1", port, "/api/v1/ws/" + sid, origin="http://evil.example",
                             host_header="evil.example").close()
            tap.ok(False, "a WebSocket upgrade with Host evil.example is refused %s" % where)
        except HandshakeError as e:
            tap.is_(e.status, 421, "a WebSocket upgrade with Host evil.example is refused %s" % where)
            tap.is_(e.headers.get("content-type"), "application/problem+json", "421 upgrade: problem+json")
            tap.like(e.body.decode("utf-8", "replace"), "misdirected-request", "421 upgrade: problem slug")
        ws = WsClient.connect("127.0.0.1", port, "/api/v1/ws/" + sid, host_header="[::1]:%d" % port,
                              origin="http://[::1]:%d" % port)
        tap.is_(ws.recv_json().get("type"), "connection.status", "a WebSocket with a listed Host opens %s" % where)
        ws.close()

    # ------------------------------------------------------------ Range at the front end
    # lighttpd must pass the API's answers untouched: no 206 cut by lighttpd from a complete
    # 200 (the thumbnail), no HTML 416 of its own. /file answers Range itself.
    data = jpeg_bytes(300, 200)
    r = st.request("POST", "/api/v1/images", body=_multipart(sid, "r.jpg", data),
                   headers={"Content-Type": "multipart/form-data; boundary=itboundary"})
    tap.is_(r.status, 201, "an image for the Range checks")
    im = r.json()["images"][0] if r.status == 201 else {}
    thumb_url, file_url = im.get("thumbnail_url", ""), im.get("file_url", "")
    whole_thumb = st.request("GET", thumb_url)
    tap.is_(whole_thumb.status, 200, "the thumbnail without Range")
    for rng in ("bytes=0-9", "bytes=-5", "bytes=0-1,5-6", "bytes=999999-", "bytes=abc", "lines=1-2"):
        r = st.request("GET", thumb_url, headers={"Range": rng})
        tap.ok(r.status == 200 and r.body == whole_thumb.body and r.header("Content-Range") is None,
               "thumbnail with Range %s: 200 with the whole body (got %d %s)"
               % (rng, r.status, r.header("Content-Type")))
    r = st.request("GET", file_url, headers={"Range": "bytes=0-9"})
    tap.is_((r.status, r.header("Content-Range"), r.body), (206, "bytes 0-9/%d" % len(data), data[:10]),
            "/file with bytes=0-9: 206 with the first ten bytes")
    r = st.request("GET", file_url, headers={"Range": "bytes=-5"})
    tap.is_((r.status, r.body), (206, data[-5:]), "/file with bytes=-5: 206 with the last five bytes")
    r = st.request("GET", file_url, headers={"Range": "bytes=%d-" % len(data)})
    st.is_problem(r, 416, "/file with a Range past the end")
    tap.is_(r.header("Content-Range"), "bytes */%d" % len(data), "416 names the size")
    for rng in ("bytes=abc", "bytes=5-2", "bytes=0-1,5-6", "bytes=--1", "lines=1-2", "bytes=" + "9" * 40 + "-"):
        r = st.request("GET", file_url, headers={"Range": rng})
        ct = (r.header("Content-Type") or "").split(";")[0]
        good = ((r.status == 200 and r.body == data) or
                (r.status == 416 and ct == "application/problem+json") or
                (r.status == 206 and ct.startswith("multipart/byteranges")))
        tap.ok(good, "/file with Range %s: the whole file or 416 problem+json, never HTML (got %d %s)"
               % (rng, r.status, ct))

tap.done()
