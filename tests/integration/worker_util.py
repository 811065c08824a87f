"""worker_util.py: helpers for the worker's tests and benchmark: real images made with the vips command
line, images put into a session, their stored bytes and the session's event log read back."""

import hashlib
import json
import os
import subprocess
import tempfile
import time
import uuid

from harness import wait_for

CHUNK = 256 * 1024


def make_jpeg(path, width, height, quality=95, seed=0):
    """Writes a colour, photo-like (smooth noise) JPEG of width x height at quality to path."""
    d = tempfile.mkdtemp(prefix="it-img-")
    try:
        bands = []
        for b in range(3):
            noise = os.path.join(d, "n%d.v" % b)
            # --seed makes each image different, so no two compress alike.
            subprocess.run(["vips", "gaussnoise", noise, str(width), str(height), "--mean", str(96 + 32 * b),
                            "--sigma", "60", "--seed", str(seed * 3 + b)], check=True)
            blur = os.path.join(d, "b%d.v" % b)
            subprocess.run(["vips", "gaussblur", noise, blur, "1.2"], check=True)
            bands.append(blur)
        joined = os.path.join(d, "rgb.v")
        subprocess.run(["vips", "bandjoin", " ".join(bands), joined], check=True)
        srgb = os.path.join(d, "srgb.v")
        subprocess.run(["vips", "copy", joined, srgb, "--interpretation", "srgb"], check=True)
        subprocess.run(["vips", "copy", srgb, "%s[Q=%d]" % (path, quality)], check=True)
    finally:
        subprocess.run(["rm", "-rf", d])
    return path


def jpeg_bytes(width, height, quality=95, seed=0):
    with tempfile.TemporaryDirectory() as d:
        p = make_jpeg(os.path.join(d, "x.jpg"), width, height, quality, seed)
        with open(p, "rb") as f:
            return f.read()


def decode_size(data):
    """Decodes data fully with libvips (vips avg reads every pixel) and returns (width, height);
    raises when the bytes are not a complete image."""
    with tempfile.NamedTemporaryFile(suffix=".img") as f:
        f.write(data)
        f.flush()
        subprocess.run(["vips", "avg", f.name], check=True, capture_output=True)
        w = subprocess.run(["vipsheader", "-f", "width", f.name], check=True, capture_output=True, text=True)
        h = subprocess.run(["vipsheader", "-f", "height", f.name], check=True, capture_output=True, text=True)
        return int(w.stdout), int(h.stdout)


def put_image(st, session, data, filename="photo.jpg", content_type="image/jpeg", width=None, height=None):
    """Stores an image in session and returns its id: through POST /api/v1/images when the server
    has that route, else straight into the tables of sql/002_images.sql (same rows, same layout)."""
    r = st.request("POST", "/api/v1/images", body=_multipart(session, filename, data),
                   headers={"Content-Type": "multipart/form-data; boundary=itboundary"})
    if r.status == 201:
        return r.json()["images"][0]["id"]
    if r.status not in (404, 405):
        raise RuntimeError("upload failed: %r" % r)
    if width is None:
        width, height = decode_size(data)
    sha = hashlib.sha256(data).hexdigest()
    chunks = [data[i:i + CHUNK] for i in range(0, len(data), CHUNK)] or [b""]
    image_id = str(uuid.uuid4())
    sql = ["BEGIN;",
           "INSERT INTO blobs (chunk_size, size, sha256) VALUES (%d, %d, '%s');" % (CHUNK, len(data), sha)]
    for n, c in enumerate(chunks):
        sql.append("INSERT INTO blob_chunks (blob_id, n, data) VALUES (currval('blobs_id_seq'), %d, '\\x%s');"
                   % (n, c.hex()))
    sql.append("INSERT INTO images (id, session_id, filename, original_filename, content_type, size, sha256,"
               " width, height, source, blob_id) VALUES ('%s', :'p1', :'p2', :'p2', '%s', %d, '%s', %d, %d, 'api',"
               " currval('blobs_id_seq'));" % (image_id, content_type, len(data), sha, width, height))
    sql.append("SELECT it_append_event(:'p1', 'image.uploaded', jsonb_build_object('image_id', '%s'));" % image_id)
    sql.append("COMMIT;")
    st.sql("\n".join(sql), session, filename)
    return image_id


