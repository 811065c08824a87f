"""test_tus_servers.py: the tus protocol under the other web servers with their shipped configs: Apache
mod_proxy_fcgi, Apache mod_cgi (shared hosting, in a subdirectory) and lighttpd mod_cgi: discovery, creation,
PATCH in parts, HEAD, checksum refusal, termination, and the image made from the bytes."""

import base64
import hashlib
import json

from apache import ApacheStack, LighttpdCgiStack, prerequisites
from harness import Tap
from uploads_util import png_bytes

why = prerequisites("apache", "lighttpd")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
V = {"Tus-Resumable": "1.0.0"}
data = png_bytes(640, 480, level=0)


def b64(s):
    return base64.b64encode(s.encode()).decode()


def run(st, label):
    p = st.prefix or ""
    S = st.new_session() if not p else None
    if S is None:
        r = st.request("POST", p + "/api/v1/sessions", body=b"", headers={"Content-Length": "0"})
        S = r.json()["session_id"]
    r = st.request("OPTIONS", p + "/api/v1/uploads/tus")
    tap.ok(r.status in (200, 204) and r.header("Tus-Version") == "1.0.0"
           and "creation" in (r.header("Tus-Extension") or ""), "%s: OPTIONS discovery" % label)
    r = st.request("POST", p + "/api/v1/uploads/tus", body=b"", headers=dict(V, **{
        "Content-Length": "0", "Upload-Length": str(len(data)),
        "Upload-Metadata": "session_id %s,filename %s" % (b64(S), b64(label.replace(" ", "-") + ".png"))}))
    tap.is_(r.status, 201, "%s: created" % label)
    loc = r.header("Location") or "/"
    tap.ok(loc.startswith(p + "/api/v1/uploads/tus/"), "%s: Location under the site's prefix (%s)" % (label, loc))
    half = len(data) // 2
    h = dict(V, **{"Content-Type": "application/offset+octet-stream"})
    r = st.request("PATCH", loc, body=data[:half], headers=dict(h, **{"Upload-Offset": "0"}))
    tap.is_((r.status, r.header("Upload-Offset")), (204, str(half)), "%s: first PATCH" % label)
    r = st.request("HEAD", loc, headers=V)
    tap.is_((r.status, r.header("Upload-Offset")), (200, str(half)), "%s: HEAD" % label)
    r = st.request("PATCH", loc, body=data[half:], headers=dict(h, **{
        "Upload-Offset": str(half), "Upload-Checksum": "sha1 " + base64.b64encode(b"x" * 20).decode()}))
    st.is_problem(r, 460, "%s: checksum mismatch" % label)
    r = st.request("PATCH", loc, body=data[half:], headers=dict(h, **{"Upload-Offset": "1"}))
    st.is_problem(r, 409, "%s: wrong offset" % label)
    r = st.request("PATCH", loc, body=data[half:], headers=dict(h, **{"Upload-Offset": str(half)}))
    tap.is_((r.status, r.header("Upload-Offset")), (204, str(len(data))), "%s: last PATCH" % label)
    rows = st.sql("SELECT payload::text FROM events WHERE session_id = :'p1' AND type = 'image.uploaded'", S)
    ev = [json.loads(x) for x in rows.splitlines()]
    tap.is_(len(ev), 1, "%s: one image.uploaded" % label)
    sha = st.sql("SELECT sha256 FROM images WHERE id = :'p1'",
                 ev[0]["image_id"] if ev else "00000000-0000-0000-0000-000000000000")
    tap.is_(sha, hashlib.sha256(data).hexdigest(), "%s: byte-identical" % label)
    r = st.request("POST", p + "/api/v1/uploads/tus", body=b"", headers=dict(V, **{
        "Content-Length": "0", "Upload-Length": "100", "Upload-Metadata": "session_id " + b64(S)}))
    loc = r.header("Location") or "/"
    r = st.request("DELETE", loc, headers=V)
    tap.is_(r.status, 204, "%s: DELETE" % label)
    tap.is_(st.request("HEAD", loc, headers=V).status, 404, "%s: gone after DELETE" % label)
    r = st.request("PATCH", loc, body=b"x", headers=dict(h, **{"Tus-Resumable": "0.2.2", "Upload-Offset": "0"}))
    st.is_problem(r, 412, "%s: wrong Tus-Resumable" % label)


with ApacheStack(tap, mode="fcgi", settings={"thumbnail_size": "64"}) as st:
    run(st, "apache fcgi")
with ApacheStack(tap, mode="cgi", prefix="/imagetools", settings={"thumbnail_size": "64"}) as st:
    run(st, "apache cgi")
with LighttpdCgiStack(tap, settings={"thumbnail_size": "64"}) as st:
    run(st, "lighttpd cgi")
tap.done()
