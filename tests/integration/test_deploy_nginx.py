"""test_deploy_nginx.py: the deployment scenarios behind nginx (nginx.conf.example):
imagetools.fcgi on its own Unix socket reached with fastcgi_pass, the bridge behind
proxy_pass, web/ served by nginx."""

import os

from apache import prerequisites
from deploy_scenarios import SETTINGS, multipart, png_bytes, run_all
from harness import Tap, wait_for
from nginx_stack import NginxStack, nginx_missing

why = prerequisites() or nginx_missing()
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
# max_request_bytes above nginx's default client_max_body_size (1 MiB): an upload of 2 MiB
# must reach the backend, not nginx's own HTML 413.
with NginxStack(tap, bridge=True, settings=dict(SETTINGS, keepalive_interval=2, max_upload_bytes="4M")) as st:
    sid = st.new_session()
    data = png_bytes(840, 840, seed=3)      # about 2.1 MB
    ctype, body = multipart({"session_id": sid}, [("file", "two-mib.png", "image/png", data)])
    r = st.request("POST", "/api/v1/images", body=body, headers={"Content-Type": ctype}, timeout=60)
    tap.is_(r.status, 201, "nginx: a %d-byte upload passes nginx's body limit" % len(body))

    # The page's own upload: a browser sends Origin, and nginx must pass the browser's Host
    # on for the backend's same-origin rule.
    origin = "http://127.0.0.1:%d" % st.port
    r = st.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0", "Origin": origin})
    tap.is_(r.status, 201, "nginx: a request from the page's own Origin is accepted")
    st.is_problem(st.request("POST", "/api/v1/sessions", body=b"",
                             headers={"Content-Length": "0", "Origin": "http://evil.example"}),
                  403, "nginx: a request from a foreign Origin")

with NginxStack(tap, bridge=True, settings=dict(SETTINGS, keepalive_interval=2)) as st:
    # nginx closes the FastCGI connection as soon as its client closes, long before the
    # next keepalive. (A half-close is not checked: nginx noticed it at once in most runs,
    # but once kept the stream open, as the client still read the keepalives.)
    run_all(tap, st, mode="fastcgi", label="nginx fastcgi", client_gone_within=10)

    # Session ids are capabilities: the access log records the page, never an API URL.
    st.request("GET", "/index.html?from=test")

    def access_log():
        with open(os.path.join(st.dir, "imagetools-access.log")) as f:
            return f.read()

    wait_for(lambda: "from=test" in access_log(), timeout=5, what="the access log line")
    log = access_log()
    tap.like(log, r'"GET /index\.html\?from=test HTTP/1\.1"', "nginx: the access log records pages")
    tap.ok("/api/v1/" not in log, "nginx: and no API URL (session ids stay out of it)")
    r = st.request("GET", "/")
    tap.is_(r.header("X-Frame-Options"), "DENY", "nginx: the page is served with its security headers")
tap.done()
