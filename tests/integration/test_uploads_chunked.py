"""test_uploads_chunked.py: uploads whose length is not known up front (Transfer-Encoding: chunked,
as `curl -T -`, Python generators and OkHttp send them) under every shipped web server setup:
lighttpd FastCGI and CGI, Apache mod_proxy_fcgi and mod_cgi. Each client succeeds, a 45 MB
chunked body comes back byte for byte, an over-limit one is refused with problem+json and
leaves nothing behind, the web server's own refusals are problem+json too, and the field names
common uploaders use (Uppy's bundle mode sends `files[]`) are file fields.

Run one setup only with IT_CHUNKED_SERVERS=lighttpd-fcgi (comma-separated names)."""

import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from apache import ApacheStack, LighttpdCgiStack, prerequisites
from harness import Stack, Tap
from uploads_util import multipart, png_bytes, read_to_end, vm_hwm_kb

tap = Tap()
work = tempfile.mkdtemp(prefix="it-chunked-")

# The over-limit body passes max_request_bytes by a few MB; the 45 MB image is within both limits.
SETTINGS = {"max_request_bytes": "48M", "max_upload_bytes": "47M", "max_files": "5", "thumbnail_size": "64"}

try:
    import requests
except ImportError:
    requests = None


def sha(data):
    return hashlib.sha256(data).hexdigest()


def pieces(body, size, pause=0.0):
    """The body in pieces of size bytes; with pause, the first piece goes out alone, so the web
    server reads the headers long before the body is complete."""
    for i in range(0, len(body), size):
        yield body[i:i + size]
        if i == 0 and pause:
            time.sleep(pause)


small_png = png_bytes(120, 80)
with open(os.path.join(work, "small.png"), "wb") as f:
    f.write(small_png)
# About 45 MB of incompressible pixels, stored (level 0): 3880 x 3880 x 3 bytes.
big_png = png_bytes(3880, 3880, level=0)


