"""test_skeleton.py: health (and its recovery after a database restart), sessions, routing
errors and plain CGI mode, against real PostgreSQL and lighttpd."""

import os
import re
import subprocess
import time

from harness import Stack, Tap, wait_for

tap = Tap()

with Stack(tap, own_cluster=True) as st:
    r = st.request("GET", "/api/v1/health")
    tap.is_(r.status, 200, "health answers 200")
    body = r.json()
    tap.is_(body.get("status"), "ok", "health status ok")
    tap.is_(body.get("database"), "ok", "health database ok")
    tap.is_(body.get("mode"), "fastcgi", "served by FastCGI")
    tap.ok(r.header("X-Content-Type-Options") == "nosniff", "nosniff header")

    # Sessions
    r = st.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0"})
    tap.is_(r.status, 201, "session created")
    s = r.json()
    sid = s.get("session_id", "")
    tap.like(sid, r"^[A-Za-z0-9_-]{32}$", "session id is 32 URL-safe characters (192 bits)")
    tap.like(s.get("expires_at", ""), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", "expires_at is ISO 8601 UTC")
    tap.like(r.header("Location") or "", "/api/v1/sessions/" + re.escape(sid) + "$", "Location header")
    sid2 = st.new_session()
    tap.ok(sid2 != sid, "a second session gets another id")

    r = st.request("GET", "/api/v1/sessions/" + sid)
    tap.is_(r.status, 200, "session found")
    tap.is_(r.json().get("session_id"), sid, "same session id")
    tap.is_(r.json().get("last_event_id"), 0, "new session has no events")

    st.is_problem(st.request("GET", "/api/v1/sessions/" + "A" * 32), 404, "unknown session")
    st.is_problem(st.request("GET", "/api/v1/sessions/bad'id"), 400, "malformed session id")
    st.is_problem(st.request("GET", "/api/v1/sessions/" + "x" * 100), 400, "over-long session id")

    # An expired session is gone as far as clients can tell.
    st.sql("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = :'p1'", sid2)
    st.is_problem(st.request("GET", "/api/v1/sessions/" + sid2), 404, "expired session")

    r = st.request("DELETE", "/api/v1/sessions/" + sid)
    tap.is_(r.status, 204, "session deleted")
    st.is_problem(st.request("GET", "/api/v1/sessions/" + sid), 404, "deleted session is gone")
    st.is_problem(st.request("DELETE", "/api/v1/sessions/" + sid), 404, "deleting twice is 404")
    tap.is_(st.sql("SELECT count(*) FROM sessions WHERE id = :'p1'", sid), "0", "row removed")

    # Routing errors
    body = st.is_problem(st.request("GET", "/api/v1/nope"), 404, "unknown route")
    tap.is_((body or {}).get("instance"), "/api/v1/nope", "problem names the path")
    r = st.request("PUT", "/api/v1/health", body=b"", headers={"Content-Length": "0"})
    st.is_problem(r, 405, "wrong method")
    tap.is_(r.header("Allow"), "GET", "405 lists the allowed methods")

    # Health while the database is down, and after it is back, same processes.
    pids_before = sorted(st.fcgi_pids())
    tap.ok(len(pids_before) >= 1, "FastCGI process found")
    st.pg.stop()
    r = st.request("GET", "/api/v1/health")
    tap.is_(r.status, 503, "health is 503 while PostgreSQL is down")
    tap.is_(r.json().get("database"), "unavailable", "health says the database is unavailable")
    tap.ok(r.header("Retry-After") is not None, "503 carries Retry-After")
    st.is_problem(st.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0"}), 503,
                  "session create while the database is down")
    st.pg.start()
    r = wait_for(lambda: (lambda x: x if x.status == 200 else None)(st.request("GET", "/api/v1/health")),
                 timeout=15, what="health to recover")
    tap.is_(r.json().get("database"), "ok", "health recovers after PostgreSQL restarts")
    tap.is_(sorted(st.fcgi_pids()), pids_before, "without restarting imagetools.fcgi")
    tap.is_(st.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0"}).status, 201,
            "sessions can be created again")

    # The same binary as plain CGI: environment in, response on stdout.
    env = st.env()
    env.update({"REQUEST_METHOD": "GET", "REQUEST_URI": "/api/v1/health", "QUERY_STRING": "",
                "GATEWAY_INTERFACE": "CGI/1.1", "REMOTE_ADDR": "127.0.0.1"})
    p = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    out = p.stdout.decode(errors="replace")
    tap.is_(p.returncode, 0, "CGI run exits 0")
    tap.like(out, r"^Status: 200 OK\r\n", "CGI answers with a Status header")
    tap.like(out, r'"mode":"cgi"', "CGI mode detected")
    tap.like(out, r'"database":"ok"', "CGI mode reaches the database")

    env["REQUEST_URI"] = "/api/v1/sessions/" + "B" * 32
    p = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=30)
    tap.like(p.stdout.decode(errors="replace"), r"^Status: 404 Not Found\r\n(.|\n)*application/problem\+json",
             "CGI answers problem+json for an unknown session")

tap.done()
