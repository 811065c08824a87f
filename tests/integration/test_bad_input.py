"""test_bad_input.py: a catalogue of malformed and hostile requests, sent over raw sockets and with
curl to real lighttpd + imagetools.fcgi + PostgreSQL. Each case asserts the status, a problem+json
body (when the API, not the web server, answers), that the server still serves the next request,
and that nothing was stored: images, blobs, chunks, events and sessions are counted before and
after."""

import json
import os
import re
import socket
import threading
import time

from harness import Stack, Tap
from uploads_util import png_bomb, png_bytes
from wsclient import OP_TEXT, HandshakeError, WsClient, frame

tap = Tap()

SETTINGS = {
    # Limits small enough to reach in a test; rate limits off so that only the input decides.
    "max_upload_bytes": "64K", "max_request_bytes": "256K", "max_files": 3, "max_pixels": 1000000,
    "max_staged_bytes": "16K",
    "rate_sessions": 0, "rate_streams": 0, "rate_uploads": 0, "longpoll_timeout": 2,
}
B = "itBadInputBoundary"
SID_CHARS = "A" * 32


def recv_all(s, limit=1 << 22):
    data = b""
    while len(data) < limit:
        try:
            chunk = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            break
        if not chunk:
            break
        data += chunk
    return data


def dechunk(body):
    out, rest = b"", body
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        try:
            n = int(line.split(b";")[0], 16)
        except ValueError:
            return body
        if n == 0:
            break
        out, rest = out + rest[:n], rest[n + 2:]
    return out


class Raw:
    """A response read from a raw socket."""

    def __init__(self, data):
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.\d (\d{3})", lines[0]) if lines else None
        self.status = int(m.group(1)) if m else 0
        self.headers = [tuple(x.strip() for x in l.split(":", 1)) for l in lines[1:] if ":" in l]
        if (self.header("Transfer-Encoding") or "").lower() == "chunked":
            body = dechunk(body)
        self.body = body

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None


def raw(st, data, timeout=20, shut=True):
    s = socket.create_connection(("127.0.0.1", st.port), timeout=timeout)
    try:
        s.sendall(data)
        if shut:
            s.shutdown(socket.SHUT_WR)
        return Raw(recv_all(s))
    except (BrokenPipeError, ConnectionResetError):
        return Raw(recv_all(s))
    finally:
        s.close()


def get(path, headers=""):
    return ("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n" % (path, headers)).encode()


def post(path, body, ctype="multipart/form-data; boundary=" + B, extra="", length=None):
    if isinstance(body, str):
        body = body.encode()
    return (("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s"
             "Connection: close\r\n\r\n") % (path, ctype, len(body) if length is None else length, extra)).encode() + body


def form(parts, boundary=B, close=True):
    """parts: [(disposition params text, bytes)] -> multipart body."""
    out = b""
    for disp, data in parts:
        d = disp if isinstance(disp, bytes) else disp.encode()
        out += b"--" + boundary.encode() + b"\r\nContent-Disposition: form-data; " + d + b"\r\n\r\n" + data + b"\r\n"
    if close:
        out += b"--" + boundary.encode() + b"--\r\n"
    return out


