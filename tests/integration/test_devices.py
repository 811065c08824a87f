"""test_devices.py: scoped tokens, pairing codes and revocation. The session's owner mints tokens
(upload, view, full) and single-use pairing codes; a device exchanges a code for its own token once
(a second try is 410, an expired code 410, a forged one 401). Tokens are accepted where the session id
is (Bearer, ?session_id=, the multipart session_id field, tus), stored only as SHA-256, and never
logged. An upload token uploads (multipart and tus, the bytes stored are the bytes sent) but reads
nothing and changes nothing (403); a view token reads but neither uploads nor deletes; a token of
another session gets the 404 of an unknown id. A revoked token's next request is 401 and nothing it
sends is stored, also when the revocation lands in the middle of its upload. Refused tokens and
codes are limited per address (429 with Retry-After, before the credential is looked at)."""

import base64
import hashlib
import json
import os
import re
import socket
import uuid

from harness import Stack, Tap, wait_for
from uploads_util import multipart, png_bytes, read_to_end
from worker_util import jpeg_bytes, put_image

tap = Tap()

TOKEN_RE = r"^itk\.[A-Za-z0-9_-]{32}$"
CODE_RE = r"^itp\.[A-Za-z0-9_-]{22}$"
AUTH_FAILURES = 20  # rate_auth_failures here: the brute-force section at the end uses it up
UNKNOWN = "00000000-0000-4000-8000-000000000000"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


