"""test_uploads.py: uploads through real lighttpd into real PostgreSQL with curl -F: byte-identical
round trips, events committed with the images, limits and bad input refused atomically, downloads with
ETag and Range, thumbnails, rename and delete, parallel uploads, and flat memory on a large upload."""

import json
import os
import subprocess
import tempfile
import threading

from harness import Stack, Tap
from uploads_util import (multipart, png_bomb, png_bytes, raw_post, sha256_file, vips_image, vm_hwm_kb)

tap = Tap()
work = tempfile.mkdtemp(prefix="it-uploads-")

# max_upload_bytes is small enough that the over-limit case stays quick, large enough for the
# 25 MB upload whose memory is measured.
with Stack(tap, settings={"max_upload_bytes": "26M", "max_files": "5", "thumbnail_size": "128"}) as st:
    S = st.new_session()
    AUTH = {"Authorization": "Bearer " + S}

    def counts():
        """Rows a failed request must not leave behind."""
        return st.sql("SELECT (SELECT count(*) FROM images) || ' ' || (SELECT count(*) FROM blobs) || ' ' ||"
                      " (SELECT count(*) FROM blob_chunks) || ' ' || (SELECT count(*) FROM events)")

    def events(session):
        rows = st.sql("SELECT seq || ' ' || type || ' ' || payload::text FROM events WHERE session_id = :'p1'"
                      " ORDER BY seq", session)
        out = []
        for line in rows.splitlines():
            seq, typ, payload = line.split(" ", 2)
            out.append((int(seq), typ, json.loads(payload)))
        return out

    def curl_upload(*files, session=None, source="android_app"):
        args = ["-F", "session_id=" + (session or S)]
        if source is not None:
            args += ["-F", "source=" + source]
        for f in files:
            args += ["-F", "file=@" + f]
        status, headers, body = st.curl(*args, st.url + "/api/v1/images")
        return status, headers, body

    def download(url, out):
        """GETs url with curl and writes the body to out; returns (status, headers)."""
        status, headers, body = st.curl(st.url + url)
        with open(out, "wb") as f:
            f.write(body)
        return status, headers

    def parse(body):
        try:
            return json.loads(body.decode())
        except Exception:
            return {}

    # ---------------------------------------------------------------- round trips, one per format
    images = {}
    for ext in ("jpg", "png", "gif", "webp"):
        path = vips_image(os.path.join(work, "photo." + ext), 300, 200)
        status, headers, body = curl_upload(path)
        tap.is_(status, 201, "%s: upload answers 201" % ext)
        img = (parse(body).get("images") or [{}])[0]
        images[ext] = img
        ctype = {"jpg": "image/jpeg", "png": "image/png", "gif": "image/gif", "webp": "image/webp"}[ext]
        tap.is_(img.get("content_type"), ctype, "%s: content type sniffed" % ext)
        tap.is_((img.get("width"), img.get("height")), (300, 200), "%s: width and height from the header" % ext)
        tap.is_(img.get("size"), os.path.getsize(path), "%s: size" % ext)
        tap.is_(img.get("sha256"), sha256_file(path), "%s: sha256 of the bytes sent" % ext)
        tap.is_((img.get("filename"), img.get("original_filename")), ("photo." + ext, "photo." + ext),
                "%s: file name kept" % ext)
        tap.is_(img.get("source"), "android_app", "%s: source" % ext)
        tap.is_(img.get("version"), 1, "%s: version 1" % ext)
        tap.like(img.get("file_url", ""), r"^/api/v1/images/%s/file\?v=1&exp=\d+&sig=[\w-]{43}$" % img.get("id"),
                 "%s: file_url, signed" % ext)
        out = os.path.join(work, "down." + ext)
        status, headers = download(img.get("file_url", "/"), out)
        tap.is_(status, 200, "%s: download 200" % ext)
        tap.is_(sha256_file(out), sha256_file(path), "%s: downloaded bytes are identical to the upload" % ext)
        tap.like(headers, r'(?im)^etag: "%s"$' % img.get("sha256"), "%s: ETag is the sha256" % ext)
        tap.like(headers, r"(?im)^content-type: %s$" % ctype, "%s: Content-Type of the download" % ext)
        tap.like(headers, r"(?im)^content-disposition: attachment; filename=\"photo\.%s\"; "
                          r"filename\*=UTF-8''photo\.%s$" % (ext, ext), "%s: Content-Disposition" % ext)
        thumb = os.path.join(work, "thumb." + ext)
        status, headers = download(img.get("thumbnail_url", "/"), thumb)
        tap.is_(status, 200, "%s: thumbnail 200" % ext)
        r = subprocess.run(["vipsheader", "-f", "width", thumb], capture_output=True, text=True)
        r2 = subprocess.run(["vipsheader", "-f", "height", thumb], capture_output=True, text=True)
        tap.is_((r.stdout.strip(), r2.stdout.strip()), ("128", "85"),
                "%s: thumbnail decodes, longest edge thumbnail_size, aspect kept" % ext)

    ev = events(S)
    tap.is_([e[0] for e in ev], [1, 2, 3, 4], "four uploads, four events with consecutive ids")
    tap.is_({e[1] for e in ev}, {"image.uploaded"}, "all image.uploaded")
    tap.is_([e[2].get("image_id") for e in ev], [images[x].get("id") for x in ("jpg", "png", "gif", "webp")],
            "each event names its image, in upload order")
    d = ev[0][2] if ev else {}
    tap.is_((d.get("filename"), d.get("source"), d.get("content_type"), d.get("width"), d.get("height"),
             d.get("size"), (d.get("thumbnail_url") or "").split("?")[0], (d.get("file_url") or "").split("?")[0]),
            ("photo.jpg", "android_app", "image/jpeg", 300, 200, images["jpg"].get("size"),
             "/api/v1/images/%s/thumbnail" % images["jpg"].get("id"), "/api/v1/images/%s/file" % images["jpg"].get("id")),
            "image.uploaded data has the documented fields")
    tap.like(d.get("thumbnail_url") or "", r"\?v=1&exp=\d+&sig=", "with signed URLs")

    # ---------------------------------------------------------------- several files, odd names
    a = vips_image(os.path.join(work, "a.jpg"), 64, 48)
    b = os.path.join(work, "b.png")
    with open(b, "wb") as f:
        f.write(png_bytes(40, 30))
    c = vips_image(os.path.join(work, "c.gif"), 20, 10)
    status, _, body = st.curl("-F", "session_id=" + S, "-F", "file=@%s;filename=café €.jpg" % a,
                              "-F", "file=@" + b, "-F", "file=@" + c, st.url + "/api/v1/images")
    got = parse(body).get("images") or []
    tap.is_(status, 201, "three files in one request: 201")
    tap.is_([g.get("content_type") for g in got], ["image/jpeg", "image/png", "image/gif"], "three images, in order")
    tap.is_(got[0].get("filename") if got else None, "café €.jpg", "a UTF-8 file name is kept")
    tap.is_(got[1].get("source") if len(got) > 1 else None, "web", "source defaults to web")
    tap.is_([e[0] for e in events(S)][4:], [5, 6, 7], "one event per image, consecutive")

    hostile = [
        ('filename="../../etc/passwd"', "passwd.png", "../../etc/passwd"),
        ('filename="q\\"uote\\".png"', 'q"uote".png', 'q"uote".png'),
        ('filename="<script>alert(1)<\\/script>.png"', "script>.png", "<script>alert(1)<\\/script>.png"),
        ('filename="fallback.png"; filename*=UTF-8\'\'%E2%82%AC%0D%0Ax%09y.png', "€ x y.png", "€\r\nx\ty.png"),
        ('filename="C:\\Users\\eve\\Desktop\\..\\x.png"', "x.png", "C:\\Users\\eve\\Desktop\\..\\x.png"),
        ('filename="..."', "image.png", "..."),
    ]
    pngdata = png_bytes(8, 8)
    for disp, want_name, want_orig in hostile:
        ctype, body = multipart([("session_id", S), ("source", "cli")], [("file", disp, pngdata)])
        r = st.request("POST", "/api/v1/images", body=body, headers={"Content-Type": ctype})
        img = (parse(r.body).get("images") or [{}])[0]
        tap.is_((r.status, img.get("filename"), img.get("original_filename")), (201, want_name, want_orig),
                "hostile name %s: stored as %r" % (disp[:40], want_name))
    tap.is_(st.sql("SELECT count(*) FROM images WHERE filename ~ '[/\\\\[:cntrl:]]'"), "0",
            "no stored display name holds a path separator or a control character")

    # ---------------------------------------------------------------- refusals store nothing
    before = counts()
    seq_before = st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", S)
    txt = os.path.join(work, "notes.txt")
    with open(txt, "w") as f:
        f.write("just some text, not an image\n" * 100)
    status, _, body = curl_upload(txt)
    tap.is_((status, parse(body).get("type")), (415, "urn:imagetools:problem:not-an-image"), "text file: 415")
    # A valid image first, then a non-image in the same request: the whole request is refused.
    status, _, body = curl_upload(a, txt)
    tap.is_(status, 415, "an image plus a non-image: 415 for the request")
    fake = os.path.join(work, "fake.jpg")
    with open(fake, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0garbage that is not a JPEG at all" * 50)
    status, _, body = curl_upload(fake)
    tap.is_((status, parse(body).get("type")), (415, "urn:imagetools:problem:corrupt-image"),
            "JPEG magic with a broken body: 415 corrupt-image")
    bomb = os.path.join(work, "bomb.png")
    with open(bomb, "wb") as f:
        f.write(png_bomb())
    status, _, body = curl_upload(bomb)
    tap.is_((status, parse(body).get("type")), (413, "urn:imagetools:problem:too-many-pixels"),
            "a tiny PNG declaring 100000x100000 is refused before decoding")
    big = os.path.join(work, "big.jpg")
    with open(big, "wb") as f:
        f.write(b"\xff\xd8\xff\xe0")
        f.write(os.urandom(27 * 1024 * 1024))
    status, _, body = curl_upload(big)
    tap.is_((status, parse(body).get("type")), (413, "urn:imagetools:problem:file-too-large"),
            "a file over max_upload_bytes: 413")
    # Far over the limit: the rest of the body is not drained, the connection is cut after the answer.
    with open(big, "ab") as f:
        f.write(os.urandom(14 * 1024 * 1024))
    status, _, body = curl_upload(big)
    tap.is_((status, parse(body).get("type")), (413, "urn:imagetools:problem:file-too-large"),
            "a file far over max_upload_bytes: 413, the client still gets the answer")
    ctype, body = multipart([("session_id", S)], [("file", 'filename="t.png"', png_bytes(4, 4))])
    status, rbody = raw_post(st.port, "/api/v1/images", ctype, body, content_length=205 * 1048576)
    tap.is_((status, parse(rbody).get("type")), (413, "urn:imagetools:problem:request-too-large"),
            "a Content-Length over max_request_bytes: 413 before reading the body")
    status, _, body = curl_upload(a, a, a, a, a, a)
    tap.is_((status, parse(body).get("type")), (413, "urn:imagetools:problem:too-many-files"), "over max_files: 413")
    status, _, body = curl_upload(a, session="A" * 32)
    tap.is_((status, parse(body).get("type")), (404, "urn:imagetools:problem:unknown-session"), "unknown session: 404")
    status, _, body = curl_upload(a, session="bad'id")
    tap.is_(status, 400, "malformed session id: 400")
    status, _, body = curl_upload(a, source="fax")
    tap.is_((status, parse(body).get("type")), (400, "urn:imagetools:problem:unknown-source"), "unknown source: 400")
    status, _, body = st.curl("-F", "file=@" + a, st.url + "/api/v1/images")
    tap.is_((status, parse(body).get("type")), (400, "urn:imagetools:problem:missing-session-id"),
            "no session_id: 400")
    status, _, body = st.curl("-F", "session_id=" + S, st.url + "/api/v1/images")
    tap.is_((status, parse(body).get("type")), (400, "urn:imagetools:problem:missing-file"), "no file: 400")
    r = st.request("POST", "/api/v1/images", body=b"{}", headers={"Content-Type": "application/json"})
    st.is_problem(r, 400, "not multipart")
    ctype, body = multipart([("session_id", S)], [("file", 'filename="t.png"', pngdata)])
    status, rbody = raw_post(st.port, "/api/v1/images", ctype, body[:-40])
    tap.is_((status, parse(rbody).get("type")), (400, "urn:imagetools:problem:truncated"),
            "a body that ends before the closing boundary: 400 truncated")
    raw_post(st.port, "/api/v1/images", ctype, body[:len(body) // 2], content_length=len(body), close_after=True)
    bad = body.replace(b'Content-Disposition: form-data; name="file"', b"Content-Disposition: form-data")
    status, rbody = raw_post(st.port, "/api/v1/images", ctype, bad)
    tap.is_((status, parse(rbody).get("type")), (400, "urn:imagetools:problem:malformed-multipart"),
            "a part without a name: 400 malformed-multipart")
    # Expired session: refused like an unknown one.
    S_old = st.new_session()
    st.sql("UPDATE sessions SET expires_at = now() - interval '1 second' WHERE id = :'p1'", S_old)
    status, _, _ = curl_upload(a, session=S_old)
    tap.is_(status, 404, "expired session: 404")
    tap.is_(counts(), before, "none of the refused requests left an image, blob, chunk or event behind")
    tap.is_(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", S), seq_before,
            "the session's event counter did not move")

    # ---------------------------------------------------------------- downloads: ETag, Range
    jpg = images["jpg"]
    path = os.path.join(work, "photo.jpg")
    with open(path, "rb") as f:
        data = f.read()
    url = "/api/v1/images/%s/file" % jpg.get("id")
    r = st.request("GET", url, headers={**AUTH, "If-None-Match": '"%s"' % jpg.get("sha256")})
    tap.is_((r.status, r.body), (304, b""), "If-None-Match with the ETag: 304, no body")
    r = st.request("GET", url, headers={**AUTH, "If-None-Match": '"other", W/"%s"' % jpg.get("sha256")})
    tap.is_(r.status, 304, "If-None-Match list with a weak match: 304")
    r = st.request("GET", url, headers={**AUTH, "Range": "bytes=10-109"})
    tap.is_((r.status, r.body, r.header("Content-Range")), (206, data[10:110], "bytes 10-109/%d" % len(data)),
            "Range bytes=10-109: 206 with exactly those bytes")
    r = st.request("GET", url, headers={**AUTH, "Range": "bytes=-50"})
    tap.is_((r.status, r.body), (206, data[-50:]), "suffix range: the last 50 bytes")
    r = st.request("GET", url, headers={**AUTH, "Range": "bytes=%d-" % (len(data) - 7)})
    tap.is_((r.status, r.body), (206, data[-7:]), "open range to the end")
    r = st.request("GET", url, headers={**AUTH, "Range": "bytes=%d-" % len(data)})
    tap.is_((r.status, r.header("Content-Range")), (416, "bytes */%d" % len(data)), "range past the end: 416")
    r = st.request("GET", url, headers={**AUTH, "Range": "bytes=0-9", "If-Range": '"stale"'})
    tap.is_((r.status, len(r.body)), (200, len(data)), "If-Range with another ETag: the whole file")
    r = st.request("HEAD", url, headers=AUTH)
    tap.is_((r.status, r.body, r.header("Content-Length")), (200, b"", str(len(data))), "HEAD: headers only")
    st.is_problem(st.request("GET", "/api/v1/images/00000000-0000-4000-8000-000000000000/file", headers=AUTH), 404, "unknown image")
    st.is_problem(st.request("GET", "/api/v1/images/not-a-uuid", headers=AUTH), 400, "malformed image id")
    r = st.request("GET", "/api/v1/images/" + jpg.get("id", ""), headers=AUTH)
    tap.is_((r.status, r.json().get("sha256")), (200, jpg.get("sha256")), "GET /images/{id}: metadata")

    # ---------------------------------------------------------------- listing
    all_ids = st.sql("SELECT id FROM images WHERE session_id = :'p1' ORDER BY pos DESC", S).split()
    seen, cursor, pages = [], None, 0
    while pages < 20:
        q = "/api/v1/sessions/%s/images?limit=4" % S + ("&before=" + cursor if cursor else "")
        r = st.request("GET", q)
        page = r.json()
        seen += [i["id"] for i in page["images"]]
        cursor = page.get("next")
        pages += 1
        if not cursor:
            break
    tap.is_(seen, all_ids, "pages of 4 list every image once, newest first")
    st.is_problem(st.request("GET", "/api/v1/sessions/%s/images?limit=0" % S), 400, "limit=0")
    st.is_problem(st.request("GET", "/api/v1/sessions/%s/images" % ("A" * 32)), 404, "list of an unknown session")

    # ---------------------------------------------------------------- rename and delete
    n_ev = len(events(S))
    png_img = images["png"]
    r = st.request("PATCH", "/api/v1/images/" + png_img["id"], body={"filename": "../holiday\n2026.png"}, headers=AUTH)
    tap.is_((r.status, r.json().get("filename"), r.json().get("original_filename")),
            (200, "holiday 2026.png", "photo.png"), "rename: 200, new name sanitised, original kept")
    ev = events(S)
    tap.is_((len(ev), ev[-1][0], ev[-1][1], ev[-1][2].get("image_id"), ev[-1][2].get("filename")),
            (n_ev + 1, n_ev + 1, "image.updated", png_img["id"], "holiday 2026.png"),
            "rename: exactly one image.updated event, next id")
    st.is_problem(st.request("PATCH", "/api/v1/images/" + png_img["id"], body=b"{nope",
                             headers={**AUTH, "Content-Type": "application/json"}), 400, "rename with bad JSON")
    st.is_problem(st.request("PATCH", "/api/v1/images/" + png_img["id"], body={"name": "x"}, headers=AUTH), 400,
                  "rename without filename")
    st.is_problem(st.request("PATCH", "/api/v1/images/" + png_img["id"], body=b"{\"filename\":\"" + b"a" * 20000 + b"\"}",
                             headers={**AUTH, "Content-Type": "application/json"}), 413, "rename with a huge body")
    st.is_problem(st.request("PATCH", "/api/v1/images/00000000-0000-4000-8000-000000000000",
                             body={"filename": "x.png"}, headers=AUTH), 404, "rename of an unknown image")
    tap.is_(len(events(S)), n_ev + 1, "failed renames made no events")

    # A new version (what the worker's operations do) swaps in new blobs: the old ones go.
    gif_img = images["gif"]
    old_ids = st.sql("SELECT blob_id || ' ' || thumb_blob_id FROM images WHERE id = :'p1'", gif_img["id"]).split()
    st.sql("WITH b AS (INSERT INTO blobs (chunk_size) VALUES (262144), (262144) RETURNING id)"
           " UPDATE images SET blob_id = (SELECT min(id) FROM b), thumb_blob_id = (SELECT max(id) FROM b),"
           " version = version + 1 WHERE id = :'p1'", gif_img["id"])
    tap.is_(st.sql("SELECT count(*) FROM blobs WHERE id IN (:p1, :p2)", *old_ids), "0",
            "a new version's swap deletes the previous blobs")

    blob_ids = st.sql("SELECT blob_id || ' ' || thumb_blob_id FROM images WHERE id = :'p1'", png_img["id"]).split()
    r = st.request("DELETE", "/api/v1/images/" + png_img["id"], headers=AUTH)
    tap.is_(r.status, 204, "delete: 204")
    tap.is_(st.sql("SELECT count(*) FROM blobs WHERE id IN (:p1, :p2)", *blob_ids), "0",
            "delete: the image's blobs are gone")
    tap.is_(st.sql("SELECT count(*) FROM blob_chunks WHERE blob_id IN (:p1, :p2)", *blob_ids), "0",
            "delete: and their chunks")
    ev = events(S)
    tap.is_((len(ev), ev[-1][1], ev[-1][2]), (n_ev + 2, "image.deleted", {"image_id": png_img["id"]}),
            "delete: exactly one image.deleted event")
    st.is_problem(st.request("GET", "/api/v1/images/%s/file" % png_img["id"], headers=AUTH), 404, "deleted image's file")
    st.is_problem(st.request("DELETE", "/api/v1/images/" + png_img["id"], headers=AUTH), 404, "deleting twice")
    tap.is_([e[0] for e in ev], list(range(1, len(ev) + 1)), "the session's log has no gaps")

    # ---------------------------------------------------------------- 8 parallel uploads
    P = st.new_session()
    results = []

    def one(i):
        results.append(curl_upload(a, session=P, source="browser_addon")[0])
    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tap.is_(sorted(results), [201] * 8, "8 parallel uploads into one session all succeed")
    ev = events(P)
    tap.is_([e[0] for e in ev], list(range(1, 9)), "8 events with ids 1..8")
    tap.is_(sorted(e[2].get("image_id") for e in ev),
            sorted(st.sql("SELECT id FROM images WHERE session_id = :'p1'", P).split()),
            "each image has exactly one event")

    # ---------------------------------------------------------------- plain CGI (shared hosting)
    C = st.new_session()
    ctype, body = multipart([("session_id", C), ("source", "web")], [("file", 'filename="cgi.png"', pngdata)])
    env = st.env()
    env.update({"REQUEST_METHOD": "POST", "REQUEST_URI": "/api/v1/images", "QUERY_STRING": "",
                "CONTENT_TYPE": ctype, "CONTENT_LENGTH": str(len(body)), "GATEWAY_INTERFACE": "CGI/1.1",
                "REMOTE_ADDR": "127.0.0.1"})
    r = subprocess.run([st.bin("cgi-bin/imagetools.fcgi")], input=body, env=env, capture_output=True, timeout=60)
    head, _, cbody = r.stdout.partition(b"\r\n\r\n")
    cimg = (parse(cbody).get("images") or [{}])[0]
    tap.is_((head.split(b"\r\n")[0], cimg.get("filename")), (b"Status: 201 Created", "cgi.png"),
            "the same binary as plain CGI stores an upload")
    tap.is_([(e[0], e[1]) for e in events(C)], [(1, "image.uploaded")], "CGI upload: its event")

    # ---------------------------------------------------------------- a 25 MB upload in flat memory
    bigpng = os.path.join(work, "big.png")
    with open(bigpng, "wb") as f:
        f.write(png_bytes(3000, 2900, level=0))
    size = os.path.getsize(bigpng)
    status, _, body = curl_upload(bigpng)
    img = (parse(body).get("images") or [{}])[0]
    tap.is_((status, img.get("size"), img.get("sha256")), (201, size, sha256_file(bigpng)),
            "a %d MB upload is stored whole" % (size >> 20))
    out = os.path.join(work, "big.down")
    download(img.get("file_url", "/"), out)
    tap.is_(sha256_file(out), sha256_file(bigpng), "and downloads byte-identical")
    tap.is_(st.sql("SELECT count(*) FROM blob_chunks c JOIN images i ON i.blob_id = c.blob_id WHERE i.id = :'p1'",
                   img.get("id", "00000000-0000-4000-8000-000000000000")),
            str((size + 262143) // 262144), "stored as 256 KiB chunks")
    hwm = max(vm_hwm_kb(p) for p in st.fcgi_pids())
    tap.diag("imagetools.fcgi peak RSS (VmHWM): %d KiB" % hwm)
    if st.sanitized():
        tap.skip("imagetools.fcgi peak RSS stays under 64 MB", "AddressSanitizer build: its shadow memory is counted")
    else:
        tap.ok(hwm < 64 * 1024, "imagetools.fcgi peak RSS stays under 64 MB (%d KiB)" % hwm)

    # ---------------------------------------------------------------- the session's end takes the bytes
    st.request("DELETE", "/api/v1/sessions/" + P)
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", P), "0", "deleting a session deletes its images")
    tap.is_(st.sql("SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM images i"
                   " WHERE i.blob_id = b.id OR i.thumb_blob_id = b.id)"), "0", "and no blob is left orphaned")

# The database goes away and comes back: uploads answer 503 meanwhile, then work again in the
# same FastCGI process.
with Stack(tap, own_cluster=True) as st:
    S = st.new_session()
    small = os.path.join(work, "small.png")
    with open(small, "wb") as f:
        f.write(png_bytes(16, 16))
    st.pg.stop()
    status, headers, body = st.curl("-F", "session_id=" + S, "-F", "file=@" + small, st.url + "/api/v1/images")
    tap.is_((status, json.loads(body or b"{}").get("type")), (503, "urn:imagetools:problem:database-unavailable"),
            "database down: 503 database-unavailable")
    tap.like(headers, r"(?im)^retry-after: \d+", "with Retry-After")
    st.pg.start()
    status, _, body = st.curl("-F", "session_id=" + S, "-F", "file=@" + small, st.url + "/api/v1/images")
    tap.is_(status, 201, "database back: the next upload is stored")
    tap.is_(st.sql("SELECT count(*) || ' ' || (SELECT last_event_seq FROM sessions) FROM images"), "1 1",
            "one image, one event: nothing half-stored from the failed attempt")

subprocess.run(["rm", "-rf", work])
tap.done()