with Stack(tap, settings=SETTINGS, bridge=True) as st:
    SID = st.new_session()
    # One stored image, so that PATCH/DELETE reach their body parsing.
    png_ok = png_bytes(4, 4)
    with open(os.path.join(st.dir, "ok.png"), "wb") as f:
        f.write(png_ok)
    status, _, body = st.curl("-s", "-F", "session_id=" + SID, "-F", "file=@%s" % os.path.join(st.dir, "ok.png"),
                              st.url + "/api/v1/images")
    IMG = json.loads(body)["images"][0]["id"] if status == 201 else "00000000-0000-4000-8000-000000000000"
    tap.is_(status, 201, "setup: one image stored")

    def mint(scope):
        r = st.request("POST", "/api/v1/tokens", body={"scope": scope, "label": "bad-input " + scope},
                       headers={"Authorization": "Bearer " + SID})
        return r.json().get("token", "itk." + "x" * 32) if r.status == 201 else "itk." + "x" * 32

    # Scoped tokens and a pairing code that has been used, for the security cases.
    UPT, VIEWT = mint("upload"), mint("view")
    r = st.request("POST", "/api/v1/pairings", body={}, headers={"Authorization": "Bearer " + SID})
    USED_CODE = r.json().get("code", "itp." + "x" * 22) if r.status == 201 else "itp." + "x" * 22
    tap.is_(st.request("POST", "/api/v1/pair", body={"code": USED_CODE}).status, 201, "setup: a pairing code used once")

    def counts():
        return st.sql("SELECT (SELECT count(*) FROM images) || ',' || (SELECT count(*) FROM blobs) || ',' ||"
                      " (SELECT count(*) FROM blob_chunks) || ',' || (SELECT count(*) FROM events) || ',' ||"
                      " (SELECT count(*) FROM sessions) || ',' ||"
                      " (SELECT string_agg(filename, '/' ORDER BY id) FROM images)")

    def alive():
        r = st.request("GET", "/api/v1/health", timeout=10)
        return r.status == 200

    ncases = [0]

    def case(name, status, send, by_server=False, slug=None):
        """Runs one hostile request. by_server: the web server refuses it before the API sees it,
        so the body is lighttpd's, not problem+json."""
        ncases[0] += 1
        before = counts()
        try:
            r = send()
        except Exception as e:  # a crash or hang is a failure of this case, not of the run
            tap.ok(False, "%s: request raised %r" % (name, e))
            return
        want = status if isinstance(status, tuple) else (status,)
        if not tap.ok(r.status in want, "%s: status %s" % (name, "/".join(map(str, want)))):
            tap.diag("got %d: %r" % (r.status, r.body[:300]))
        if not by_server:
            ct = (r.header("Content-Type") or "").split(";")[0]
            body = {}
            try:
                body = json.loads(r.body.decode("utf-8"))
            except Exception:
                pass
            if not tap.ok(ct == "application/problem+json" and body.get("status") == r.status
                          and str(body.get("type", "")).startswith("urn:imagetools:problem:") and body.get("title"),
                          "%s: problem+json body" % name):
                tap.diag("got %d %s: %r" % (r.status, ct, r.body[:200]))
            if slug:
                tap.is_(body.get("type"), "urn:imagetools:problem:" + slug, "%s: problem %s" % (name, slug))
        tap.ok(alive(), "%s: the server answers the next request" % name)
        tap.is_(counts(), before, "%s: nothing stored" % name)

    def curl(*args):
        status, headers, body = st.curl("-s", "--max-time", "20", *args)
        # The last response's head (curl -D keeps every one, 100-continue included).
        head = re.split(r"\r?\n\r?\n", headers.strip())[-1]
        return Raw("\r\n".join(head.splitlines()).encode("latin-1", "replace") + b"\r\n\r\n" + body)

    # A slowloris body runs in the background for the whole catalogue: the web
    # server's max-read-idle (60 s) must cut it.
    slow = {}

    def slowloris():
        s = socket.create_connection(("127.0.0.1", st.port), timeout=120)
        t0 = time.monotonic()
        s.sendall(post("/api/v1/images", b"", length=100000))
        s.sendall(b"--" + B.encode())
        try:
            while time.monotonic() - t0 < 110:
                # Far slower than the idle limit: one byte now and then would
                # reset it, so after the first bytes nothing more comes.
                data = s.recv(65536)
                if not data:
                    break
                slow["data"] = slow.get("data", b"") + data
        except (socket.timeout, ConnectionResetError):
            pass
        slow["seconds"] = time.monotonic() - t0
        s.close()

    slow_thread = threading.Thread(target=slowloris)
    slow_thread.start()

    # ------------------------------------------------------------ session ids
    # Ids of 22 to 64 URL-safe characters are well-formed (older clients' ids); others are 400.
    case("session id too short", 400, lambda: raw(st, get("/api/v1/sessions/" + "A" * 21)), slug="invalid-session-id")
    case("session id of 65 characters", 400, lambda: raw(st, get("/api/v1/sessions/" + "A" * 65)))
    case("well-formed id one character short", 404, lambda: raw(st, get("/api/v1/sessions/" + "A" * 31)))
    case("session id of 127 characters", 400, lambda: raw(st, get("/api/v1/sessions/" + "A" * 127)))
    case("session id of 4000 characters", (400, 404, 414), lambda: raw(st, get("/api/v1/sessions/" + "A" * 4000)))
    case("session id with a dot", 400, lambda: raw(st, get("/api/v1/sessions/" + "A" * 31 + ".")))
    case("session id with SQL", 400, lambda: raw(st, get("/api/v1/sessions/%27%20OR%20%271%27%3D%271")))
    case("session id with percent-encoded slash", (400, 404), lambda: raw(st, get("/api/v1/sessions/..%2F..%2Fetc%2Fpasswd")),
         by_server=True)
    case("session id with UTF-8", 400, lambda: raw(st, get("/api/v1/sessions/" + "%C3%A9" * 16)))
    case("session id with invalid UTF-8", 400, lambda: raw(st, get("/api/v1/sessions/" + "%FF" * 32)), by_server=True)
    case("unknown session id", 404, lambda: raw(st, get("/api/v1/sessions/" + SID_CHARS)), slug="unknown-session")
    case("empty session id", 405, lambda: raw(st, get("/api/v1/sessions/")))
    case("DELETE a malformed session", 400, lambda: raw(st, post("/api/v1/sessions/x'y", b"", "text/plain").replace(b"POST", b"DELETE", 1)))
    case("PUT on sessions", 405, lambda: raw(st, post("/api/v1/sessions", b"{}", "application/json").replace(b"POST", b"PUT", 1)))
    case("POST /sessions with a 200 KB body", 413, lambda: raw(st, post("/api/v1/sessions", b"x" * 200000, "text/plain")))

    # ------------------------------------------------------------ path traversal and odd paths
    case("traversal into the API", 404, lambda: raw(st, get("/api/v1/sessions/../../../etc/passwd")), by_server=True)
    # lighttpd decodes and normalises the path first: this leaves /api/ altogether.
    case("encoded traversal in an image id", 404, lambda: raw(st, get("/api/v1/images/..%2f..%2fetc%2fpasswd/file")),
         by_server=True)
    case("image id not a UUID", 400, lambda: raw(st, get("/api/v1/images/not-a-uuid")), slug="invalid-image-id")
    case("image id with SQL", 400, lambda: raw(st, get("/api/v1/images/1%27%3BDROP%20TABLE%20images%3B--")))
    case("unknown image file with a bogus Range", 404,
         lambda: raw(st, get("/api/v1/images/00000000-0000-4000-8000-000000000000/file?session_id=" + SID,
                             "Range: bytes=-1-99999999999999999999\r\n")))
    case("image without a credential", 401, lambda: raw(st, get("/api/v1/images/" + IMG)), slug="credential-required")
    case("image with a malformed Bearer", 400,
         lambda: raw(st, get("/api/v1/images/" + IMG, "Authorization: Bearer x'OR'1'='1\r\n")), slug="invalid-credential")
    case("image with two Bearer tokens", 400,
         lambda: raw(st, get("/api/v1/images/" + IMG, "Authorization: Bearer %s %s\r\n" % (SID, SID))))

    # ------------------------------------------------------------ tokens and pairing codes
    forged = "itk." + "Q" * 32
    case("image with a forged token", 401, lambda: raw(st, get("/api/v1/images/" + IMG, "Authorization: Bearer %s\r\n"
                                                             % forged)), slug="invalid-token")
    case("image with a truncated token", 401,
         lambda: raw(st, get("/api/v1/images/" + IMG, "Authorization: Bearer %s\r\n" % UPT[:-3])), slug="invalid-token")
    case("image with a 300-character token", 401,
         lambda: raw(st, get("/api/v1/images/%s?session_id=itk.%s" % (IMG, "A" * 296))), slug="invalid-token")
    case("image with a token and SQL", 401,
         lambda: raw(st, get("/api/v1/images/%s?session_id=itk.%%27%%20OR%%201%%3D1--" % IMG)), slug="invalid-token")
    case("upload token reads an image", 403,
         lambda: raw(st, get("/api/v1/images/" + IMG, "Authorization: Bearer %s\r\n" % UPT)), slug="insufficient-scope")
    case("upload token downloads a file", 403,
         lambda: raw(st, get("/api/v1/images/%s/file?session_id=%s" % (IMG, UPT))), slug="insufficient-scope")
    case("upload token lists images", 403,
         lambda: raw(st, get("/api/v1/images", "Authorization: Bearer %s\r\n" % UPT)), slug="insufficient-scope")
    case("upload token deletes an image", 403,
         lambda: raw(st, post("/api/v1/images/%s?session_id=%s" % (IMG, UPT), b"", "text/plain")
                     .replace(b"POST", b"DELETE", 1)), slug="insufficient-scope")
    case("upload token renames an image", 403,
         lambda: raw(st, post("/api/v1/images/%s?session_id=%s" % (IMG, UPT), b'{"filename":"x.png"}', "application/json")
                     .replace(b"POST", b"PATCH", 1)), slug="insufficient-scope")
    case("upload token deletes the session", 403,
         lambda: raw(st, post("/api/v1/sessions/%s?session_id=%s" % (SID, UPT), b"", "text/plain")
                     .replace(b"POST", b"DELETE", 1)), slug="insufficient-scope")
    case("upload token mints a token", 403,
         lambda: raw(st, post("/api/v1/tokens?session_id=" + UPT, b'{"scope":"full","label":"x"}', "application/json")),
         slug="insufficient-scope")
    case("view token uploads", 403,
         lambda: raw(st, post("/api/v1/images", form([('name="file"; filename="a.png"', png_ok)]),
                              extra="Authorization: Bearer %s\r\n" % VIEWT)), slug="insufficient-scope")
    case("forged token in the multipart field", 401,
         lambda: raw(st, post("/api/v1/images", form([('name="session_id"', forged.encode()),
                                                      ('name="file"; filename="a.png"', png_ok)]))), slug="invalid-token")
    case("token in a session path", 404, lambda: raw(st, get("/api/v1/sessions/" + VIEWT)), slug="unknown-session")
    case("pairing with a forged code", 401,
         lambda: raw(st, post("/api/v1/pair", '{"code":"itp.%s"}' % ("Q" * 22), "application/json")),
         slug="invalid-pairing-code")
    case("pairing with SQL as the code", 401,
         lambda: raw(st, post("/api/v1/pair", '{"code":"itp.\' OR 1=1--"}', "application/json")),
         slug="invalid-pairing-code")
    case("pairing with a used code", 410,
         lambda: raw(st, post("/api/v1/pair", '{"code":"%s"}' % USED_CODE, "application/json")), slug="pairing-code-used")
    case("pairing asking for a scope", 400,
         lambda: raw(st, post("/api/v1/pair", '{"code":"%s","scope":"full"}' % USED_CODE, "application/json")),
         slug="unknown-field")
    case("pairing with a 1 MB body", 413,
         lambda: raw(st, post("/api/v1/pair", '{"code":"%s"}' % ("A" * 1000000), "application/json")))
    case("token with a NUL in its label", 400,
         lambda: raw(st, post("/api/v1/tokens?session_id=" + SID, b'{"scope":"view","label":"a\\u0000b"}',
                              "application/json")), slug="invalid-field")
    case("token with a control character in its label", 400,
         lambda: raw(st, post("/api/v1/tokens?session_id=" + SID, b'{"scope":"view","label":"a\\u001bb"}',
                              "application/json")), slug="invalid-label")
    case("revoking a device with SQL as its id", 404,
         lambda: raw(st, post("/api/v1/devices/x%27%20OR%201%3D1--?session_id=" + SID, b"", "text/plain")
                     .replace(b"POST", b"DELETE", 1)), slug="unknown-device")
    case("image file with a forged signature", 403,
         lambda: raw(st, get("/api/v1/images/%s/file?v=1&exp=9999999999&sig=%s" % (IMG, "A" * 43))), slug="bad-signature")
    case("image file with a huge exp", 403,
         lambda: raw(st, get("/api/v1/images/%s/file?v=1&exp=%s&sig=%s" % (IMG, "9" * 40, "A" * 43))), slug="bad-signature")
    case("image file with a negative version", 403,
         lambda: raw(st, get("/api/v1/images/%s/file?v=-1&exp=1&sig=%s" % (IMG, "A" * 43))), slug="bad-signature")
    case("image file with a 2 KB signature", 403,
         lambda: raw(st, get("/api/v1/images/%s/file?v=1&exp=1&sig=%s" % (IMG, "A" * 2000))), slug="bad-signature")
    case("NUL encoded in the path", 400, lambda: raw(st, get("/api/v1/%00")), by_server=True)
    case("unknown API route with NUL encoded", (400, 404), lambda: raw(st, get("/api/v1/images/%00")), by_server=True)

    # ------------------------------------------------------------ long-poll and SSE arguments
    ev = "/api/v1/events?session_id=" + SID
    case("long-poll without session_id", 400, lambda: raw(st, get("/api/v1/events?cursor=0")), slug="missing-session-id")
    case("long-poll with empty session_id", 400, lambda: raw(st, get("/api/v1/events?session_id=")))
    case("long-poll with SQL in session_id", 400, lambda: raw(st, get("/api/v1/events?session_id=%27%3B%20DELETE%20FROM%20events%3B--")))
    case("long-poll with a malformed escape", 400, lambda: raw(st, get("/api/v1/events?session_id=%ZZ")))
    case("long-poll with NUL in session_id", 400, lambda: raw(st, get("/api/v1/events?session_id=%00" + "A" * 31)),
         by_server=True)
    case("negative cursor", 400, lambda: raw(st, get(ev + "&cursor=-1")), slug="invalid-cursor")
    case("overflowing cursor", 400, lambda: raw(st, get(ev + "&cursor=99999999999999999999999")))
    case("cursor 2^63", 400, lambda: raw(st, get(ev + "&cursor=9223372036854775808")))
    case("cursor in exponent form", 400, lambda: raw(st, get(ev + "&cursor=1e3")))
    case("cursor with a plus sign", 400, lambda: raw(st, get(ev + "&cursor=%2B5")))
    case("empty cursor", 400, lambda: raw(st, get(ev + "&cursor=")))
    case("negative timeout", 400, lambda: raw(st, get(ev + "&timeout=-5")), slug="invalid-timeout")
    case("overflowing timeout", 400, lambda: raw(st, get(ev + "&timeout=18446744073709551617")))
    case("timeout with letters", 400, lambda: raw(st, get(ev + "&timeout=10s")))
    case("long-poll on an unknown session", 404, lambda: raw(st, get("/api/v1/events?session_id=" + SID_CHARS)))
    case("SSE with Last-Event-ID -1", 400, lambda: raw(st, get("/api/v1/events/stream?session_id=" + SID, "Last-Event-ID: -1\r\n")))
    case("SSE with an overflowing Last-Event-ID", 400,
         lambda: raw(st, get("/api/v1/events/stream?session_id=" + SID, "Last-Event-ID: 18446744073709551616\r\n")))
    case("SSE with a non-numeric last_event_id", 400, lambda: raw(st, get("/api/v1/events/stream?session_id=%s&last_event_id=x" % SID)))
    case("SSE on an unknown session", 404, lambda: raw(st, get("/api/v1/events/stream?session_id=" + SID_CHARS)))

    # ------------------------------------------------------------ uploads: the multipart envelope
    up = "/api/v1/images"
    good_parts = [('name="session_id"', SID.encode()), ('name="file"; filename="a.png"', png_ok)]
    case("upload without Content-Type", 400, lambda: raw(st, post(up, form(good_parts), "")), slug="not-multipart")
    case("upload as JSON", 400, lambda: raw(st, post(up, b'{"session_id":"x"}', "application/json")))
    case("multipart without boundary", 400, lambda: raw(st, post(up, form(good_parts), "multipart/form-data")))
    case("empty boundary", 400, lambda: raw(st, post(up, form(good_parts, boundary=""), "multipart/form-data; boundary=")))
    case("boundary longer than 70 characters", 400,
         lambda: raw(st, post(up, form(good_parts, boundary="b" * 200), "multipart/form-data; boundary=" + "b" * 200)))
    case("duplicate boundary parameters", (400,),
         lambda: raw(st, post(up, form(good_parts), "multipart/form-data; boundary=%s; boundary=other" % B)))
    case("body with another boundary", 400, lambda: raw(st, post(up, form(good_parts, boundary="other"))))
    case("truncated multipart (Content-Length matches)", 400,
         lambda: raw(st, post(up, form(good_parts)[:-60])), slug="truncated")
    case("missing closing boundary", 400, lambda: raw(st, post(up, form(good_parts, close=False))))
    # The client half-closes before sending what it announced: the web server drops the request
    # (no answer, or 400); the backend must roll back whatever it had started.
    case("truncated body (client stops early)", (0, 400),
         lambda: raw(st, post(up, form(good_parts)[:100], length=len(form(good_parts)))), by_server=True)
    case("part header block of 40 KB", 400,
         lambda: raw(st, post(up, b"--" + B.encode() + b"\r\nContent-Disposition: form-data; name=\"x\"; filename=\""
                              + b"a" * 40000 + b"\"\r\n\r\nx\r\n--" + B.encode() + b"--\r\n")))
    case("part without Content-Disposition", 400,
         lambda: raw(st, post(up, b"--" + B.encode() + b"\r\nContent-Type: image/png\r\n\r\nxx\r\n--" + B.encode() + b"--\r\n")))
    case("NUL byte in a part header", 400,
         lambda: raw(st, post(up, form([('name="session_id"', SID.encode()), ('name="fi\x00le"; filename="a.png"', png_ok)]))))
    case("NUL byte in the session_id field", 400,
         lambda: raw(st, post(up, form([('name="session_id"', SID.encode() + b"\x00x"), ('name="file"; filename="a.png"', png_ok)]))))
    case("declared 300 KB (over max_request_bytes)", 413,
         lambda: raw(st, post(up, b"x" * 100, length=300 * 1024), shut=False), slug="request-too-large")

    def endless_declared():
        """Parts that never reach a closing boundary, up to just under max_request_bytes."""
        n = 250 * 1024
        junk = b"--" + B.encode() + b"\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n" + b"p" * 1000 + b"\r\n"
        body = form([('name="session_id"', SID.encode())], close=False)
        while len(body) < n:
            body += junk
        return raw(st, post(up, body[:n]))
    case("endless multipart within the size limit", 400, endless_declared, slug="truncated")

    def endless():
        """Chunked upload that never ends: parts keep coming until the server stops reading."""
        s = socket.create_connection(("127.0.0.1", st.port), timeout=30)
        s.sendall(("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=%s\r\n"
                   "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n" % (up, B)).encode())
        part = form([('name="session_id"', SID.encode())], close=False)
        junk = b"--" + B.encode() + b"\r\nContent-Disposition: form-data; name=\"pad\"\r\n\r\n" + b"p" * 8000 + b"\r\n"
        data = part
        sent = 0
        try:
            while sent < 256 * 1024 * 1024:
                s.sendall(b"%x\r\n%s\r\n" % (len(data), data))
                sent += len(data)
                data = junk
        except (BrokenPipeError, ConnectionResetError, socket.timeout):
            pass
        r = Raw(recv_all(s))
        s.close()
        return r
    # lighttpd streams bodies to FastCGI only with a known length: it collects a chunked one
    # first, and refuses it once it passes var.chunked_max_kib (210 MiB), as problem+json.
    case("endless chunked multipart", 413, endless, slug="request-too-large")

    # ------------------------------------------------------------ uploads: fields and files
    def upload(parts):
        return raw(st, post(up, form(parts)))
    case("SQL in source", 400, lambda: upload([('name="session_id"', SID.encode()), ('name="source"', b"web'; DROP TABLE images;--"),
                                              ('name="file"; filename="a.png"', png_ok)]), slug="unknown-source")
    case("SQL in session_id", 400, lambda: upload([('name="session_id"', b"' OR 1=1 --"), ('name="file"; filename="a.png"', png_ok)]))
    case("unknown session", 404, lambda: upload([('name="session_id"', SID_CHARS.encode()), ('name="file"; filename="a.png"', png_ok)]))
    case("session_id field of 5000 bytes", (400, 413), lambda: upload([('name="session_id"', b"A" * 5000), ('name="file"; filename="a.png"', png_ok)]))
    case("no session_id", 400, lambda: upload([('name="file"; filename="a.png"', png_ok)]), slug="missing-session-id")
    case("no file part", 400, lambda: upload([('name="session_id"', SID.encode())]), slug="missing-file")
    case("text with a .png name", 415, lambda: upload([('name="session_id"', SID.encode()),
                                                      ('name="file"; filename="evil.png"', b"hello, I am not an image\n" * 10)]))
    case("HTML with a .jpg name", 415, lambda: upload([('name="session_id"', SID.encode()),
                                                      ('name="file"; filename="x.jpg"', b"<html><script>alert(1)</script></html>")]))
    case("SVG with a script", 415, lambda: upload([('name="session_id"', SID.encode()),
                                                  ('name="file"; filename="x.svg"', b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>')]))
    case("PNG signature only", 415, lambda: upload([('name="session_id"', SID.encode()),
                                                   ('name="file"; filename="x.png"', b"\x89PNG\r\n\x1a\n")]))
    case("JPEG magic then garbage", 415, lambda: upload([('name="session_id"', SID.encode()),
                                                        ('name="file"; filename="x.jpg"', b"\xff\xd8\xff\xe0" + os.urandom(2000))]))
    case("tiny PNG declaring 100000x100000", 413, lambda: upload([('name="session_id"', SID.encode()),
                                                                 ('name="file"; filename="bomb.png"', png_bomb())]),
         slug="too-many-pixels")
    case("a valid image followed by a non-image", 415, lambda: upload([('name="session_id"', SID.encode()),
                                                                      ('name="file"; filename="a.png"', png_ok),
                                                                      ('name="file"; filename="b.png"', b"nope")]))
    case("more files than max_files", 413, lambda: upload([('name="session_id"', SID.encode())] +
                                                         [('name="file"; filename="%d.png"' % i, png_ok) for i in range(4)]))
    case("file over max_upload_bytes", 413, lambda: upload([('name="session_id"', SID.encode()),
                                                           ('name="file"; filename="big.png"', png_bytes(160, 160, level=0))]))
    # Before the session is known, files wait in a local temporary file (never the database),
    # and only up to max_staged_bytes.
    jpeg_junk = b"\xff\xd8\xff\xe0" + os.urandom(40000)
    case("40 KB file before session_id (over max_staged_bytes)", 400,
         lambda: upload([('name="file"; filename="a.jpg"', jpeg_junk), ('name="session_id"', SID.encode())]),
         slug="session-id-first")
    case("40 KB file and no session at all", 400, lambda: upload([('name="file"; filename="a.jpg"', jpeg_junk)]),
         slug="session-id-first")
    case("two session_id fields", 400, lambda: upload([('name="session_id"', SID.encode()), ('name="session_id"', SID_CHARS.encode()),
                                                      ('name="file"; filename="a.png"', png_ok)]), slug="duplicate-field")
    case("two source fields", 400, lambda: upload([('name="session_id"', SID.encode()), ('name="source"', b"web"),
                                                  ('name="source"', b"cli"), ('name="file"; filename="a.png"', png_ok)]),
         slug="duplicate-field")
    case("two filename parameters", 400, lambda: upload([('name="session_id"', SID.encode()),
                                                        ('name="file"; filename="a.png"; filename="a.html"', png_ok)]),
         slug="malformed-multipart")
    case("two name parameters", 400, lambda: upload([('name="session_id"', SID.encode()),
                                                    ('name="file"; name="source"; filename="a.png"', png_ok)]),
         slug="malformed-multipart")
    case("session_id field disagreeing with the Authorization header", 400,
         lambda: raw(st, post(up, form([('name="session_id"', SID_CHARS.encode()), ('name="file"; filename="a.png"', png_ok)]),
                              extra="Authorization: Bearer %s\r\n" % SID)), slug="session-mismatch")
    case("malformed Bearer credential", 400,
         lambda: raw(st, post(up, form(good_parts), extra="Authorization: Bearer a b\r\n")), slug="invalid-session-id")
    case("unknown session in the URL, file first", 404,
         lambda: raw(st, post(up + "?session_id=" + SID_CHARS, form([('name="file"; filename="a.jpg"', jpeg_junk)]))),
         slug="unknown-session")
    case("invalid UTF-8 and a traversal in the filename, but not an image", 415,
         lambda: upload([('name="session_id"', SID.encode()),
                         (b'name="file"; filename="../../\xff\xfe\xc0\xaf.png"', b"not an image")]))

    # ------------------------------------------------------------ JSON bodies
    patch = "/api/v1/images/%s?session_id=%s" % (IMG, SID)
    case("PATCH with broken JSON", 400, lambda: raw(st, post(patch, b"{nope", "application/json").replace(b"POST", b"PATCH", 1)),
         slug="bad-json")
    case("PATCH with a JSON array", 400, lambda: raw(st, post(patch, b"[]", "application/json").replace(b"POST", b"PATCH", 1)))
    case("PATCH with trailing garbage", 400,
         lambda: raw(st, post(patch, b'{"filename":"x.png"} extra', "application/json").replace(b"POST", b"PATCH", 1)))
    case("PATCH with a NUL in the filename", 400,
         lambda: raw(st, post(patch, b'{"filename":"a\\u0000b.png"}', "application/json").replace(b"POST", b"PATCH", 1)))
    case("PATCH with a non-string filename", 400,
         lambda: raw(st, post(patch, b'{"filename":{"$ne":1}}', "application/json").replace(b"POST", b"PATCH", 1)))
    case("PATCH with 1 MB of JSON", 413,
         lambda: raw(st, post(patch, b'{"filename":"' + b"a" * 1000000 + b'"}', "application/json").replace(b"POST", b"PATCH", 1)))
    case("PATCH with deeply nested JSON", 400,
         lambda: raw(st, post(patch, b"[" * 5000 + b"]" * 5000, "application/json").replace(b"POST", b"PATCH", 1)))
    case("DELETE an image with a body", 413,
         lambda: raw(st, post(patch, b"x" * 200000, "text/plain").replace(b"POST", b"DELETE", 1)))

    # ------------------------------------------------------------ the HTTP layer (the web server answers)
    case("Content-Length negative", 400, lambda: raw(st, post(up, b"", length=-1)), by_server=True)
    case("Content-Length not a number", 400,
         lambda: raw(st, post(up, b"").replace(b"Content-Length: 0", b"Content-Length: abc")), by_server=True)
    case("two different Content-Lengths", 400,
         lambda: raw(st, post(up, b"xx").replace(b"Content-Length: 2", b"Content-Length: 2\r\nContent-Length: 5")), by_server=True)
    case("100 KB header", 431, lambda: raw(st, get("/api/v1/health", "X-Big: " + "a" * 100000 + "\r\n")), by_server=True)
    case("NUL byte in the request line", 400, lambda: raw(st, b"GET /api/v1/he\x00alth HTTP/1.1\r\nHost: x\r\n\r\n"),
         by_server=True)
    case("NUL byte in a header", 400, lambda: raw(st, get("/api/v1/health", "X-A: a\x00b\r\n")), by_server=True)
    case("garbage request line", 400, lambda: raw(st, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"),
         by_server=True)

    # ------------------------------------------------------------ the same, with curl
    case("curl: upload of a text file as image/png", 415,
         lambda: curl("-F", "session_id=" + SID, "-F", "file=@%s;type=image/png;filename=x.png" % st.config,
                      st.url + "/api/v1/images"))
    case("curl: upload into a malformed session", 400,
         lambda: curl("-F", "session_id=../../etc", "-F", "file=@%s" % os.path.join(st.dir, "ok.png"), st.url + "/api/v1/images"))
    case("curl: SQL in every query field", 400,
         lambda: curl(st.url + "/api/v1/events?session_id=%27--&cursor=%27--&timeout=%27--"))
    case("curl: long-poll cursor overflow", 400,
         lambda: curl(st.url + "/api/v1/events?session_id=%s&cursor=184467440737095516160" % SID))

    # ------------------------------------------------------------ WebSocket (the bridge, through lighttpd)
    def ws_case(name, data, codes):
        ncases[0] += 1
        before = counts()
        try:
            ws = WsClient.connect("127.0.0.1", st.port, "/api/v1/ws/%s?last_event_id=0" % SID)
            ws.recv_json(timeout=10)  # connection.status
            try:
                ws.send_raw(data)
            except OSError:
                pass
            code, _ = ws.expect_close(timeout=15)
            ws.abort()
        except Exception as e:
            tap.ok(False, "%s: raised %r" % (name, e))
            return
        tap.ok(code in codes, "%s: closed with %s (got %s)" % (name, "/".join(map(str, codes)), code))
        ws2 = WsClient.connect("127.0.0.1", st.port, "/api/v1/ws/" + SID)
        tap.is_(ws2.recv_json(timeout=10).get("type"), "connection.status", "%s: the bridge serves the next socket" % name)
        ws2.abort()
        tap.is_(counts(), before, "%s: nothing stored" % name)

    ws_case("WebSocket message over ws_max_message", frame(OP_TEXT, b"x" * 70000), (1009,))
    ws_case("WebSocket frame declaring 2^62 bytes", frame(OP_TEXT, b"", length=1 << 62), (1009, 1002))
    ws_case("WebSocket frame declaring 2^63 bytes (invalid)", frame(OP_TEXT, b"", length=1 << 63), (1002, 1009))
    ws_case("WebSocket text frame with invalid UTF-8", frame(OP_TEXT, b"\xff\xfe\xc0\xaf"), (1007,))
    ncases[0] += 1
    try:
        ws = WsClient.connect("127.0.0.1", st.port, "/api/v1/ws/" + "%27%20OR%201%3D1--")
        code, _ = ws.expect_close(timeout=10)
        ws.abort()
        tap.is_(code, 4004, "WebSocket with SQL as session id: closed with 4004 Invalid session")
    except HandshakeError as e:
        tap.ok(e.status in (400, 404), "WebSocket with SQL as session id: refused (%s)" % e.status)
    tap.ok(alive(), "WebSocket with SQL as session id: the server answers the next request")

    tap.ok(ncases[0] >= 50, "the catalogue has at least 50 cases (%d)" % ncases[0])

    # The slowloris upload is cut by the web server's idle limit, and the
    # catalogue above was served meanwhile.
    slow_thread.join(timeout=120)
    tap.ok(not slow_thread.is_alive() and slow.get("seconds", 999) < 100,
           "a slowloris upload is cut by max-read-idle (after %.0f s)" % slow.get("seconds", -1))
    tap.ok(alive(), "and the server still answers")
    tap.is_(st.sql("SELECT count(*) FROM images"), "1", "in the end only the setup image is stored")

tap.done()