def run(st, label):
    pre = getattr(st, "prefix", "")
    url = st.url + pre + "/api/v1/images"
    r = st.request("POST", pre + "/api/v1/sessions", body=b"", headers={"Content-Length": "0"})
    S = r.json()["session_id"]

    def counts():
        return st.sql("SELECT (SELECT count(*) FROM images) || ' ' || (SELECT count(*) FROM blobs) || ' ' ||"
                      " (SELECT count(*) FROM blob_chunks) || ' ' || (SELECT count(*) FROM events)")

    def stored(image_id):
        return st.sql("SELECT size || ' ' || sha256 FROM images WHERE id = :'p1'", image_id)

    def images_of(status, body, name, want=1):
        try:
            imgs = json.loads(body.decode()).get("images") or []
        except Exception:
            imgs = []
        if not tap.is_((status, len(imgs)), (201, want), "%s: %s: 201 with %d image(s)" % (label, name, want)):
            tap.diag(body[:400])
        return imgs

    def chunked_post(body, ctype, pause=0.0, size=65536):
        c = http.client.HTTPConnection("127.0.0.1", st.port, timeout=120)
        try:
            c.request("POST", pre + "/api/v1/images", body=pieces(body, size, pause),
                      headers={"Content-Type": ctype}, encode_chunked=True)
            resp = c.getresponse()
            return resp.status, resp.getheader("Content-Type") or "", resp.read()
        finally:
            c.close()

    def problem(status, ctype, body, want_status, want_slug, name):
        try:
            p = json.loads(body.decode())
        except Exception:
            p = {}
        ok = tap.is_((status, ctype.split(";")[0]), (want_status, "application/problem+json"),
                     "%s: %s: %d problem+json" % (label, name, want_status))
        ok &= tap.is_((p.get("status"), p.get("type")), (want_status, "urn:imagetools:problem:" + want_slug),
                      "%s: %s: the problem says %s" % (label, name, want_slug))
        if not ok:
            tap.diag(body[:400])

    # ---------------------------------------------------------------- clients that send chunked
    ctype, body = multipart([("session_id", S), ("source", "android_app")], [("file", 'filename="a.png"', small_png)])
    status, _, out = chunked_post(body, ctype, pause=0.3, size=4096)
    imgs = images_of(status, out, "http.client, chunked, body still coming after the headers")
    if imgs:
        tap.is_(stored(imgs[0]["id"]), "%d %s" % (len(small_png), sha(small_png)),
                "%s: http.client chunked: the bytes stored are the bytes sent" % label)

    if requests is not None:
        r = requests.post(url, data=pieces(body, 1000, pause=0.2), headers={"Content-Type": ctype}, timeout=60)
        images_of(r.status_code, r.content, "python requests with a generator body")
    else:
        tap.skip("%s: python requests with a generator body" % label, "python3-requests is not installed")

    # curl -T - reads the body from stdin: its length is unknown, so curl sends it chunked.
    p = subprocess.run(["curl", "-sS", "-X", "POST", "-T", "-", "-H", "Content-Type: " + ctype, "-o", "-",
                        "-w", "\n%{http_code}", url], input=body, capture_output=True, timeout=60)
    out, _, code = p.stdout.rpartition(b"\n")
    images_of(int(code or 0), out, "curl -T - (body from stdin)")

    status, headers, out = st.curl("-H", "Transfer-Encoding: chunked", "-F", "session_id=" + S,
                                   "-F", "file=@%s" % os.path.join(work, "small.png"), url)
    tap.like(headers, r"(?i)^HTTP/1\.1 201", "%s: curl -H 'Transfer-Encoding: chunked' -F: 201" % label)
    images_of(status, out, "curl -H 'Transfer-Encoding: chunked' -F")

    # Uppy's XHR upload in bundle mode: every file in one request, each part named files[].
    ctype2, body2 = multipart([("session_id", S)], [("files[]", 'filename="u1.png"', small_png),
                                                    ("files[]", 'filename="u2.png"', small_png)])
    status, _, out = chunked_post(body2, ctype2)
    imgs = images_of(status, out, "Uppy bundle mode (two files[] parts, chunked)", want=2)
    tap.is_(sorted(i.get("filename") for i in imgs), ["u1.png", "u2.png"], "%s: both files[] parts stored" % label)

    # ---------------------------------------------------------------- 45 MB, chunked
    ctype, body = multipart([("session_id", S)], [("file", 'filename="big.png"', big_png)])
    status, _, out = chunked_post(body, ctype, pause=0.2)
    imgs = images_of(status, out, "45 MB chunked")
    if imgs:
        st_code, _, down = st.curl(st.url + imgs[0]["file_url"])
        tap.ok(st_code == 200 and len(down) == len(big_png) and down == big_png,
               "%s: 45 MB chunked: the download is byte-identical (%d bytes)" % (label, len(down)))
    pids = st.fcgi_pids() if "fcgi" in label else []
    if pids and not st.sanitized():
        # The whole process, every thread, after all the uploads above (about 60 MB here); a
        # body held in memory would add its 45 MB on top.
        hwm = max(vm_hwm_kb(p) for p in pids)
        tap.ok(hwm < 96 * 1024, "%s: imagetools.fcgi peak RSS stays under 96 MB (%d KiB)" % (label, hwm))

    # ---------------------------------------------------------------- over the limit, chunked
    before = counts()
    # Two files of 25 MB, each within max_upload_bytes, together over max_request_bytes.
    padded = small_png + os.urandom(25 << 20)
    ctype, body = multipart([("session_id", S)], [("file", 'filename="h1.png"', padded),
                                                  ("file", 'filename="h2.png"', padded)])
    status, rtype, out = chunked_post(body, ctype)
    problem(status, rtype, out, 413, "request-too-large", "a 50 MB chunked body over max_request_bytes (48M)")
    tap.is_(counts(), before, "%s: over-limit chunked body: nothing stored" % label)

    # A file over max_upload_bytes in a chunked body that stays within max_request_bytes.
    ctype, body = multipart([("session_id", S)], [("file", 'filename="x.png"', big_png + os.urandom(4 << 20))])
    status, rtype, out = chunked_post(body, ctype)
    problem(status, rtype, out, 413, "file-too-large", "a 49 MB file over max_upload_bytes (47M), chunked")
    tap.is_(counts(), before, "%s: over-limit chunked file: nothing stored" % label)

    return S


def raw_answer(st, head, body=b""):
    """Sends a hand-made request and returns (status, header text, body bytes) of the answer."""
    s = socket.create_connection(("127.0.0.1", st.port), timeout=60)
    try:
        s.sendall(head.encode() + body)
        status, raw = read_to_end(s)
    finally:
        s.close()
    h, _, b = raw.partition(b"\r\n\r\n")
    h = h.decode(errors="replace")
    if re.search(r"(?im)^Transfer-Encoding: chunked", h):
        out, rest = b"", b
        while rest:
            size, _, rest = rest.partition(b"\r\n")
            n = int(size.split(b";")[0] or b"0", 16)
            if n == 0:
                break
            out, rest = out + rest[:n], rest[n + 2:]
        b = out
    return status, h, b


