"""test_access.py: an image or operation id is a name, never a key. Every image and operation call
needs the session credential (Bearer or ?session_id=); another session's credential gets the same 404
as an unknown id; nothing answers with a session id the caller did not send; file and thumbnail bytes
are also reachable through the signed, expiring URLs the API hands out, and through nothing else."""

import base64
import hashlib
import hmac
import json
import re
import time
import uuid

from harness import Stack, Tap
from uploads_util import png_bytes
from worker_util import jpeg_bytes, put_image

tap = Tap()

KEY_HEX = "5c0ffee1" * 8  # 32 bytes: URLs can be crafted here with the server's own key
KEY = bytes.fromhex(KEY_HEX)
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def sign(label, image_id, version, exp, key=KEY):
    """The signature docs/security.md describes: base64url(HMAC-SHA256(key, message)), unpadded."""
    msg = "imagetools-url-1\n%s\n%s\n%d\n%d" % (label, image_id, version, exp)
    mac = hmac.new(key, msg.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def signed_url(label, image_id, version, exp, sig=None):
    return "/api/v1/images/%s/%s?v=%d&exp=%d&sig=%s" % (image_id, label, version, exp,
                                                         sig or sign(label, image_id, version, exp))


def without_instance(body):
    return {k: v for k, v in (body or {}).items() if k != "instance"}


with Stack(tap, settings={"url_signing_key": KEY_HEX, "signed_url_ttl": 3600}) as st:
    A = st.new_session()
    B = st.new_session()
    jpeg = jpeg_bytes(96, 64)
    IMG = put_image(st, A, jpeg, filename="holiday.jpg")
    OTHER = put_image(st, A, png_bytes(8, 8), filename="other.png")
    r = st.request("POST", "/api/v1/operations", body={"session_id": A, "type": "bulk_compress",
                                                       "image_ids": [OTHER]})
    tap.is_(r.status, 202, "an operation is queued in session A (no worker runs: it stays queued)")
    OP = r.json().get("id", UNKNOWN)
    tap.ok("session_id" not in r.json(), "the operation answer does not carry session_id")

    def state():
        """What a refused call must leave as it was."""
        return st.sql("SELECT (SELECT string_agg(id || ':' || filename || ':' || version, ',' ORDER BY id)"
                      " FROM images) || ' ' || (SELECT status || ':' || cancel_requested FROM operations"
                      " WHERE id = :'p1') || ' ' || (SELECT count(*) FROM events)", OP)

    def bearer(sid):
        return {"Authorization": "Bearer " + sid}

    def call(method, path, cred=None, how="bearer", body=None, headers=None):
        """One request presenting cred (None: no credential) as a Bearer header or in the query."""
        headers = dict(headers or {})
        if cred is not None and how == "bearer":
            headers.update(bearer(cred))
        elif cred is not None:
            path += ("&" if "?" in path else "?") + "session_id=" + cred
        if method in ("POST", "DELETE") and body is None:
            body, headers["Content-Length"] = b"", "0"
        return st.request(method, path, body=body, headers=headers)

    ENDPOINTS = [
        # name, method, path, body, the right credential's status, the slug of a 404
        ("get", "GET", "/api/v1/images/%s", None, 200, "unknown-image"),
        ("file", "GET", "/api/v1/images/%s/file", None, 200, "unknown-image"),
        ("thumbnail", "GET", "/api/v1/images/%s/thumbnail", None, 200, "unknown-image"),
        ("patch", "PATCH", "/api/v1/images/%s", {"filename": "renamed.jpg"}, 200, "unknown-image"),
        ("operation get", "GET", "/api/v1/operations/%s", None, 200, "unknown-operation"),
        ("cancel", "POST", "/api/v1/operations/%s/cancel", None, 202, "unknown-operation"),
        ("delete", "DELETE", "/api/v1/images/%s", None, 204, "unknown-image"),
    ]

    # ------------------------------------------------------------ refused: no credential, another session's
    for name, method, path, body, _, slug in ENDPOINTS:
        target = path % (OP if "operations" in path else IMG)
        before = state()
        r = call(method, target, body=body)
        b = st.is_problem(r, 401, "%s without a credential" % name)
        tap.is_((b or {}).get("type"), "urn:imagetools:problem:credential-required", "%s: credential-required" % name)
        tap.like(r.header("WWW-Authenticate") or "", r"^Bearer\b", "%s: WWW-Authenticate: Bearer" % name)
        tap.ok(A not in r.body.decode(errors="replace"), "%s: the answer does not name the session" % name)
        for how in ("bearer", "query"):
            r = call(method, target, B, how, body=body)
            b = st.is_problem(r, 404, "%s with another session's credential (%s)" % (name, how))
            unknown = call(method, path % UNKNOWN, B, how, body=body)
            tap.is_(without_instance(b), without_instance(unknown.json()),
                    "%s (%s): the same answer as for an unknown id" % (name, how))
            tap.is_((b or {}).get("type"), "urn:imagetools:problem:" + slug, "%s (%s): %s" % (name, how, slug))
            tap.ok(A not in r.body.decode(errors="replace") and A not in str(r.headers),
                   "%s (%s): the answer does not name the owner's session" % (name, how))
        r = call(method, target, "not a session id!", body=body)
        st.is_problem(r, 400, "%s with a malformed credential" % name)
        r = call(method, target, body=body, headers={"Authorization": "Basic dXNlcjpwYXNz"})
        st.is_problem(r, 401, "%s with only a Basic Authorization (a site password, not a credential)" % name)
        tap.is_(state(), before, "%s: refused calls changed nothing (rows, operation, events)" % name)

    # ------------------------------------------------------------ the owner: Bearer and query both work
    for name, method, path, body, status, _ in ENDPOINTS:
        target = path % (OP if "operations" in path else IMG)
        if name == "delete":
            continue
        for how in ("bearer", "query"):
            if name in ("patch", "cancel") and how == "query":
                continue
            r = call(method, target, A, how, body=body)
            tap.is_(r.status, status, "%s with the session credential (%s): %d" % (name, how, status))
            if (r.header("Content-Type") or "").startswith("application/json"):
                tap.ok("session_id" not in r.json(), "%s (%s): the JSON carries no session_id" % (name, how))
    r = call("GET", "/api/v1/images/%s/file" % IMG, A)
    tap.is_(r.body, jpeg, "the owner downloads the bytes with the credential alone")
    r = call("GET", "/api/v1/images/%s" % IMG, A, "query", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    tap.is_(r.status, 200, "behind a site's Basic password, the credential in the query still works")
    tap.is_(st.sql("SELECT filename FROM images WHERE id = :'p1'", IMG), "renamed.jpg", "the owner's PATCH renamed")
    tap.is_(st.sql("SELECT status FROM operations WHERE id = :'p1'", OP), "cancelled", "the owner's cancel cancelled")

    # ------------------------------------------------------------ listings: by the session in the path
    r = st.request("GET", "/api/v1/sessions/%s/images" % A)
    tap.is_(r.status, 200, "the owner lists its images")
    imgs = r.json().get("images", [])
    tap.is_(sorted(i["id"] for i in imgs), sorted([IMG, OTHER]), "both images listed")
    tap.ok(all("session_id" not in i for i in imgs), "listed images carry no session_id")
    r = st.request("GET", "/api/v1/sessions/%s/images" % B)
    tap.is_((r.status, r.json().get("images")), (200, []), "another session lists none of them")

    # ------------------------------------------------------------ signed URLs
    got = call("GET", "/api/v1/images/" + IMG, A).json()
    file_url, thumb_url = got.get("file_url", ""), got.get("thumbnail_url", "")
    m = re.match(r"^/api/v1/images/%s/file\?v=1&exp=(\d+)&sig=([A-Za-z0-9_-]{43})$" % IMG, file_url)
    tap.ok(m, "file_url is /api/v1/images/{id}/file?v=&exp=&sig=: %s" % file_url)
    exp = int(m.group(1)) if m else 0
    now = int(time.time())
    tap.ok(exp % 3600 == 0 and now + 3600 <= exp <= now + 7200 + 60,
           "exp is now + signed_url_ttl rounded up to the hour")
    tap.is_(m.group(2) if m else None, sign("file", IMG, 1, exp), "the signature is the documented HMAC")
    tap.like(thumb_url, r"^/api/v1/images/%s/thumbnail\?v=1&exp=%d&sig=" % (IMG, exp), "thumbnail_url signed too")
    r = st.request("GET", file_url)
    tap.is_((r.status, r.body), (200, jpeg), "the signed file URL works without any credential")
    tap.like(r.header("Content-Disposition") or "", "renamed", "and names the file as it is called now")
    tap.ok(A not in r.body.decode(errors="replace") and A not in str(r.headers), "and names no session")
    r = st.request("GET", thumb_url)
    tap.is_((r.status, (r.header("Content-Type") or "").startswith("image/")), (200, True),
            "the signed thumbnail URL works without any credential")
    tap.is_(st.request("GET", file_url, headers=bearer(A)).status, 200, "a signed URL plus the credential works")
    tap.is_(st.request("GET", file_url, headers=bearer(B)).status, 200,
            "a valid signature is enough whatever else is presented")
    tap.is_(st.request("GET", signed_url("file", IMG, 1, exp)).status, 200, "a URL crafted with the key works")

    sig = sign("file", IMG, 1, exp)
    flipped = ("A" if sig[5] != "A" else "B").join([sig[:5], sig[6:]])
    tampered = [
        ("signature", signed_url("file", IMG, 1, exp, flipped)),
        ("id", signed_url("file", OTHER, 1, exp, sig)),
        ("version", signed_url("file", IMG, 2, exp, sig)),
        ("expiry", signed_url("file", IMG, 1, exp + 3600, sig)),
        ("label (a thumbnail signature on /file)", signed_url("file", IMG, 1, exp, sign("thumbnail", IMG, 1, exp))),
        ("key", signed_url("file", IMG, 1, exp, sign("file", IMG, 1, exp, key=b"\x01" * 32))),
        ("no v", "/api/v1/images/%s/file?exp=%d&sig=%s" % (IMG, exp, sig)),
        ("empty sig", "/api/v1/images/%s/file?v=1&exp=%d&sig=" % (IMG, exp)),
        ("unknown id", signed_url("file", UNKNOWN, 1, exp, sig)),
    ]
    for what, url in tampered:
        b = st.is_problem(st.request("GET", url), 403, "tampered %s: 403" % what)
        tap.is_((b or {}).get("type"), "urn:imagetools:problem:bad-signature", "tampered %s: bad-signature" % what)
        tap.like((b or {}).get("detail", ""), "session credential", "tampered %s: says how to get fresh URLs" % what)
    r = st.request("GET", signed_url("file", UNKNOWN, 1, exp))
    st.is_problem(r, 404, "a valid signature for an id that does not exist: 404")

    past = (now // 3600 - 1) * 3600
    b = st.is_problem(st.request("GET", signed_url("file", IMG, 1, past)), 403, "an expired URL")
    tap.is_((b or {}).get("type"), "urn:imagetools:problem:url-expired", "expired: url-expired")
    tap.like((b or {}).get("detail", ""), "session credential", "expired: says how to get fresh URLs")
    b = st.is_problem(st.request("GET", signed_url("thumbnail", IMG, 1, past)), 403, "an expired thumbnail URL")
    tap.is_(st.request("GET", signed_url("file", IMG, 1, past), headers=bearer(A)).status, 200,
            "an expired URL with the credential still works")
    st.is_problem(st.request("GET", signed_url("file", IMG, 1, past), headers=bearer(B)), 404,
                  "an expired URL with another session's credential: 404")

    # The URLs in events: written when the event was.
    ev = json.loads(st.sql("SELECT payload::text FROM events WHERE session_id = :'p1' AND type = 'image.uploaded'"
                           " AND payload->>'image_id' = :'p2'", A, IMG))
    tap.like(ev.get("file_url", ""), r"\?v=1&exp=\d+&sig=", "image.uploaded carries a signed file_url")
    r = st.request("GET", ev.get("file_url", "/"))
    tap.is_((r.status, r.body), (200, jpeg), "the URL from the event works without a credential")
    tap.is_(st.request("GET", ev.get("thumbnail_url", "/")).status, 200, "so does its thumbnail URL")
    r = call("GET", "/api/v1/events?cursor=0&timeout=0", A, "query")
    wire = [e for e in r.json().get("events", []) if e["type"] == "image.uploaded"]
    tap.ok(wire and all("sig=" in e["data"]["file_url"] for e in wire), "long-poll delivers the signed URLs")

    # A rename keeps the URLs: same bytes, same version.
    r = call("PATCH", "/api/v1/images/" + IMG, A, body={"filename": "again.jpg"})
    tap.is_((r.status, r.json().get("version")), (200, 1), "a rename keeps the version")
    tap.is_(st.request("GET", file_url).status, 200, "a URL handed out before a rename still works")
    tap.like(st.request("GET", file_url).header("Content-Disposition") or "", "again", "and names the new name")

    # A new version (what an operation stores) retires the old URLs.
    st.sql("UPDATE images SET version = version + 1 WHERE id = :'p1'", IMG)
    b = st.is_problem(st.request("GET", file_url), 403, "a URL signed for an older version")
    tap.is_((b or {}).get("type"), "urn:imagetools:problem:url-expired", "older version: url-expired")
    st.is_problem(st.request("GET", thumb_url), 403, "a thumbnail URL signed for an older version")
    fresh = call("GET", "/api/v1/images/" + IMG, A).json()
    tap.like(fresh.get("file_url", ""), r"\?v=2&", "GET with the credential hands out a URL for version 2")
    tap.is_(st.request("GET", fresh.get("file_url", "/")).status, 200, "which works")
    listed = [i for i in call("GET", "/api/v1/sessions/%s/images" % A).json().get("images", []) if i["id"] == IMG]
    tap.is_(st.request("GET", listed[0]["thumbnail_url"] if listed else "/").status, 200,
            "so does the one the listing hands out")

    # Deleting: the URLs die with the image; a refused delete deleted nothing.
    tap.is_(call("DELETE", "/api/v1/images/" + IMG, B).status, 404, "another session cannot delete")
    tap.is_(call("DELETE", "/api/v1/images/" + IMG, A).status, 204, "the owner deletes")
    st.is_problem(st.request("GET", fresh.get("file_url", "/")), 404, "a signed URL of a deleted image: 404")

    # Upload answers: the caller presented the session, and still it is not echoed.
    r = st.request("POST", "/api/v1/images", body=(
        b"--b\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n" + A.encode() +
        b"\r\n--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x.png\"\r\n\r\n" + png_bytes(4, 4) +
        b"\r\n--b--\r\n"), headers={"Content-Type": "multipart/form-data; boundary=b"})
    up = (r.json().get("images") or [{}])[0]
    tap.ok(r.status == 201 and "session_id" not in up and "sig=" in up.get("file_url", ""),
           "an upload answers signed URLs and no session_id")

    # POST /operations takes the session from Authorization when the body names none.
    r = st.request("POST", "/api/v1/operations", body={"type": "bulk_compress", "image_ids": [OTHER]},
                   headers=bearer(A))
    tap.is_(r.status, 202, "POST /operations with Authorization: Bearer and no session_id in the body")
    r = st.request("POST", "/api/v1/operations", body={"type": "bulk_compress", "image_ids": [OTHER]},
                   headers=bearer(B))
    st.is_problem(r, 404, "another session's Bearer cannot start an operation on A's image")

    # The configured key signed everything: nothing was stored in the database for it.
    tap.is_(st.sql("SELECT count(*) FROM server_secrets"), "0", "with url_signing_key set, no key is made")

# ---------------------------------------------------------------- no key configured: one made in the database
with Stack(tap) as st:
    S = st.new_session()
    img = put_image(st, S, png_bytes(8, 8), filename="k.png")
    row = st.sql("SELECT octet_length(value) FROM server_secrets WHERE name = 'url_signing'")
    tap.is_(row, "32", "without url_signing_key a 32-byte key is made once and stored")
    got = st.request("GET", "/api/v1/images/" + img, headers={"Authorization": "Bearer " + S}).json()
    tap.is_(st.request("GET", got.get("file_url", "/")).status, 200, "and URLs signed with it work")
    tap.is_(st.request("GET", got.get("file_url", "/").replace("sig=", "sig=x")).status, 403,
            "and a changed one does not")
    m = re.search(r"v=(\d+)&exp=(\d+)&sig=([^&]+)", got.get("file_url", ""))
    tap.ok(m and m.group(3) != sign("file", img, 1, int(m.group(2))), "(the key is not the one of the test above)")

tap.done()
