"""test_tus.py: tus 1.0 resumable uploads through real lighttpd into real PostgreSQL: discovery, creation,
HEAD/PATCH, checksum, termination, deferred length and the protocol's refusals (after the cases of tusd's and
@tus/server's suites), quota and expiry; a 100 MB upload interrupted by a client abort, a kill -9 of
imagetools.fcgi and a PostgreSQL restart that completes byte-identical with one image.uploaded; progress events
seen by a second client."""

import base64
import hashlib
import http.client
import json
import os
import re
import socket
import subprocess

from harness import Stack, Tap, wait_for
from uploads_util import png_bytes, read_to_end

tap = Tap()
V = {"Tus-Resumable": "1.0.0"}


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def meta(**kw):
    return ",".join(k if v is None else "%s %s" % (k, b64(v)) for k, v in kw.items())


with Stack(tap, own_cluster=True, settings={"max_upload_bytes": "128M", "max_session_bytes": "1G",
                                            "thumbnail_size": "64", "allowed_origins": "https://app.example"}) as st:
    S = st.new_session()
    OTHER = st.new_session()

    def tus(method, path, body=None, headers=None, version=True):
        h = dict(V) if version else {}
        h.update(headers or {})
        if body is not None:
            h.setdefault("Content-Type", "application/offset+octet-stream")
        elif method in ("POST", "PATCH"):
            h.setdefault("Content-Length", "0")
        return st.request(method, path, body=body, headers=h)

    def create(length, session=S, filename="photo.png", extra=None, **more):
        h = {"Upload-Length": str(length), "Upload-Metadata": meta(session_id=session, filename=filename,
                                                                    source="android_app")}
        h.update(extra or {})
        return tus("POST", "/api/v1/uploads/tus", headers=h, **more)

    def patch(loc, offset, data, extra=None):
        h = {"Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
        h.update(extra or {})
        return tus("PATCH", loc, body=data, headers=h)

    def events(session, typ=None):
        rows = st.sql("SELECT seq || ' ' || type || ' ' || payload::text FROM events WHERE session_id = :'p1'"
                      " ORDER BY seq", session)
        out = []
        for line in rows.splitlines():
            seq, t, payload = line.split(" ", 2)
            if typ is None or t == typ:
                out.append((int(seq), t, json.loads(payload)))
        return out

    def chunk_rows(loc):
        uid = loc.rsplit("/", 1)[1]
        return int(st.sql("SELECT count(*) FROM blob_chunks c JOIN tus_uploads t ON t.blob_id = c.blob_id"
                          " WHERE t.id = :'p1'", uid) or 0)

    small = png_bytes(300, 200)

    # ---------------------------------------------------------------- discovery
    r = st.request("OPTIONS", "/api/v1/uploads/tus")
    tap.ok(r.status in (200, 204), "OPTIONS: answered (%d)" % r.status)
    tap.is_(r.header("Tus-Version"), "1.0.0", "OPTIONS: Tus-Version")
    ext = set((r.header("Tus-Extension") or "").split(","))
    tap.ok({"creation", "creation-with-upload", "termination", "checksum", "expiration"} <= ext,
           "OPTIONS: Tus-Extension lists creation, creation-with-upload, termination, checksum, expiration")
    tap.is_(r.header("Tus-Max-Size"), str(128 * 1024 * 1024), "OPTIONS: Tus-Max-Size is max_upload_bytes")
    tap.ok("sha1" in (r.header("Tus-Checksum-Algorithm") or "").split(","), "OPTIONS: sha1 checksums")

    # CORS preflight from an allowed origin is tested in test_origin.py; here: the tus headers pass it.
    r = st.request("OPTIONS", "/api/v1/uploads/tus", headers={
        "Origin": st.url, "Access-Control-Request-Method": "PATCH",
        "Access-Control-Request-Headers": "tus-resumable,upload-offset,upload-checksum,content-type"})
    allow = (r.header("Access-Control-Allow-Headers") or "").lower()
    tap.ok(r.status == 204 and all(h in allow for h in ("tus-resumable", "upload-offset", "upload-length",
                                                         "upload-metadata", "upload-checksum")),
           "preflight: tus request headers allowed")

    # An allowed origin may send the tus headers and read the ones a client needs to go on.
    r = st.request("OPTIONS", "/api/v1/uploads/tus", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "tus-resumable,upload-length,upload-metadata"})
    tap.ok(r.status == 204 and r.header("Access-Control-Allow-Origin") == "https://app.example"
           and "upload-metadata" in (r.header("Access-Control-Allow-Headers") or "").lower(),
           "preflight from an allowed origin: the tus headers are allowed")
    r = tus("POST", "/api/v1/uploads/tus", headers={"Origin": "https://app.example", "Upload-Length": "10",
                                                    "Upload-Metadata": meta(session_id=OTHER)})
    exposed = [h.strip().lower() for h in (r.header("Access-Control-Expose-Headers") or "").split(",")]
    tap.ok(r.status == 201 and all(h in exposed for h in ("location", "upload-offset", "upload-length",
                                                          "upload-expires", "tus-resumable", "tus-version")),
           "an allowed origin can read Location, Upload-Offset, Upload-Length, Upload-Expires, Tus-*")
    tus("DELETE", r.header("Location") or "/")

    # ---------------------------------------------------------------- creation refusals
    r = create(len(small), version=False)
    st.is_problem(r, 412, "no Tus-Resumable")
    tap.is_(r.header("Tus-Version"), "1.0.0", "412 names the supported version")
    r = create(len(small), extra={"Tus-Resumable": "0.2.2"})
    st.is_problem(r, 412, "Tus-Resumable 0.2.2")
    r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Metadata": meta(session_id=S)})
    st.is_problem(r, 400, "neither Upload-Length nor Upload-Defer-Length")
    r = create(len(small), extra={"Upload-Defer-Length": "1"})
    st.is_problem(r, 400, "both Upload-Length and Upload-Defer-Length")
    for bad in ("-1", "12abc", "1e3", ""):
        r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Length": bad, "Upload-Metadata": meta(session_id=S)})
        st.is_problem(r, 400, "Upload-Length %r" % bad)
    r = create(128 * 1024 * 1024 + 1)
    st.is_problem(r, 413, "Upload-Length past Tus-Max-Size")
    for name, m in (("not base64", "session_id %s,filename ***" % b64(S)),
                    ("a key twice", "session_id %s,session_id %s" % (b64(S), b64(S))),
                    ("an empty key", "session_id %s,,filename %s" % (b64(S), b64("x"))),
                    ("bad padding", "session_id %s,filename YQ=" % b64(S)),
                    ("a NUL in a value", "session_id %s,filename %s" % (b64(S), b64(b"a\0b")))):
        r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Length": "10", "Upload-Metadata": m})
        body = st.is_problem(r, 400, "malformed Upload-Metadata: " + name)
        tap.is_((body or {}).get("type"), "urn:imagetools:problem:malformed-metadata", name + ": slug")
    r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Length": "10", "Upload-Metadata": meta(filename="x")})
    st.is_problem(r, 400, "no session")
    r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Length": "10",
                                                    "Upload-Metadata": meta(session_id="A" * 32)})
    st.is_problem(r, 404, "unknown session")
    r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Length": "10", "Authorization": "Bearer " + OTHER,
                                                    "Upload-Metadata": meta(session_id=S)})
    st.is_problem(r, 400, "metadata and Bearer name two sessions")
    r = create(10, extra={"Upload-Metadata": meta(session_id=S, source="fax")})
    st.is_problem(r, 400, "unknown source")
    tap.is_(st.sql("SELECT count(*) FROM tus_uploads"), "0", "no refused creation left a row")

    # ---------------------------------------------------------------- create, HEAD, PATCH, checksum
    before = len(events(S))
    r = create(len(small), extra={"Upload-Metadata": meta(session_id=S, filename="photo.png", source="android_app",
                                                          filetype="image/png")})
    tap.is_(r.status, 201, "create: 201")
    loc = r.header("Location") or ""
    tap.like(loc, r"^/api/v1/uploads/tus/[A-Za-z0-9_-]{32}$", "create: Location with an unguessable id")
    tap.is_(r.header("Tus-Resumable"), "1.0.0", "create: Tus-Resumable in the answer")
    tap.like(r.header("Upload-Expires") or "", r"^\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT$",
             "create: Upload-Expires as an HTTP date")
    started = events(S, "upload.started")
    tap.ok(len(started) == 1 and started[0][2].get("filename") == "photo.png"
           and started[0][2].get("length") == len(small) and "upload_id" in started[0][2]
           and loc.rsplit("/", 1)[1] not in json.dumps(started[0][2]),
           "create: upload.started with filename and length, and without the URL's secret")

    r = tus("HEAD", loc)
    tap.is_((r.status, r.header("Upload-Offset"), r.header("Upload-Length")), (200, "0", str(len(small))),
            "HEAD: offset 0 and the length")
    tap.is_(r.header("Cache-Control"), "no-store", "HEAD: Cache-Control: no-store")
    tap.ok("filetype " + b64("image/png") in (r.header("Upload-Metadata") or ""), "HEAD: Upload-Metadata echoed")
    tap.is_(tus("HEAD", loc, version=False).status, 412, "HEAD without Tus-Resumable: 412")
    r = tus("GET", loc, version=False)
    tap.is_(r.status, 412, "GET without Tus-Resumable: 412")

    half = len(small) // 2
    r = tus("PATCH", loc, body=small[:half], headers={"Upload-Offset": "0", "Content-Type": "text/plain"})
    st.is_problem(r, 415, "PATCH not application/offset+octet-stream")
    r = tus("PATCH", loc, body=small[:half], headers={"Content-Type": "application/offset+octet-stream"})
    st.is_problem(r, 400, "PATCH without Upload-Offset")
    r = patch(loc, 5, small[5:half])
    body = st.is_problem(r, 409, "PATCH at the wrong offset")
    r = patch(loc, 0, small + b"x")
    st.is_problem(r, 413, "PATCH past Upload-Length")
    r = patch(loc, 0, small[:half], {"Upload-Checksum": "sha1 " + b64(hashlib.sha1(b"other").digest())})
    st.is_problem(r, 460, "checksum mismatch")
    tap.is_(tus("HEAD", loc).header("Upload-Offset"), "0", "checksum mismatch: the bytes were discarded")
    tap.is_(chunk_rows(loc), 0, "checksum mismatch: no chunk stored")
    # A PATCH with a checksum whose body ends early keeps nothing (it cannot be verified).
    sk = socket.create_connection(("127.0.0.1", st.port), timeout=30)
    sk.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                "Upload-Checksum: sha1 %s\r\nContent-Type: application/offset+octet-stream\r\n"
                "Content-Length: %d\r\nConnection: close\r\n\r\n"
                % (loc, b64(hashlib.sha1(small[:half]).digest()), half)).encode() + small[:half // 2])
    sk.shutdown(socket.SHUT_WR)
    read_to_end(sk)
    sk.close()
    wait_for(lambda: tus("HEAD", loc).status == 200, timeout=30, what="HEAD answers")
    tap.is_(tus("HEAD", loc).header("Upload-Offset"), "0", "a checksummed PATCH cut short keeps nothing")
    tap.is_(chunk_rows(loc), 0, "a checksummed PATCH cut short: no chunk stored")
    r = patch(loc, 0, small[:half], {"Upload-Checksum": "md5 " + b64(hashlib.md5(small[:half]).digest())})
    st.is_problem(r, 400, "unsupported checksum algorithm")
    r = patch(loc, 0, small[:half], {"Upload-Checksum": "sha1 " + b64(hashlib.sha1(small[:half]).digest())})
    tap.is_((r.status, r.header("Upload-Offset")), (204, str(half)), "PATCH with a good checksum: 204, new offset")
    tap.is_(tus("HEAD", loc).header("Upload-Offset"), str(half), "HEAD: the offset after the PATCH")

    # Another session's credential, an unknown id: 404 like a terminated upload.
    r = tus("HEAD", loc, headers={"Authorization": "Bearer " + OTHER})
    tap.is_(r.status, 404, "HEAD with another session's credential: 404")
    st.is_problem(patch(loc, half, small[half:], {"Authorization": "Bearer " + OTHER}), 404,
                  "PATCH with another session's credential")
    st.is_problem(patch("/api/v1/uploads/tus/" + "x" * 32, 0, b"abc"), 404, "PATCH to an unknown upload")

    r = patch(loc, half, small[half:], {"Authorization": "Bearer " + S})
    tap.is_((r.status, r.header("Upload-Offset")), (204, str(len(small))), "last PATCH: 204 at the length")
    uploaded = [e for e in events(S, "image.uploaded") if e[0] > before]
    tap.is_(len(uploaded), 1, "one image.uploaded")
    data = uploaded[0][2] if uploaded else {}
    tap.ok(data.get("filename") == "photo.png" and data.get("source") == "android_app",
           "image.uploaded carries the metadata's filename and source")
    img = st.request("GET", "/api/v1/images/%s" % data.get("image_id"), headers={"Authorization": "Bearer " + S})
    meta_img = img.json() if img.status == 200 else {}
    tap.is_(meta_img.get("sha256"), hashlib.sha256(small).hexdigest(), "image: sha256 of the bytes sent")
    tap.is_((meta_img.get("width"), meta_img.get("height"), meta_img.get("content_type")), (300, 200, "image/png"),
            "image: sniffed like a multipart upload")
    got = st.request("GET", meta_img.get("file_url", "/"))
    tap.ok(got.status == 200 and got.body == small, "download: byte-identical")
    thumb = st.request("GET", meta_img.get("thumbnail_url", "/"))
    tap.is_(thumb.status, 200, "the thumbnail was made")
    r = tus("HEAD", loc)
    tap.is_((r.status, r.header("Upload-Offset")), (200, str(len(small))),
            "HEAD after completion: offset == length (a client does not start over)")
    r = patch(loc, len(small), b"")
    tap.is_(r.status, 204, "an empty PATCH at the end of a complete upload: 204")
    tap.is_(len([e for e in events(S, "image.uploaded") if e[0] > before]), 1, "still one image.uploaded")
    tap.is_(int(st.sql("SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM images i"
                       " WHERE i.blob_id = b.id OR i.thumb_blob_id = b.id)")), 0,
            "completion: every blob belongs to an image")

    # ---------------------------------------------------------------- creation-with-upload, defer, X-HTTP-Method-Override
    r = tus("POST", "/api/v1/uploads/tus", body=small, headers={
        "Upload-Length": str(len(small)), "Upload-Metadata": meta(session_id=S, filename="cwu.png")})
    tap.is_((r.status, r.header("Upload-Offset")), (201, str(len(small))), "creation-with-upload: 201 with the offset")
    tap.ok(any(e[2].get("filename") == "cwu.png" for e in events(S, "image.uploaded")),
           "creation-with-upload: the whole file became an image")
    r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Defer-Length": "1",
                                                    "Upload-Metadata": meta(session_id=S, filename="d.png")})
    dloc = r.header("Location") or "/"
    tap.is_(r.status, 201, "deferred length: 201")
    tap.is_(tus("HEAD", dloc).header("Upload-Defer-Length"), "1", "deferred length: HEAD says so")
    r = tus("POST", dloc, body=small[:100], headers={"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0"})
    tap.is_((r.status, r.header("Upload-Offset")), (204, "100"), "X-HTTP-Method-Override: PATCH")
    r = patch(dloc, 100, small[100:], {"Upload-Length": str(len(small))})
    tap.is_((r.status, r.header("Upload-Offset")), (204, str(len(small))), "deferred length: given with the last PATCH")
    tap.ok(any(e[2].get("filename") == "d.png" for e in events(S, "image.uploaded")), "deferred length: image made")

    # ---------------------------------------------------------------- termination, refusals that end an upload
    r = create(len(small), filename="gone.png")
    tloc = r.header("Location") or "/"
    patch(tloc, 0, small[:1000])
    tap.ok(chunk_rows(tloc) > 0, "termination: bytes were stored")
    blob = st.sql("SELECT blob_id FROM tus_uploads WHERE id = :'p1'", tloc.rsplit("/", 1)[1])
    r = tus("DELETE", tloc)
    tap.is_(r.status, 204, "DELETE: 204")
    tap.is_(tus("HEAD", tloc).status, 404, "HEAD after DELETE: 404")
    st.is_problem(patch(tloc, 1000, small[1000:]), 404, "PATCH after DELETE")
    tap.is_(st.sql("SELECT count(*) FROM blob_chunks WHERE blob_id = :'p1'", blob), "0", "DELETE: the chunks are gone")
    failed = [e[2] for e in events(S, "upload.failed")]
    tap.ok(any(f.get("reason") == "terminated" and f.get("filename") == "gone.png" for f in failed),
           "DELETE: upload.failed with reason terminated")

    r = create(1000, filename="notes.txt")
    nloc = r.header("Location") or "/"
    st.is_problem(patch(nloc, 0, b"hello, this is not an image"), 415, "PATCH of a non-image")
    tap.is_(tus("HEAD", nloc).status, 404, "a non-image ends the upload")
    tap.ok(any(e[2].get("reason") == "not-an-image" for e in events(S, "upload.failed")),
           "upload.failed with reason not-an-image")
    r = create(len(small), filename="../../etc/\u202epng.exe\nx.png")
    st.is_problem(patch(r.header("Location") or "/", 0, b"hello, not an image"), 415, "a text file")
    names = [e[2].get("filename") for e in events(S) if e[1].startswith("upload.")]
    tap.ok(names and all("/" not in n and "\n" not in n and "\u202e" not in n for n in names),
           "upload events carry the sanitised file name (%r)" % names[-1:])

    # Right magic, wrong inside: refused at completion, the upload and its bytes gone.
    broken = small[:40] + os.urandom(2000)
    r = create(len(broken), filename="broken.png")
    bloc = r.header("Location") or "/"
    r = patch(bloc, 0, broken)
    tap.ok(r.status == 415, "a damaged image is refused at completion (%d)" % r.status)
    tap.is_(tus("HEAD", bloc).status, 404, "the damaged upload is gone")

    # ---------------------------------------------------------------- quota: declared and received length
    Q = st.new_session()
    r = create(128 * 1024 * 1024, session=Q)
    tap.is_(r.status, 201, "quota: a 128 MiB upload into an empty 1 GiB session is created")
    tus("DELETE", r.header("Location") or "/")
    # The session then holds all but 1000 bytes of its 1 GiB.
    st.sql("WITH b AS (INSERT INTO blobs (chunk_size) VALUES (262144) RETURNING id)"
           " INSERT INTO images (session_id, filename, original_filename, content_type, size, sha256, width, height,"
           " source, blob_id) SELECT :'p1', 'x.png', 'x.png', 'image/png', 1073741824 - 1000, '', 1, 1, 'web', id"
           " FROM b", Q)
    st.is_problem(create(len(small), session=Q), 413, "quota: a declared length past the session's quota")
    r = tus("POST", "/api/v1/uploads/tus", headers={"Upload-Defer-Length": "1", "Upload-Metadata": meta(session_id=Q)})
    qloc = r.header("Location") or "/"
    tap.is_(r.status, 201, "quota: an upload of deferred length is created")
    tap.is_(patch(qloc, 0, small[:900]).status, 204, "quota: bytes within the quota are taken")
    body = st.is_problem(patch(qloc, 900, small[900:2000]), 413, "quota: received bytes past the quota")
    tap.is_((body or {}).get("type"), "urn:imagetools:problem:session-quota-exceeded", "quota: the slug says so")
    tap.is_(tus("HEAD", qloc).header("Upload-Offset"), "900", "quota: nothing of the refused PATCH was stored")

    # ---------------------------------------------------------------- expiry and housekeeping
    r = create(len(small), filename="late.png")
    eloc = r.header("Location") or "/"
    patch(eloc, 0, small[:500])
    eid = eloc.rsplit("/", 1)[1]
    eblob = st.sql("SELECT blob_id FROM tus_uploads WHERE id = :'p1'", eid)
    st.sql("UPDATE tus_uploads SET expires_at = now() - interval '1 second' WHERE id = :'p1'", eid)
    tap.is_(tus("HEAD", eloc).status, 404, "an expired upload: HEAD 404")
    st.is_problem(patch(eloc, 500, small[500:]), 404, "an expired upload: PATCH 404")
    w = subprocess.run([st.bin("imagetools-worker"), "--once"], env=st.env(), capture_output=True, timeout=60)
    tap.is_(w.returncode, 0, "worker --once ran housekeeping")
    tap.is_(st.sql("SELECT count(*) FROM tus_uploads WHERE id = :'p1'", eid), "0", "housekeeping deleted the upload")
    tap.is_(st.sql("SELECT count(*) FROM blobs WHERE id = :'p1'", eblob), "0", "housekeeping reclaimed its bytes")
    tap.ok(any(e[2].get("reason") == "expired" and e[2].get("filename") == "late.png"
               for e in events(S, "upload.failed")), "upload.failed with reason expired")

    # ---------------------------------------------------------------- 100 MB, interrupted three times
    side = 5800
    # The test cluster runs with synchronous_commit off (speed); a crash of the database must lose no
    # acknowledged commit here, as on a production server, so this database commits synchronously.
    st.sql("ALTER DATABASE %s SET synchronous_commit = on" % st.dbname)
    st.restart_lighttpd()
    big = png_bytes(side, side, level=0)
    big_sha = hashlib.sha256(big).hexdigest()
    tap.diag("big upload: %d bytes" % len(big))
    T = st.new_session()
    r = create(len(big), session=T, filename="big.png")
    tap.is_(r.status, 201, "big: created")
    bloc = r.header("Location") or "/"
    bid = bloc.rsplit("/", 1)[1]

    def db_offset():
        try:
            return int(st.sql("SELECT \"offset\" FROM tus_uploads WHERE id = :'p1'", bid) or -1)
        except RuntimeError:
            return -1

    def head_offset():
        r = tus("HEAD", bloc)
        return int(r.header("Upload-Offset") or -1) if r.status == 200 else -1

    def unlocked():
        """True once no request holds the upload (the interrupted one has ended and committed)."""
        try:
            st.sql("BEGIN; SELECT 1 FROM tus_uploads WHERE id = :'p1' FOR UPDATE NOWAIT; ROLLBACK;", bid)
            return True
        except RuntimeError:
            return False

    def start_patch(offset, length):
        """Opens a PATCH from offset declaring length bytes; returns the socket."""
        s = socket.create_connection(("127.0.0.1", st.port), timeout=60)
        s.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: %d\r\n"
                   "Content-Type: application/offset+octet-stream\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                   % (bloc, st.port, offset, length)).encode())
        return s

    def send_until(s, offset, stop_at, pause_every=None):
        pos = offset
        while pos < stop_at:
            n = min(256 * 1024, stop_at - pos)
            s.sendall(big[pos:pos + n])
            pos += n
        return pos

    # 1. The client goes away after 30 MB of a PATCH that declared everything.
    s = start_patch(0, len(big))
    send_until(s, 0, 30 * 1024 * 1024)
    wait_for(lambda: db_offset() >= 24 * 1024 * 1024, timeout=60, what="24 MB committed")
    s.close()
    wait_for(unlocked, timeout=60, what="the aborted PATCH to end")
    off1 = head_offset()
    tap.ok(24 * 1024 * 1024 <= off1 <= 30 * 1024 * 1024,
           "client abort: HEAD offers to resume from %d (what arrived, at most what was sent)" % off1)
    tap.ok(off1 >= 0 and hashlib.sha256(big[:off1]).hexdigest() == st.sql(
        "SELECT encode(sha256(string_agg(data, ''::bytea ORDER BY n)), 'hex') FROM blob_chunks c"
        " JOIN tus_uploads t ON t.blob_id = c.blob_id WHERE t.id = :'p1'", bid),
        "client abort: the stored bytes are the bytes sent")

    # 2. kill -9 of imagetools.fcgi in the middle of the next PATCH: what was committed stays.
    def resume_offset():
        """HEAD until the server answers (lighttpd restarts the FastCGI process); the offset."""
        got = [-1]

        def ok():
            got[0] = head_offset()
            return got[0] >= 0
        wait_for(ok, timeout=60, what="HEAD answers")
        return got[0]

    s = start_patch(off1, len(big) - off1)
    send_until(s, off1, off1 + 30 * 1024 * 1024)
    wait_for(lambda: db_offset() >= off1 + 20 * 1024 * 1024, timeout=60, what="20 MB more committed")
    committed = db_offset()
    st.kill_fcgi()
    s.close()
    wait_for(unlocked, timeout=60, what="the killed process's transaction to end")
    off2 = resume_offset()
    tap.ok(off2 >= committed and off2 <= off1 + 30 * 1024 * 1024,
           "kill -9: every committed byte survives (resume from %d, %d committed before)" % (off2, committed))

    # 3. PostgreSQL restarts in the middle of the next PATCH.
    s = start_patch(off2, len(big) - off2)
    send_until(s, off2, off2 + 20 * 1024 * 1024)
    wait_for(lambda: db_offset() >= off2 + 12 * 1024 * 1024, timeout=60, what="12 MB more committed")
    committed = db_offset()
    st.pg.stop("immediate")
    try:
        send_until(s, off2 + 20 * 1024 * 1024, off2 + 24 * 1024 * 1024)
    except OSError:
        pass
    st.pg.start()
    s.close()
    wait_for(unlocked, timeout=60, what="the database to answer")
    off3 = resume_offset()
    tap.ok(off3 >= committed and off3 <= off2 + 24 * 1024 * 1024,
           "PostgreSQL restart: every committed byte survives (resume from %d, %d committed before)"
           % (off3, committed))

    # 4. The rest, with a second client following the session's events by long-poll.
    cursor = max([e[0] for e in events(T)] or [0])
    r = None
    for attempt in range(5):
        s = start_patch(off3, len(big) - off3)
        send_until(s, off3, len(big))
        status, _ = read_to_end(s)
        s.close()
        if status == 204:
            break
        off3 = resume_offset()
    tap.is_(status, 204, "big: the last PATCH completes the upload")
    tap.is_(head_offset(), len(big), "big: HEAD says complete")
    ups = events(T, "image.uploaded")
    tap.is_(len(ups), 1, "big: exactly one image.uploaded")
    iid = ups[0][2].get("image_id") if ups else ""
    tap.is_(st.sql("SELECT sha256 FROM images WHERE id = :'p1'", iid or "00000000-0000-0000-0000-000000000000"),
            big_sha, "big: the image's sha256 is the file's")
    tap.is_(st.sql("SELECT encode(sha256(string_agg(data, ''::bytea ORDER BY n)), 'hex') FROM blob_chunks c"
                   " JOIN images i ON i.blob_id = c.blob_id WHERE i.id = :'p1'",
                   iid or "00000000-0000-0000-0000-000000000000"), big_sha, "big: the stored bytes are byte-identical")
    r = st.request("GET", "/api/v1/events?session_id=%s&cursor=0&timeout=1" % T)
    seen = [e["type"] for e in r.json().get("events", [])] if r.status == 200 else []
    tap.ok(seen[:1] == ["upload.started"] and seen[-1:] == ["image.uploaded"] and "upload.progress" in seen,
           "a second client sees upload.started, upload.progress, then image.uploaded (%s)"
           % ",".join(sorted(set(seen))))
    prog = [e for e in events(T, "upload.progress")]
    pcts = [p[2].get("progress") for p in prog]
    tap.ok(pcts == sorted(pcts) and len(set(pcts)) == len(pcts) and all(0 < p < 100 for p in pcts),
           "progress: increasing by at least one percent (%s)" % pcts)
    tap.ok(len(prog) <= 100, "progress: at most one event per percent")

tap.done()