def server_refusals(st, label):
    """What the web server refuses itself, before the application sees the body, is answered
    as problem+json too (lighttpd's server.error-handler, Apache's ErrorDocument)."""
    pre = getattr(st, "prefix", "")
    head = ("POST %s/api/v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; "
            "boundary=b\r\n%%s\r\nConnection: close\r\n\r\n" % pre)

    def check(status, h, b, want, slug, name):
        tap.is_(status, want, "%s: %s: the web server answers %d" % (label, name, want))
        tap.like(h, r"(?im)^Content-Type: application/problem\+json", "%s: %s: as problem+json" % (label, name))
        tap.like(b.decode(errors="replace"), r'"type":"urn:imagetools:problem:%s"' % slug,
                 "%s: %s: naming the problem (%s)" % (label, name, slug))

    status, h, b = raw_answer(st, head % "Transfer-Encoding: chunked", b"zz\r\nnot a chunk size\r\n0\r\n\r\n")
    check(status, h, b, 400, "bad-request", "a malformed chunked body")
    if label.startswith("lighttpd"):
        # Apache waits for the declared body before it refuses it; lighttpd refuses at once.
        status, h, b = raw_answer(st, head % "Content-Length: 300000000")
        check(status, h, b, 413, "request-too-large", "a declared 300 MB body")


def cgi_direct(st):
    """imagetools.fcgi as a plain CGI program, the way a web server runs it, with stdin a pipe
    that stays open (RFC 3875 does not promise an end of file after the body)."""
    S = st.new_session()
    ctype, body = multipart([("session_id", S)], [("file", 'filename="c.png"', small_png)])
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "IMAGETOOLS_CONFIG": st.config,
            "GATEWAY_INTERFACE": "CGI/1.1", "REQUEST_METHOD": "POST", "REQUEST_URI": "/api/v1/images",
            "CONTENT_TYPE": ctype, "REMOTE_ADDR": "127.0.0.1", "SERVER_PROTOCOL": "HTTP/1.1"}

    def bounded(extra, data, close=False):
        """Runs one CGI request; returns its status, or None when it was still waiting after 20 s
        (then it is killed). With close=False stdin stays open until the program has exited."""
        p = subprocess.Popen([st.bin("cgi-bin/imagetools.fcgi")], env=dict(base, **extra), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        out = []
        reader = threading.Thread(target=lambda: out.append(p.stdout.read()))
        reader.start()
        p.stdin.write(data)
        p.stdin.flush()
        if close:
            p.stdin.close()
        reader.join(20)
        timed_out = reader.is_alive()
        if timed_out:
            p.kill()
            reader.join(10)
        if not close:
            p.stdin.close()
        p.wait()
        if timed_out or not out:
            return None
        m = re.match(rb"Status: (\d+)", out[0])
        return int(m.group(1)) if m else 0

    tap.is_(bounded({"CONTENT_LENGTH": str(len(body))}, body + b"more bytes the server left in the pipe"), 201,
            "cgi: reads CONTENT_LENGTH bytes and never waits for more (stdin left open)")
    tap.is_(bounded({}, body), 400,
            "cgi: no CONTENT_LENGTH and no Transfer-Encoding is no body (RFC 3875), answered at once")
    tap.is_(bounded({"HTTP_TRANSFER_ENCODING": "chunked"}, body, close=True), 201,
            "cgi: a de-chunked body without CONTENT_LENGTH (Apache mod_cgi) is read to its end")


SETUPS = [
    ("lighttpd-fcgi", "lighttpd", lambda: Stack(tap, settings=SETTINGS)),
    ("lighttpd-cgi", "lighttpd", lambda: LighttpdCgiStack(tap, settings=SETTINGS)),
    ("apache-fcgi", "apache", lambda: ApacheStack(tap, mode="fcgi", settings=SETTINGS)),
    ("apache-cgi", "apache", lambda: ApacheStack(tap, mode="cgi", settings=SETTINGS)),
]
only = [s for s in os.environ.get("IT_CHUNKED_SERVERS", "").split(",") if s]

for name, server, make in SETUPS:
    if only and name not in only:
        continue
    why = prerequisites(server)
    if why:
        tap.skip(name, why)
        continue
    with make() as st:
        run(st, name)
        server_refusals(st, name)
        if name == "lighttpd-cgi":
            cgi_direct(st)
shutil.rmtree(work, ignore_errors=True)
tap.done()
