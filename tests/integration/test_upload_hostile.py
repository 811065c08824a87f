"""test_upload_hostile.py: uploads shaped by a hostile or careless client, through real lighttpd into
real PostgreSQL: no file byte reaches the database before the session is known (measured as WAL
written), the session may come first, in the URL or in an Authorization header, a small file before
session_id still works, ambiguous duplicate fields and parameters are refused, the stored extension
follows the content, and a client that half-closes after a complete body still gets its 201."""

import hashlib
import json
import os
import socket
import tempfile
import time

from harness import Stack, Tap
from uploads_util import multipart, png_bytes, read_to_end, vips_image

tap = Tap()
work = tempfile.mkdtemp(prefix="it-upload-hostile-")
B = "itHostileBoundary"

# An own cluster: the WAL counted below must be this test's alone. Rate limits stay off (the
# harness default) so that only the order of the parts decides.
with Stack(tap, own_cluster=True, settings={"max_upload_bytes": "60M", "max_request_bytes": "100M"}) as st:
    S = st.new_session()

    def counts():
        return st.sql("SELECT (SELECT count(*) FROM images) || ' ' || (SELECT count(*) FROM blobs) || ' ' ||"
                      " (SELECT count(*) FROM blob_chunks) || ' ' || (SELECT count(*) FROM events)")

    def wal_lsn():
        return st.sql("SELECT pg_current_wal_lsn()")

    def wal_since(lsn):
        return int(st.sql("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'p1')::bigint", lsn))

    def stored(image_id):
        """(size, sha256) of the bytes stored for an image, read back from its chunks."""
        row = st.sql("SELECT coalesce(sum(length(c.data)), 0) || ' ' ||"
                     " encode(sha256(coalesce(string_agg(c.data, ''::bytea ORDER BY c.n), ''::bytea)), 'hex')"
                     " FROM images i JOIN blob_chunks c ON c.blob_id = i.blob_id WHERE i.id = :'p1'", image_id)
        size, digest = row.split(" ")
        return int(size), digest

    def parse(body):
        try:
            return json.loads(body.decode())
        except Exception:
            return {}

    def curl_upload(*form, url="/api/v1/images", headers=()):
        args = []
        for h in headers:
            args += ["-H", h]
        for f in form:
            args += ["-F", f]
        return st.curl("--max-time", "120", *args, st.url + url)

    def problem(status, headers, body, want_status, slug, name):
        b = parse(body)
        ct = ""
        for line in headers.splitlines():
            if line.lower().startswith("content-type:"):
                ct = line.split(":", 1)[1].strip()
        tap.is_((status, b.get("type")), (want_status, "urn:imagetools:problem:" + slug), name + ": %d %s" % (want_status, slug))
        tap.is_(ct.split(";")[0], "application/problem+json", name + ": problem+json")
        return b

    # ---------------------------------------------------------------- no unauthenticated writes
    # 40 MB that passes the first-bytes check (JPEG magic), so only the order of the parts can
    # stop it before the end.
    big = os.path.join(work, "big.jpg")
    with open(big, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        for _ in range(40):
            f.write(os.urandom(1 << 20))
    sent_big = os.path.getsize(big)

    before = counts()
    lsn = wal_lsn()
    status, headers, body = curl_upload("file=@%s;filename=big.jpg" % big, "session_id=" + S)
    grown = wal_since(lsn)
    b = problem(status, headers, body, 400, "session-id-first", "40 MB file before session_id")
    tap.like(b.get("detail", ""), r"session_id.*before.*(URL|Authorization)", "the detail says how to send the session")
    tap.ok(grown < 4 * 1024 * 1024, "40 MB file before session_id: WAL grew %d bytes (< 4 MB)" % grown)
    tap.is_(counts(), before, "40 MB file before session_id: nothing stored")

    lsn = wal_lsn()
    status, headers, body = curl_upload("file=@%s;filename=big.jpg" % big)
    grown = wal_since(lsn)
    problem(status, headers, body, 400, "session-id-first", "40 MB file and no session at all")
    tap.ok(grown < 4 * 1024 * 1024, "40 MB file without a session: WAL grew %d bytes (< 4 MB)" % grown)
    tap.is_(counts(), before, "40 MB file without a session: nothing stored")

    # The same with an unknown session in the URL: refused before the body is read.
    lsn = wal_lsn()
    status, headers, body = curl_upload("file=@%s;filename=big.jpg" % big, url="/api/v1/images?session_id=" + "A" * 32)
    grown = wal_since(lsn)
    problem(status, headers, body, 404, "unknown-session", "40 MB file for an unknown session in the URL")
    tap.ok(grown < 4 * 1024 * 1024, "unknown session in the URL: WAL grew %d bytes (< 4 MB)" % grown)
    status, headers, body = curl_upload("file=@%s;filename=big.jpg" % big, headers=["Authorization: Bearer x y"])
    problem(status, headers, body, 400, "invalid-session-id", "a malformed Authorization header")

    # ---------------------------------------------------------------- the documented ways work
    # A real 8 MB image, stored byte for byte whichever way the session comes.
    large = os.path.join(work, "large.png")
    with open(large, "wb") as f:
        f.write(png_bytes(1650, 1650, level=0))
    sent = os.path.getsize(large)
    with open(large, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()

    def works(name, *form, url="/api/v1/images", headers=()):
        status, _, body = curl_upload(*form, url=url, headers=headers)
        imgs = parse(body).get("images") or [{}]
        if not tap.is_(status, 201, name + ": 201"):
            tap.diag(body[:300])
            return None
        tap.is_(stored(imgs[0].get("id")), (sent, digest), name + ": the bytes stored are the bytes sent (%d)" % sent)
        return imgs[0]

    works("session in the query, file first", "file=@%s" % large, url="/api/v1/images?session_id=" + S)
    works("session in an Authorization header, file only", "file=@%s" % large, headers=["Authorization: Bearer " + S])
    works("session in the header and an agreeing field after the file", "file=@%s" % large, "session_id=" + S,
          headers=["Authorization: Bearer " + S])
    works("session_id as the first field", "session_id=" + S, "source=api", "file=@%s" % large)

    small = os.path.join(work, "small.png")
    with open(small, "wb") as f:
        f.write(png_bytes(300, 300, level=0))
    status, _, body = curl_upload("file=@%s" % small, "file=@%s" % small, "source=cli", "session_id=" + S)
    imgs = parse(body).get("images") or []
    tap.is_((status, len(imgs)), (201, 2), "two small files before session_id (under max_staged_bytes): 201")
    with open(small, "rb") as f:
        small_sha = hashlib.sha256(f.read()).hexdigest()
    tap.ok(len(imgs) == 2 and all(stored(i["id"]) == (os.path.getsize(small), small_sha) for i in imgs)
           and all(i.get("source") == "cli" for i in imgs),
           "the staged files are stored byte for byte, with the fields that followed them")

    status, _, body = curl_upload("session_id=" + S, "files[]=@%s" % small)
    tap.is_(status, 201, "files[] (Uppy's bundle mode) is a file field")

    # ---------------------------------------------------------------- ambiguity is refused
    other = st.new_session()
    before = counts()
    status, headers, body = curl_upload("session_id=" + other, "file=@%s" % small, headers=["Authorization: Bearer " + S])
    problem(status, headers, body, 400, "session-mismatch", "a session_id field naming another session than the header")
    status, headers, body = curl_upload("session_id=" + S, "session_id=" + other, "file=@%s" % small)
    problem(status, headers, body, 400, "duplicate-field", "two session_id fields")
    status, headers, body = curl_upload("session_id=" + S, "source=web", "source=cli", "file=@%s" % small)
    problem(status, headers, body, 400, "duplicate-field", "two source fields")
    with open(small, "rb") as f:
        png_small = f.read()
    ctype, mp = multipart([("session_id", S)], [("file", 'filename="a.png"; filename="b.html"', png_small)])
    r = st.request("POST", "/api/v1/images", body=mp, headers={"Content-Type": ctype})
    tap.is_((r.status, parse(r.body).get("type")), (400, "urn:imagetools:problem:malformed-multipart"),
            "two filename parameters in one part: 400 malformed-multipart")
    ctype, mp = multipart([("session_id", S)], [("file", 'name="session_id"; filename="a.png"', png_small)])
    r = st.request("POST", "/api/v1/images", body=mp, headers={"Content-Type": ctype})
    tap.is_(r.status, 400, "two name parameters in one part: 400")
    tap.is_(counts(), before, "the refused requests stored nothing")

    # ---------------------------------------------------------------- the extension follows the content
    jpg = vips_image(os.path.join(work, "poly.jpg"), 64, 48)
    with open(jpg, "ab") as f:
        f.write(b"<html><body><script>alert(document.domain)</script></body></html>\n")
    status, _, body = curl_upload("session_id=" + S, "file=@%s;filename=x.html" % jpg)
    img = (parse(body).get("images") or [{}])[0]
    tap.is_((status, img.get("filename"), img.get("content_type")), (201, "x.jpg", "image/jpeg"),
            "a JPEG/HTML polyglot sent as x.html is stored as x.jpg")
    tap.is_(img.get("original_filename"), "x.html", "the name as sent is kept as original_filename")
    if img.get("file_url"):
        status, headers, _ = st.curl(st.url + img["file_url"])
        tap.like(headers, r"(?i)content-disposition: attachment; filename=\"x\.jpg\"", "and downloads as x.jpg")
    status, _, body = curl_upload("session_id=" + S, "file=@%s;filename=holiday" % jpg)
    tap.is_((parse(body).get("images") or [{}])[0].get("filename"), "holiday.jpg", "a name without an extension gets .jpg")
    if img.get("id"):
        r = st.request("PATCH", "/api/v1/images/" + img["id"], body={"filename": "renamed.html"},
                       headers={"Content-Type": "application/json", "Authorization": "Bearer " + S})
        tap.is_((r.status, parse(r.body).get("filename")), (200, "renamed.jpg"),
                "a rename to x.html keeps the extension of what the file is: renamed.jpg")

    # ---------------------------------------------------------------- half-close after a complete body
    # The client sends the whole body in two writes and then shuts down its sending side
    # (shutdown(SHUT_WR)), as some HTTP/1.0 clients and proxies do. lighttpd's tcp-fin-propagate
    # once passed that on to the backend before it had forwarded the rest of the body.
    ctype, mp = multipart([("session_id", S)], [("file", 'filename="half.png"', png_bytes(300, 300, level=0))],
                          boundary=B)
    fileb = mp.split(b"\r\n\r\n", 2)[2].rsplit(b"\r\n--" + B.encode(), 1)[0]
    half_sha = hashlib.sha256(fileb).hexdigest()
    results = {}
    good = 0
    for i in range(30):
        s = socket.create_connection(("127.0.0.1", st.port), timeout=60)
        head = ("POST /api/v1/images HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (ctype, len(mp))).encode()
        s.sendall(head + mp[:len(mp) // 2])
        time.sleep(0.05)
        s.sendall(mp[len(mp) // 2:])
        s.shutdown(socket.SHUT_WR)
        status, data = read_to_end(s)
        s.close()
        results[status] = results.get(status, 0) + 1
        if status == 201:
            ans = parse(data.split(b"\r\n\r\n", 1)[1])
            if stored(ans["images"][0]["id"]) == (len(fileb), half_sha):
                good += 1
        elif results[status] == 1:
            tap.diag("half-close try %d: %r" % (i, data[-300:]))
    tap.is_(results, {201: 30}, "30 uploads followed by a half-close: every one 201")
    tap.is_(good, 30, "and every one stored the bytes sent")

tap.done()