with Stack(tap, settings={"rate_auth_failures": AUTH_FAILURES, "rate_pairing": 1000, "pairing_ttl": 600,
                          "public_url": "https://photos.example/app"}) as st:
    A = st.new_session()
    B = st.new_session()
    IMG_A = put_image(st, A, jpeg_bytes(64, 48), filename="a.jpg")
    IMG_B = put_image(st, B, jpeg_bytes(64, 48), filename="b.jpg")
    seen = []  # every token and code handed out, for the log check at the end

    def call(method, path, cred=None, body=None, headers=None):
        h = dict(headers or {})
        if cred is not None:
            h["Authorization"] = "Bearer " + cred
        if method in ("POST", "DELETE", "PATCH") and body is None:
            body, h["Content-Length"] = b"", "0"
        return st.request(method, path, body=body, headers=h)

    def problem(r, status, slug, name):
        b = st.is_problem(r, status, name)
        tap.is_((b or {}).get("type"), "urn:imagetools:problem:" + slug, "%s: %s" % (name, slug))
        return b

    def mint(scope, label="Anna's phone", cred=A, **more):
        body = {"scope": scope, "label": label}
        body.update(more)
        r = call("POST", "/api/v1/tokens", cred, body=body)
        if r.status == 201:
            seen.append(r.json()["token"])
        return r

    def state():
        """What a refused request must leave as it was: images, names, events, devices."""
        return st.sql("SELECT (SELECT string_agg(id || ':' || filename, ',' ORDER BY id) FROM images) || ' '"
                      " || (SELECT count(*) FROM events) || ' ' || (SELECT count(*) FROM blobs) || ' '"
                      " || (SELECT count(*) FROM devices WHERE revoked_at IS NULL)")

    def stored_state():
        """Images and blobs: what an upload that must store nothing must leave as it was."""
        return st.sql("SELECT (SELECT count(*) FROM images) || ' ' || (SELECT count(*) FROM blobs) || ' '"
                      " || (SELECT count(*) FROM events WHERE type = 'image.uploaded')")

    def upload(cred, data, how="bearer", filename="p.png"):
        fields = [("session_id", cred)] if how == "field" else []
        ct, body = multipart(fields, [("file", 'filename="%s"' % filename, data)])
        path = "/api/v1/images" + ("?session_id=" + cred if how == "query" else "")
        return call("POST", path, cred if how == "bearer" else None, body=body, headers={"Content-Type": ct})

    def stored(image_id):
        out = st.sql("SELECT coalesce(string_agg(encode(c.data, 'hex'), '' ORDER BY c.n), '') FROM images i"
                     " JOIN blob_chunks c ON c.blob_id = i.blob_id WHERE i.id = :'p1'", image_id)
        return bytes.fromhex(out)

    def event_types(session):
        return st.sql("SELECT string_agg(type, ' ' ORDER BY seq) FROM events WHERE session_id = :'p1'",
                      session).split()

    # ------------------------------------------------------------ minting
    r = mint("upload", label="Anna's phone", source="android_app")
    tap.is_(r.status, 201, "POST /tokens with the session id: 201")
    UP = r.json().get("token", "")
    tap.like(UP, TOKEN_RE, "the token is itk. and 32 base64url characters")
    dev = r.json()
    tap.is_((dev.get("scope"), dev.get("label"), dev.get("source")), ("upload", "Anna's phone", "android_app"),
            "the answer names scope, label and source")
    tap.like(dev.get("device_id", ""), r"^dev_[A-Za-z0-9_-]{16}$", "a device id")
    tap.ok(A not in r.body.decode(), "the answer does not carry the session id")
    sess_exp = st.sql("SELECT it_ts(expires_at) FROM sessions WHERE id = :'p1'", A)
    tap.is_(dev.get("expires_at"), sess_exp, "without ttl the token lives as long as its session")
    tap.is_(event_types(A)[-1], "device.paired", "minting appends device.paired")
    VIEW = mint("view", label="Living-room TV").json().get("token", "")
    FULL = mint("full", label="Laptop", source="web").json().get("token", "")
    problem(mint("root"), 400, "invalid-scope", "an unknown scope")
    problem(mint("upload", label="a\nb"), 400, "invalid-label", "a label with a newline")
    problem(mint("upload", label="x" * 65), 400, "invalid-label", "a 65-character label")
    problem(mint("upload", source="an app"), 400, "invalid-source", "a source with a space")
    problem(mint("upload", ttl=-5), 400, "invalid-ttl", "a negative ttl")
    problem(mint("upload", extra=1), 400, "unknown-field", "an unknown field")
    r = mint("upload", label="Короткий", ttl=60)
    tap.is_(r.status, 201, "a UTF-8 label and a ttl of 60 s")
    tap.ok(r.json().get("expires_at", "z") < sess_exp, "a ttl shorter than the session's is kept")
    SHORT = r.json().get("token", "")
    problem(mint("upload", cred=UP), 403, "insufficient-scope", "an upload token cannot mint")
    problem(mint("view", cred=VIEW), 403, "insufficient-scope", "a view token cannot mint")
    r = mint("upload", label="Minted by a full token", cred=FULL)
    tap.is_(r.status, 201, "a full token can mint")
    problem(call("POST", "/api/v1/tokens", body={"scope": "upload", "label": "x"}), 401, "credential-required",
            "minting without a credential")

    # ------------------------------------------------------------ the stored form
    rows = st.sql("SELECT d::text FROM devices d") + st.sql("SELECT p::text FROM pairing_codes p")
    tap.ok(all(t[4:] not in rows for t in seen), "no token's text is in the devices table")
    tap.is_(st.sql("SELECT count(*) FROM devices WHERE token_hash = sha256(convert_to(:'p1', 'UTF8'))", UP), "1",
            "the devices table holds the token's SHA-256")

    # ------------------------------------------------------------ the upload token
    data = png_bytes(40, 30)
    for how in ("bearer", "query", "field"):
        r = upload(UP, data, how=how)
        tap.is_(r.status, 201, "an upload token uploads (%s)" % how)
        img = (r.json().get("images") or [{}])[0] if r.status == 201 else {}
        tap.is_(stored(img.get("id", UNKNOWN)), data, "the bytes stored are the bytes sent (%s)" % how)
    tap.is_(st.sql("SELECT session_id FROM images WHERE id = :'p1'", img.get("id", UNKNOWN)), A,
            "the image is in the token's session")
    # An agreeing session_id field next to a token header: the session's own id.
    ct, body = multipart([("session_id", A)], [("file", 'filename="q.png"', data)])
    r = call("POST", "/api/v1/images", UP, body=body, headers={"Content-Type": ct})
    tap.is_(r.status, 201, "a token header and the session's id in the field agree")
    ct, body = multipart([("session_id", B)], [("file", 'filename="q.png"', data)])
    before = state()
    problem(call("POST", "/api/v1/images", UP, body=body, headers={"Content-Type": ct}), 400, "session-mismatch",
            "a token header and another session's id in the field")
    tap.is_(state(), before, "the mismatch stored nothing")

    # tus, with the token in the header, then the upload's URL only.
    tus_data = png_bytes(64, 64)
    r = call("POST", "/api/v1/uploads/tus", UP, headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(tus_data)),
        "Upload-Metadata": "filename %s,source %s" % (b64("t.png"), b64("android_app"))})
    tap.is_(r.status, 201, "tus: an upload token creates an upload")
    loc = r.header("Location") or "/"
    tus_h = {"Tus-Resumable": "1.0.0", "Content-Type": "application/offset+octet-stream"}
    r = call("PATCH", loc, UP, body=tus_data[:500], headers=dict(tus_h, **{"Upload-Offset": "0"}))
    tap.is_(r.status, 204, "tus: PATCH with the token")
    r = call("PATCH", loc, body=tus_data[500:], headers=dict(tus_h, **{"Upload-Offset": "500"}))
    tap.is_(r.status, 204, "tus: PATCH with the upload's URL only")
    tus_img = st.sql("SELECT image_id FROM tus_uploads WHERE id = :'p1'", loc.rsplit("/", 1)[1])
    tap.is_(stored(tus_img or UNKNOWN), tus_data, "tus: the bytes stored are the bytes sent")
    r = call("POST", "/api/v1/uploads/tus", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": "10", "Upload-Metadata": "session_id " + b64(UP)})
    tap.is_(r.status, 201, "tus: the token as the metadata's session_id")
    r = call("POST", "/api/v1/uploads/tus", VIEW, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    problem(r, 403, "insufficient-scope", "tus: a view token cannot upload")

    # ... and reads nothing, changes nothing.
    before = state()
    READS = [("list", "/api/v1/images"), ("image", "/api/v1/images/" + IMG_A),
             ("file", "/api/v1/images/%s/file" % IMG_A), ("thumbnail", "/api/v1/images/%s/thumbnail" % IMG_A),
             ("events (long-poll)", "/api/v1/events?cursor=0&timeout=0")]
    for name, path in READS:
        r = call("GET", path, UP)
        problem(r, 403, "insufficient-scope", "upload token: GET %s" % name)
        tap.like(r.header("WWW-Authenticate") or "", r'error="insufficient_scope", scope="view"',
                 "upload token: GET %s names the scope it needs" % name)
        tap.ok(A not in r.body.decode(errors="replace"), "upload token: GET %s does not name the session" % name)
    r = call("GET", "/api/v1/images/%s/file?session_id=%s" % (IMG_A, UP))
    problem(r, 403, "insufficient-scope", "upload token in the query: GET file")
    r = call("POST", "/api/v1/operations", UP, body={"type": "bulk_compress", "image_ids": [IMG_A]})
    problem(r, 403, "insufficient-scope", "upload token: POST /operations")
    problem(call("PATCH", "/api/v1/images/" + IMG_A, UP, body={"filename": "x.jpg"}), 403, "insufficient-scope",
            "upload token: PATCH an image")
    problem(call("DELETE", "/api/v1/images/" + IMG_A, UP), 403, "insufficient-scope", "upload token: DELETE an image")
    problem(call("DELETE", "/api/v1/sessions/" + A, UP), 403, "insufficient-scope", "upload token: DELETE the session")
    problem(call("GET", "/api/v1/devices", UP), 403, "insufficient-scope", "upload token: GET /devices")
    problem(call("POST", "/api/v1/pairings", UP, body={}), 403, "insufficient-scope", "upload token: POST /pairings")
    tap.is_(state(), before, "the refused calls changed nothing")

    # ------------------------------------------------------------ the view token
    for name, path in READS[:4]:
        tap.is_(call("GET", path, VIEW).status, 200, "view token: GET %s" % name)
    tap.is_(call("GET", "/api/v1/events?cursor=0&timeout=0", VIEW).status, 200, "view token: long-poll")
    before = state()
    problem(upload(VIEW, data), 403, "insufficient-scope", "view token: multipart upload")
    problem(upload(VIEW, data, how="field"), 403, "insufficient-scope", "view token: upload with the field")
    problem(call("DELETE", "/api/v1/images/" + IMG_A, VIEW), 403, "insufficient-scope", "view token: DELETE an image")
    problem(call("PATCH", "/api/v1/images/" + IMG_A, VIEW, body={"filename": "x.jpg"}), 403, "insufficient-scope",
            "view token: PATCH an image")
    tap.is_(state(), before, "the view token's refused calls stored and changed nothing")
    r = call("GET", "/api/v1/images", VIEW)
    tap.ok(r.status == 200 and IMG_A in [i["id"] for i in r.json()["images"]]
           and IMG_B not in r.body.decode(), "GET /images lists the token's session only")

    # ------------------------------------------------------------ the full token
    tap.is_(call("PATCH", "/api/v1/images/" + IMG_A, FULL, body={"filename": "renamed.jpg"}).status, 200,
            "full token: PATCH an image")

    # ------------------------------------------------------------ another session's image
    for name, path in [("image", "/api/v1/images/%s"), ("file", "/api/v1/images/%s/file")]:
        r = call("GET", path % IMG_B, VIEW)
        unknown = call("GET", path % UNKNOWN, VIEW)
        problem(r, 404, "unknown-image", "a token of session A on session B's %s" % name)
        tap.is_({k: v for k, v in r.json().items() if k != "instance"},
                {k: v for k, v in unknown.json().items() if k != "instance"},
                "%s of another session: the same answer as an unknown id" % name)
    before = state()
    problem(call("DELETE", "/api/v1/images/" + IMG_B, FULL), 404, "unknown-image",
            "a full token of session A deleting session B's image")
    problem(call("DELETE", "/api/v1/sessions/" + B, FULL), 404, "unknown-session",
            "a full token of session A deleting session B")
    tap.is_(state(), before, "nothing of session B changed")
    problem(call("GET", "/api/v1/sessions/" + VIEW), 404, "unknown-session", "a token in a path is not a session")

    # ------------------------------------------------------------ forged, truncated, expired
    forged = "itk." + base64.urlsafe_b64encode(os.urandom(24)).decode()
    for name, cred in [("forged", forged), ("truncated", UP[:-1]), ("with a tail", UP + "A"),
                       ("with a bad character", UP[:-1] + "=")]:
        r = call("GET", "/api/v1/images", cred)
        problem(r, 401, "invalid-token", "a %s token" % name)
        tap.like(r.header("WWW-Authenticate") or "", r'error="invalid_token"', "a %s token: WWW-Authenticate" % name)
    st.sql("UPDATE devices SET expires_at = now() - interval '1 second'"
           " WHERE token_hash = sha256(convert_to(:'p1', 'UTF8'))", SHORT)
    b = problem(call("GET", "/api/v1/images", SHORT), 401, "invalid-token", "an expired token")
    before = state()
    problem(upload(SHORT, data), 401, "invalid-token", "an upload with an expired token")
    tap.is_(state(), before, "the expired token stored nothing")

    # ------------------------------------------------------------ pairing
    r = call("POST", "/api/v1/pairings", A, body={"scope": "upload", "label": "Anna's phone"})
    tap.is_(r.status, 201, "POST /pairings: 201")
    code = r.json().get("code", "")
    seen.append(code)
    tap.like(code, CODE_RE, "the code is itp. and 22 base64url characters")
    tap.is_(r.json().get("pair_url"), "https://photos.example/app/#pair=" + code,
            "pair_url: public_url and the code in the fragment")
    tap.ok(A not in r.body.decode(), "the pairing answer does not carry the session id")
    r = call("POST", "/api/v1/pair", body={"code": code, "source": "android_app"})
    tap.is_(r.status, 201, "POST /pair exchanges the code")
    paired = r.json()
    seen.append(paired.get("token", ""))
    tap.like(paired.get("token", ""), TOKEN_RE, "the device gets its own token")
    tap.is_((paired.get("scope"), paired.get("label"), paired.get("source")), ("upload", "Anna's phone", "android_app"),
            "the device has the scope and label the owner chose")
    tap.ok(A not in r.body.decode(), "the exchange never answers the session id")
    before = state()
    problem(call("POST", "/api/v1/pair", body={"code": code}), 410, "pairing-code-used", "a reused code")
    tap.is_(state(), before, "the reused code made no device")
    tap.is_(upload(paired.get("token", ""), data).status, 201, "the paired token uploads")
    r = call("POST", "/api/v1/pairings", A, body={})
    code2 = r.json().get("code", "")
    seen.append(code2)
    tap.is_(r.json().get("scope"), "upload", "a pairing code's scope defaults to upload")
    st.sql("UPDATE pairing_codes SET expires_at = now() - interval '1 second'"
           " WHERE code_hash = sha256(convert_to(:'p1', 'UTF8'))", code2)
    problem(call("POST", "/api/v1/pair", body={"code": code2}), 410, "pairing-code-expired", "an expired code")
    r = call("POST", "/api/v1/pairings", A, body={"scope": "view", "ttl": 120})
    code3 = r.json().get("code", "")
    seen.append(code3)
    r = call("POST", "/api/v1/pair", body={"code": code3, "label": "Kitchen tablet", "source": "web"})
    tap.is_((r.status, r.json().get("label"), r.json().get("scope")), (201, "Kitchen tablet", "view"),
            "the device may name itself; the scope is the owner's")
    seen.append(r.json().get("token", ""))
    problem(call("POST", "/api/v1/pair", body={"code": "itp." + "A" * 22}), 401, "invalid-pairing-code",
            "an unknown code")
    problem(call("POST", "/api/v1/pair", body={"code": "itp.short"}), 401, "invalid-pairing-code", "a malformed code")
    problem(call("POST", "/api/v1/pair", body={"code": code, "scope": "full"}), 400, "unknown-field",
            "the device cannot ask for a scope")
    tap.ok(st.sql("SELECT count(*) FROM pairing_codes WHERE used_at IS NOT NULL") == "2",
           "each exchanged code is marked used")

    # ------------------------------------------------------------ the device list
    r = call("GET", "/api/v1/devices", A)
    tap.is_(r.status, 200, "GET /devices with the session id")
    devices = r.json().get("devices", [])
    labels = sorted(d["label"] for d in devices)
    tap.ok("Anna's phone" in labels and "Kitchen tablet" in labels and "Laptop" in labels,
           "the list names the devices by label")
    tap.ok(all(set(d) >= {"device_id", "label", "source", "scope", "created_at", "expires_at"} for d in devices),
           "every device has id, label, source, scope, created_at, expires_at")
    tap.ok(any(d.get("last_seen_at") for d in devices), "a used device has last_seen_at")
    tap.ok(all("token" not in d for d in devices) and all(t[4:] not in r.body.decode() for t in seen),
           "the list never shows a token")
    tap.is_(call("GET", "/api/v1/devices", FULL).status, 200, "a full token lists devices")
    tap.ok(all(d.get("label") != "Короткий" for d in devices), "an expired token is not listed")

    # ------------------------------------------------------------ revocation
    up_dev = dev["device_id"]
    before_events = event_types(A)
    r = call("DELETE", "/api/v1/devices/" + up_dev, A)
    tap.is_(r.status, 204, "DELETE /devices/{id}: 204")
    tap.is_(event_types(A)[len(before_events):], ["device.revoked"], "revocation appends device.revoked")
    before = state()
    problem(upload(UP, data), 401, "invalid-token", "an upload with the revoked token")
    problem(call("GET", "/api/v1/images", UP), 401, "invalid-token", "any request with the revoked token")
    r = call("POST", "/api/v1/uploads/tus", UP, headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    problem(r, 401, "invalid-token", "tus with the revoked token")
    tap.is_(state(), before, "the revoked token stored nothing")
    problem(call("DELETE", "/api/v1/devices/" + up_dev, A), 404, "unknown-device", "revoking it again")
    # Listeners learn of a revocation from its notification (what the streams act on).
    heard = st.sql("LISTEN imagetools_events; SELECT it_device_revoke(:'p1', :'p2');", A,
                   mint("view", label="Listened").json().get("device_id", ""))
    tap.like(heard, r"revoked:%s:dev_[A-Za-z0-9_-]{16}" % A, "a revocation sends revoked:<session>:<device_id>")
    other_dev = mint("upload", cred=B).json().get("device_id", "dev_AAAAAAAAAAAAAAAA")
    problem(call("DELETE", "/api/v1/devices/" + other_dev, A), 404, "unknown-device",
            "revoking another session's device")
    tap.is_(st.sql("SELECT count(*) FROM devices WHERE id = :'p1' AND revoked_at IS NULL", other_dev), "1",
            "the other session's device is untouched")
    tap.ok(up_dev not in call("GET", "/api/v1/devices", A).body.decode(), "a revoked device leaves the list")

    # A revocation in the middle of a multipart upload: the upload stores nothing.
    MID = mint("upload", label="Mid-upload").json()
    big = png_bytes(600, 600, level=0)
    ct, body = multipart([], [("file", 'filename="mid.png"', big)])
    before = stored_state()
    s = socket.create_connection(("127.0.0.1", st.port), timeout=60)
    s.sendall(("POST /api/v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
               % (MID["token"], ct, len(body))).encode() + body[:len(body) // 2])
    # The handler has looked at the token once the device was seen.
    wait_for(lambda: st.sql("SELECT last_seen_at IS NOT NULL FROM devices WHERE id = :'p1'", MID["device_id"]) == "t",
             timeout=20, what="the upload to present its token")
    tap.is_(call("DELETE", "/api/v1/devices/" + MID["device_id"], A).status, 204, "revoked while its upload is sent")
    s.sendall(body[len(body) // 2:])
    status, raw = read_to_end(s)
    s.close()
    tap.is_(status, 401, "the upload whose token was revoked mid-request: 401")
    tap.ok(b"invalid-token" in raw, "... invalid-token")
    tap.is_(stored_state(), before, "... and nothing of it is stored")

    # A revocation between two PATCHes of a tus upload (the second sends only the upload's URL).
    TUS = mint("upload", label="Resumable").json()
    r = call("POST", "/api/v1/uploads/tus", TUS["token"], headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(tus_data))})
    loc = r.header("Location") or "/"
    tap.is_(call("PATCH", loc, body=tus_data[:300], headers=dict(tus_h, **{"Upload-Offset": "0"})).status, 204,
            "tus: a first PATCH")
    call("DELETE", "/api/v1/devices/" + TUS["device_id"], A)
    images_before = st.sql("SELECT count(*) FROM images")
    r = call("PATCH", loc, body=tus_data[300:], headers=dict(tus_h, **{"Upload-Offset": "300"}))
    problem(r, 401, "invalid-token", "tus: the PATCH after the device's revocation")
    tap.is_(st.sql("SELECT \"offset\" FROM tus_uploads WHERE id = :'p1'", loc.rsplit("/", 1)[1]), "300",
            "tus: nothing of the refused PATCH is stored")
    tap.is_(st.sql("SELECT count(*) FROM images"), images_before, "tus: no image was made")
    tap.is_(call("HEAD", loc, headers={"Tus-Resumable": "1.0.0"}).status, 401, "tus: HEAD after the revocation: 401")
    tap.is_(call("DELETE", loc, headers={"Tus-Resumable": "1.0.0"}).status, 204,
            "tus: the upload can still be terminated")

    # A revocation while a PATCH is sending: its bytes are not kept.
    TUS2 = mint("upload", label="Resumable 2").json()
    big_tus = png_bytes(400, 400, level=0)
    r = call("POST", "/api/v1/uploads/tus", TUS2["token"], headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(len(big_tus))})
    loc2 = r.header("Location") or "/"
    tid2 = loc2.rsplit("/", 1)[1]

    def tus_locked():
        try:
            st.sql("BEGIN; SELECT 1 FROM tus_uploads WHERE id = :'p1' FOR UPDATE NOWAIT; ROLLBACK;", tid2)
            return False
        except RuntimeError:
            return True

    s = socket.create_connection(("127.0.0.1", st.port), timeout=60)
    s.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
               "Content-Type: application/offset+octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
               % (loc2, len(big_tus))).encode() + big_tus[:len(big_tus) // 2])
    wait_for(tus_locked, timeout=20, what="the PATCH to hold its upload")
    tap.is_(call("DELETE", "/api/v1/devices/" + TUS2["device_id"], A).status, 204, "tus: revoked while a PATCH sends")
    s.sendall(big_tus[len(big_tus) // 2:])
    status, raw = read_to_end(s)
    s.close()
    tap.is_(status, 401, "tus: the PATCH whose token was revoked meanwhile: 401")
    tap.is_(st.sql("SELECT \"offset\" FROM tus_uploads WHERE id = :'p1'", tid2), "0",
            "tus: none of its bytes are kept")

    # ------------------------------------------------------------ the session id stays the owner's key
    tap.is_(call("DELETE", "/api/v1/sessions/" + A, FULL).status, 204, "a full token of the session deletes it")
    tap.is_(st.sql("SELECT count(*) FROM devices WHERE session_id = :'p1'", A), "0",
            "the session's devices go with it")
    problem(call("GET", "/api/v1/images", VIEW), 401, "invalid-token", "a token of a deleted session is unknown")

    # ------------------------------------------------------------ bounded
    D = st.new_session()
    made = [mint("upload", label="d%d" % i, cred=D).status for i in range(100)]
    tap.is_(made, [201] * 100, "a session holds 100 live devices")
    problem(mint("upload", cred=D), 409, "too-many-devices", "the 101st")
    r = call("POST", "/api/v1/pairings", D, body={})
    problem(call("POST", "/api/v1/pair", body={"code": r.json().get("code", "")}), 409, "too-many-devices",
            "pairing into a full session")
    seen.append(r.json().get("code", ""))

    # ------------------------------------------------------------ brute force
    C = st.new_session()
    GOOD = mint("view", cred=C).json().get("token", "")
    refused, status, retry = 0, 0, None
    for _ in range(AUTH_FAILURES + 5):
        r = call("GET", "/api/v1/images", "itk." + base64.urlsafe_b64encode(os.urandom(24)).decode())
        status = r.status
        if status == 429:
            retry = r.header("Retry-After")
            break
        refused += 1
    tap.is_(status, 429, "guessing tokens from one address ends in 429 (after %d refusals)" % refused)
    tap.ok(refused <= AUTH_FAILURES, "within rate_auth_failures (%d) refusals" % AUTH_FAILURES)
    tap.like(retry or "", r"^[1-9][0-9]*$", "429 carries Retry-After")
    problem(call("GET", "/api/v1/images", GOOD), 429, "rate-limited", "then even a good token is refused first")
    problem(call("POST", "/api/v1/pair", body={"code": "itp." + "B" * 22}), 429, "rate-limited",
            "and pairing codes too")
    tap.is_(call("GET", "/api/v1/images", C).status, 200, "the session id itself is not blocked")

    # ------------------------------------------------------------ never logged
    with open(os.path.join(st.dir, "fcgi.log"), errors="replace") as f:
        log = f.read()
    leaked = [t for t in seen if t and t[4:] in log]
    tap.is_(leaked, [], "no token or pairing code appears in the fcgi log")

tap.done()