def put_copies(st, session, data, n, filename="photo.jpg"):
    """Stores n images with the same bytes (each with its own blob) and returns their ids, in one
    transaction when the tables are written directly."""
    r = st.request("POST", "/api/v1/images", body=_multipart(session, filename, data),
                   headers={"Content-Type": "multipart/form-data; boundary=itboundary"})
    if r.status == 201:
        first = r.json()["images"][0]["id"]
        return [first] + [put_image(st, session, data, filename) for _ in range(n - 1)]
    first = put_image(st, session, data, filename)
    ids = [str(uuid.uuid4()) for _ in range(n - 1)]
    sql = ["BEGIN;"]
    for image_id in ids:
        sql.append("INSERT INTO blobs (chunk_size, size, sha256) SELECT chunk_size, size, sha256 FROM blobs"
                   " WHERE id = (SELECT blob_id FROM images WHERE id = '%s');" % first)
        sql.append("INSERT INTO blob_chunks (blob_id, n, data) SELECT currval('blobs_id_seq'), n, data"
                   " FROM blob_chunks WHERE blob_id = (SELECT blob_id FROM images WHERE id = '%s');" % first)
        sql.append("INSERT INTO images (id, session_id, filename, original_filename, content_type, size, sha256,"
                   " width, height, source, blob_id) SELECT '%s', session_id, filename, original_filename,"
                   " content_type, size, sha256, width, height, source, currval('blobs_id_seq') FROM images"
                   " WHERE id = '%s';" % (image_id, first))
        sql.append("SELECT it_append_event(:'p1', 'image.uploaded', jsonb_build_object('image_id', '%s'));"
                   % image_id)
    sql.append("COMMIT;")
    st.sql("\n".join(sql), session)
    return [first] + ids


def _multipart(session, filename, data):
    b = b"--itboundary\r\n"
    out = b + b'Content-Disposition: form-data; name="session_id"\r\n\r\n' + session.encode() + b"\r\n"
    out += b + b'Content-Disposition: form-data; name="source"\r\n\r\napi\r\n'
    out += b + ('Content-Disposition: form-data; name="file"; filename="%s"\r\n' % filename).encode()
    out += b"Content-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--itboundary--\r\n"
    return out


def image_row(st, image_id):
    """The image's row as a dict (None when gone)."""
    out = st.sql("SELECT row_to_json(i)::text FROM (SELECT id, session_id, content_type, size, sha256, width,"
                 " height, version, blob_id, thumb_blob_id FROM images WHERE id = :'p1') i", image_id)
    return json.loads(out) if out else None


def blob_bytes(st, blob_id):
    out = st.sql("SELECT coalesce(string_agg(encode(data, 'hex'), '' ORDER BY n), '') FROM blob_chunks"
                 " WHERE blob_id = :'p1'", str(blob_id))
    return bytes.fromhex(out)


def image_bytes(st, image_id):
    return blob_bytes(st, image_row(st, image_id)["blob_id"])


def events(st, session):
    """Every stored event of session in wire form, in seq order."""
    out = st.sql("SELECT it_event_json(e) FROM events e WHERE session_id = :'p1' ORDER BY seq", session)
    return [json.loads(line) for line in out.splitlines() if line]


def op_events(evs, op_id):
    return [e for e in evs if e["type"].startswith("operation.") and e["data"].get("operation_id") == op_id]


def start_operation(st, session, image_ids, type_="bulk_compress", params=None):
    body = {"session_id": session, "type": type_, "image_ids": image_ids}
    if params is not None:
        body["params"] = params
    r = st.request("POST", "/api/v1/operations", body=body)
    if r.status != 202:
        raise RuntimeError("operation refused: %r" % r)
    return r.json()["operation_id"]


def op_session(st, op_id):
    """The session an operation belongs to (read from the database: the API tells it to no one)."""
    return st.sql("SELECT session_id FROM operations WHERE id = :'p1'", op_id)


def get_operation(st, op_id, session=None):
    r = st.request("GET", "/api/v1/operations/" + op_id,
                   headers={"Authorization": "Bearer " + (session or op_session(st, op_id))})
    return r.json() if r.status == 200 else None


def cancel_operation(st, op_id, session=None):
    """POST /operations/{id}/cancel with the operation's session credential; returns the response."""
    return st.request("POST", "/api/v1/operations/%s/cancel" % op_id, body=b"",
                      headers={"Content-Length": "0", "Authorization": "Bearer " + (session or op_session(st, op_id))})


def wait_operation(st, op_id, statuses=("completed", "failed", "cancelled"), timeout=60):
    return wait_for(lambda: (lambda o: o if o and o["status"] in statuses else None)(get_operation(st, op_id)),
                    timeout=timeout, interval=0.05, what="operation %s to reach %s" % (op_id, "/".join(statuses)))


def wait_done(st, op_id, n, timeout=60):
    """Waits until at least n images of the operation are finished (the queue's own counter)."""
    return wait_for(lambda: int(st.sql("SELECT done FROM operations WHERE id = :'p1'", op_id) or 0) >= n,
                    timeout=timeout, interval=0.01, what="%d images done" % n)


def stop_worker(st, proc, sig):
    proc.send_signal(sig)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    if proc in st.procs:
        st.procs.remove(proc)
    return proc.returncode


def now():
    return time.monotonic()
