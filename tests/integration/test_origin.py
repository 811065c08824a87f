"""test_origin.py: the one Origin rule, held to the table in origin_cases.txt (the same rows the unit
test test_origin.c runs through it_origin_check) on every server: imagetools.fcgi through lighttpd
(POST /api/v1/sessions: 201 or 403 problem+json) and the WebSocket bridge, directly and through
lighttpd's proxy (upgrade: 101 or 403). Then the CORS preflights upload libraries send (Dropzone,
Fine Uploader, tus-js-client) and the response headers a cross-origin page may read."""

import os

from harness import SRCDIR, Stack, Tap
from wsclient import HandshakeError, WsClient

tap = Tap()

ALLOWED_VERDICTS = ("absent", "same", "listed")


def read_cases(path):
    """Returns [(allowed_origins, [(verdict, origin or None, host, what, line), ...]), ...] in file order."""
    groups = []
    allowed = None
    with open(path) as f:
        for n, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("allowed:"):
                allowed = line[len("allowed:"):].strip()
                groups.append((allowed, []))
                continue
            fields = [x.strip() for x in line.split("|", 3)]
            if len(fields) != 4 or allowed is None:
                raise ValueError("origin_cases.txt:%d: not a row" % n)
            verdict, origin, host, what = fields
            origin = None if origin == "-" else "" if origin == "''" else origin
            groups[-1][1].append((verdict, origin, host, what, n))
    return groups


def post_session(st, origin, host):
    h = {"Host": host, "Content-Length": "0"}
    if origin is not None:
        h["Origin"] = origin
    return st.request("POST", "/api/v1/sessions", body=b"", headers=h)


def upgrade(port, sid, origin, host):
    """The status of a WebSocket upgrade with this Origin and Host (101 or the refusal's)."""
    headers = {} if origin is None else {"Origin": origin}
    try:
        c = WsClient.connect("127.0.0.1", port, "/api/v1/ws/" + sid, headers=headers, host_header=host)
    except HandshakeError as e:
        return e.status, e.body
    c.close()
    return 101, b""


def check_fcgi(st, verdict, origin, host, label):
    r = post_session(st, origin, host)
    if verdict in ALLOWED_VERDICTS:
        tap.is_(r.status, 201, "fcgi: " + label)
        want = origin if verdict == "listed" else None
        tap.is_(r.header("Access-Control-Allow-Origin"), want, "fcgi: Allow-Origin only for a listed origin: " + label)
    else:
        st.is_problem(r, 403, "fcgi: " + label)


def check_bridge(port, sid, verdict, origin, host, label):
    status, body = upgrade(port, sid, origin, host)
    want = 101 if verdict in ALLOWED_VERDICTS else 403
    tap.is_(status, want, label)
    if want == 403:
        tap.like(body.decode(errors="replace"), "origin-not-allowed", label + ": the body says why")


def header_list(value):
    return {x.strip().lower() for x in (value or "").split(",") if x.strip()}


def preflight(st, origin, method, headers):
    return st.request("OPTIONS", "/api/v1/images", headers={
        "Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers})


def check_preflights(st):
    """The preflights of upload libraries from a listed origin, as browsers send them (lower case, sorted)."""
    libraries = [
        ("Dropzone", "POST", "cache-control,x-requested-with"),
        ("Fine Uploader", "POST", "cache-control,content-type,x-file-name,x-mime-type,x-requested-with"),
        ("jQuery File Upload (chunks)", "POST", "content-disposition,content-range"),
        ("tus-js-client (creation)", "POST",
         "tus-resumable,upload-concat,upload-defer-length,upload-length,upload-metadata"),
        ("tus-js-client (PATCH)", "PATCH", "content-type,tus-resumable,upload-checksum,upload-offset"),
        ("tus-js-client (overridePatchMethod)", "POST",
         "content-type,tus-resumable,upload-offset,x-http-method-override"),
        ("tus-js-client (IETF draft)", "POST", "upload-complete,upload-draft-interop-version"),
        ("FilePond (chunks)", "PATCH", "content-type,upload-length,upload-name,upload-offset"),
    ]
    for name, method, wanted in libraries:
        r = preflight(st, "https://app.example", method, wanted)
        tap.is_(r.status, 204, "%s's preflight: 204" % name)
        tap.is_(r.header("Access-Control-Allow-Origin"), "https://app.example", "%s's preflight: Allow-Origin" % name)
        allowed = header_list(r.header("Access-Control-Allow-Headers"))
        missing = header_list(wanted) - allowed
        tap.ok(not missing, "%s's preflight: every requested header allowed (missing: %s)"
               % (name, ", ".join(sorted(missing)) or "none"))
        tap.ok(method.lower() in header_list(r.header("Access-Control-Allow-Methods")),
               "%s's preflight: %s allowed" % (name, method))
    r = preflight(st, "https://evil.example", "POST", "cache-control,x-requested-with")
    st.is_problem(r, 403, "Dropzone's preflight from an unlisted origin")
    tap.is_(r.header("Access-Control-Allow-Headers"), None, "and it names no headers")

    # What a listed page can read of an answer (the tus client needs these).
    r = post_session(st, "https://app.example", "example.org")
    exposed = header_list(r.header("Access-Control-Expose-Headers"))
    for h in ("Location", "Retry-After", "Upload-Offset", "Upload-Length", "Tus-Resumable", "Tus-Version",
              "Tus-Extension", "Tus-Max-Size", "ETag", "Content-Disposition"):
        tap.ok(h.lower() in exposed, "a listed origin may read %s" % h)


groups = read_cases(os.path.join(SRCDIR, "tests", "integration", "origin_cases.txt"))
tap.ok(sum(len(rows) for _, rows in groups) >= 50, "the shared table has its rows")

for allowed, rows in groups:
    settings = {"allowed_origins": '"%s"' % allowed} if allowed else {}
    with Stack(tap, bridge=True, settings=settings) as st:
        tap.diag("allowed_origins = %r" % allowed)
        sid = st.new_session()
        for verdict, origin, host, what, n in rows:
            label = "line %d: %s (Origin %r, Host %s)" % (n, what, origin, host)
            check_fcgi(st, verdict, origin, host, label)
            check_bridge(st.bridge_port, sid, verdict, origin, host, "bridge: " + label)
            check_bridge(st.port, sid, verdict, origin, host, "bridge via lighttpd: " + label)
        if "https://app.example" in allowed.split():
            check_preflights(st)

tap.done()
