"""test_bombs.py: decompression and dimension bombs against real lighttpd + imagetools.fcgi + PostgreSQL
and a real imagetools-worker, with a corpus made here (no files): GIF frames larger than or outside their
screen, thousands of frames, a wide screen without pixels, PNGs whose rows or IHDR are huge behind a tiny
IDAT, interlaced PNG, JPEG SOF 65535x65535, WebP canvases and animation frames. Each bomb is refused with
a 4xx problem+json and stores nothing; legitimate large images (just under max_pixels, the widest and
deepest rows allowed, a large GIF) still work. The peak memory of imagetools.fcgi and of the worker is
read from /proc (VmHWM, reset through clear_refs before each case) and must grow by less than BOUND_MB;
an address-space limit keeps a bomb that gets through from taking the machine with it. Sanitizer builds
skip the memory figures (shadow memory makes them meaningless)."""

import hashlib
import os
import resource
import struct
import uuid
import zlib

from harness import Stack, Tap, wait_for
import worker_util as wu

tap = Tap()

# Peak growth allowed per request, or per image in a worker running one image at a time, MB. The
# widest and deepest rows the defaults allow (16384 pixels of 16-bit RGBA) measure about 100 MB in
# imagetools.fcgi and 160-190 MB in the worker resizing them (docs/security.md).
BOUND_MB = 256
# The address space a server may add on top of what it has at the start: far above anything the
# limits allow, far below what the bombs asked for before they were checked.
AS_HEADROOM = 3 << 30

# ------------------------------------------------------------------ the corpus


def _chunk(t, d):
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)


def png(w, h, depth=8, ctype=2, interlace=0, rows=None):
    """A PNG of w x h black pixels; rows=k compresses only k rows (a tiny IDAT under a huge IHDR)."""
    chans = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    row = b"\0" * (1 + (w * chans * depth + 7) // 8)
    c = zlib.compressobj(9)
    data = b"".join(c.compress(row) for _ in range(h if rows is None else rows)) + c.flush()
    ihdr = struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b"")


def lzw_uniform(npix, min_code=2):
    """GIF LZW data of npix pixels of colour 0, packed LSB first. Every code after the first names the
    string being defined (the decoder's KwKwK case), so runs of 1, 2, 3, ... pixels cost one code each
    and a 12-megapixel frame takes a few kilobytes."""
    clear, eoi = 1 << min_code, (1 << min_code) + 1
    out, acc, nbits = bytearray(), 0, 0

    def emit(code, width):
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xff)
            acc >>= 8
            nbits -= 8

    width = min_code + 1
    emit(clear, width)
    nxt, have_prev, maxlen, left = eoi + 1, False, 1, npix
    while left:
        n = min(maxlen + (1 if have_prev else 0), left)
        emit(0 if n == 1 else eoi + 1 + (n - 2), width)
        left -= n
        if have_prev:
            nxt += 1
            if nxt == (1 << width) and width < 12:
                width += 1
        have_prev, maxlen = True, n
        if nxt >= 4094 and left:
            emit(clear, width)
            width, nxt, have_prev, maxlen = min_code + 1, eoi + 1, False, 1
    emit(eoi, width)
    if nbits:
        out.append(acc & 0xff)
    return bytes(out)


def _subblocks(data):
    return b"".join(bytes([len(data[i:i + 255])]) + data[i:i + 255] for i in range(0, len(data), 255)) + b"\0"


def gif(sw, sh, frames):
    """A GIF with a sw x sh screen; frames are (x, y, w, h, real): real LZW data for w*h pixels, or a
    few bytes of stub data (the bombs: nothing past the header is needed to make a decoder allocate)."""
    out = b"GIF89a" + struct.pack("<HHBBB", sw, sh, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    for x, y, w, h, real in frames:
        out += b"\x21\xf9\x04\x04\x0a\x00\x00\x00"
        out += b"\x2c" + struct.pack("<HHHHB", x, y, w, h, 0) + b"\x02"
        out += _subblocks(lzw_uniform(w * h) if real else b"\x04\x01")
    return out + b"\x3b"


def _le24(v):
    return struct.pack("<I", v)[:3]


def webp_vp8x(w, h, frames=None):
    """An extended WebP with a w x h canvas; frames (x, y, w, h) make it an animation of ANMF chunks."""
    body = b"VP8X" + struct.pack("<I", 10) + bytes([0x12 if frames else 0x10]) + b"\0\0\0" + _le24(w - 1) \
        + _le24(h - 1)
    if frames:
        body += b"ANIM" + struct.pack("<I", 6) + b"\0" * 6
        for x, y, fw, fh in frames:
            d = _le24(x // 2) + _le24(y // 2) + _le24(fw - 1) + _le24(fh - 1) + _le24(100) + b"\0" \
                + b"VP8L" + struct.pack("<I", 5) + b"\x2f\0\0\0\0\0"
            body += b"ANMF" + struct.pack("<I", len(d)) + d
    else:
        body += b"VP8L" + struct.pack("<I", 5) + b"\x2f\0\0\0\0\0"
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def jpeg_sof(w, h, sof=0xc0):
    """A JPEG header with a 4:2:0 frame of w x h and the start of a scan."""
    def seg(m, d):
        return b"\xff" + bytes([m]) + struct.pack(">H", len(d) + 2) + d
    return (b"\xff\xd8" + seg(0xe0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0") + seg(0xdb, b"\0" + b"\x01" * 64)
            + seg(sof, struct.pack(">BHHB", 8, h, w, 3) + b"\x01\x22\x00\x02\x11\x00\x03\x11\x00")
            + seg(0xc4, b"\0" + b"\x01" + b"\0" * 15 + b"\0") + seg(0xda, b"\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00")
            + b"\0" * 64 + b"\xff\xd9")


# name, file name, bytes, status, problem type. Every limit is the default one.
BOMBS = [
    ("GIF: 1x1 screen, one 65535x65535 frame", "frame.gif", gif(1, 1, [(0, 0, 65535, 65535, False)]),
     413, "too-many-pixels"),
    ("GIF: 1x1 screen, one 16384x16384 frame", "frame16k.gif", gif(1, 1, [(0, 0, 16384, 16384, False)]),
     413, "too-many-pixels"),
    ("GIF: 8000x8000 frame inside max_pixels (a 512 MB canvas)", "canvas.gif",
     gif(8000, 8000, [(0, 0, 8000, 8000, False)]), 413, "too-many-pixels"),
    ("GIF: 65535x1525 screen, a 1x1 frame", "screen.gif", gif(65535, 1525, [(0, 0, 1, 1, False)]),
     413, "too-many-pixels"),
    ("GIF: 65535x1525 screen, no frame at all", "noframe.gif", gif(65535, 1525, []), 415, "corrupt-image"),
    ("GIF: a frame at 65000,65000 outside a 100x100 screen", "offset.gif",
     gif(100, 100, [(65000, 65000, 100, 100, False)]), 413, "too-many-pixels"),
    ("GIF: 5000 frames", "frames.gif", gif(64, 64, [(0, 0, 64, 64, False)] * 5000), 413, "too-many-pixels"),
    ("PNG: 1000000x100 16-bit RGBA (within max_pixels)", "wide.png", png(1000000, 100, 16, 6),
     413, "too-many-pixels"),
    ("PNG: 100000x100000 IHDR, one row of IDAT", "ihdr.png", png(100000, 100000, rows=1), 413, "too-many-pixels"),
    ("PNG: interlaced 8000x6000 16-bit RGBA", "interlaced.png", png(8000, 6000, 16, 6, interlace=1, rows=1),
     413, "too-many-pixels"),
    ("JPEG: SOF 65535x65535", "sof.jpg", jpeg_sof(65535, 65535), 413, "too-many-pixels"),
    ("JPEG: progressive 10000x9000 (coefficients of 81 MP)", "prog.jpg", jpeg_sof(10000, 9000, 0xc2),
     413, "too-many-pixels"),
    ("WebP: VP8X canvas 16777216x16777216", "canvas.webp", webp_vp8x(1 << 24, 1 << 24), 413, "too-many-pixels"),
    ("WebP: VP8X canvas 9000x9000 (a 309 MB buffer)", "canvas9k.webp", webp_vp8x(9000, 9000), 413,
     "too-many-pixels"),
    ("WebP: animation with a 16384x16384 ANMF frame", "anim.webp",
     webp_vp8x(64, 64, [(0, 0, 64, 64), (0, 0, 16384, 16384)]), 413, "too-many-pixels"),
]

# name, file name, bytes, width, height: within every default limit, must upload.
GOOD = [
    ("PNG 10000x9999 RGB (just under max_pixels)", "large.png", png(10000, 9999), 10000, 9999),
    ("PNG 16384x2000 16-bit RGBA (the widest, deepest rows allowed)", "widest.png", png(16384, 2000, 16, 6),
     16384, 2000),
    ("GIF 4000x3000, two real frames", "large.gif", gif(4000, 3000, [(0, 0, 4000, 3000, True),
                                                                    (100, 100, 2000, 1000, True)]), 4000, 3000),
]

# ------------------------------------------------------------------ memory


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError("no %s for %d" % (key, pid))


class Peak:
    """The growth of a process's peak resident memory across one case, in MB."""

    def __init__(self, pid):
        self.pid = pid

    def __enter__(self):
        # 5: reset the peak (VmHWM) to the current resident size.
        with open("/proc/%d/clear_refs" % self.pid, "w") as f:
            f.write("5")
        self.base = status_kb(self.pid, "VmRSS")
        return self

    def __exit__(self, *exc):
        try:
            self.mb = (status_kb(self.pid, "VmHWM") - self.base) / 1024.0
        except (OSError, RuntimeError):
            self.mb = float("inf")  # the process died (an allocation failed under the address-space cap)
        return False


def alive(pid):
    """True while pid runs (a dead child lingers as a zombie until lighttpd reaps it)."""
    try:
        return status_kb(pid, "VmHWM") >= 0
    except (OSError, RuntimeError):
        return False


def cap_address_space(pid):
    limit = status_kb(pid, "VmSize") * 1024 + AS_HEADROOM
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


def stored(st):
    return st.sql("SELECT (SELECT count(*) FROM images) || ' ' || (SELECT count(*) FROM blobs)"
                  " || ' ' || (SELECT count(*) FROM blob_chunks)")


def put_direct(st, session, data, filename, ctype):
    """Stores bytes the upload would refuse straight into the tables (sql/002_images.sql), for the
    worker to meet: a row written before the limits existed, or by another tool."""
    sha = hashlib.sha256(data).hexdigest()
    chunks = [data[i:i + wu.CHUNK] for i in range(0, len(data), wu.CHUNK)]
    image_id = str(uuid.uuid4())
    sql = ["BEGIN;",
           "INSERT INTO blobs (chunk_size, size, sha256) VALUES (%d, %d, '%s');" % (wu.CHUNK, len(data), sha)]
    for n, c in enumerate(chunks):
        sql.append("INSERT INTO blob_chunks (blob_id, n, data) VALUES (currval('blobs_id_seq'), %d, '\\x%s');"
                   % (n, c.hex()))
    sql.append("INSERT INTO images (id, session_id, filename, original_filename, content_type, size, sha256,"
               " width, height, source, blob_id) VALUES ('%s', :'p1', :'p2', :'p2', '%s', %d, '%s', 1, 1, 'api',"
               " currval('blobs_id_seq'));" % (image_id, ctype, len(data), sha))
    sql.append("COMMIT;")
    st.sql("\n".join(sql), session, filename)
    return image_id


def upload(st, session, filename, data):
    return st.request("POST", "/api/v1/images", body=wu._multipart(session, filename, data),
                      headers={"Content-Type": "multipart/form-data; boundary=itboundary"}, timeout=120)


# ------------------------------------------------------------------ the cases

with Stack(tap) as st:
    # One image at a time, so that the worker's peak is one image's (it is --parallel times that).
    st.start_worker("--parallel", "1")
    sid = st.new_session()
    pids = st.fcgi_pids()
    tap.is_(len(pids), 1, "one imagetools.fcgi process to watch")
    fcgi = pids[0]
    measure = not st.sanitized()
    if measure:
        cap_address_space(fcgi)
        cap_address_space(st.worker.pid)
    else:
        tap.diag("sanitizer build: memory figures are not asserted")

    def run_op(ids, op_type, params):
        """Runs an operation to its end; a worker that dies meanwhile ends the wait (and is replaced)."""
        op = wu.start_operation(st, wsid, ids, type_=op_type, params=params)
        done = wait_for(lambda: {"status": "worker died"} if st.worker.poll() is not None else
                        (lambda o: o if o and o["status"] in ("completed", "failed", "cancelled") else None)(
                            wu.get_operation(st, op)), timeout=300, what="operation %s" % op)
        if not tap.ok(st.worker.poll() is None, "%s: the worker is still running" % op_type):
            st.start_worker("--parallel", "1")
            if measure:
                cap_address_space(st.worker.pid)
        return done

    def check_peak(peak, name):
        if measure:
            tap.ok(peak.mb < BOUND_MB, "%s: peak memory grew by %.0f MB (bound %d MB)" % (name, peak.mb, BOUND_MB))

    # -------------------------------------------------------------- uploads: every bomb refused
    for name, filename, data, status, slug in BOMBS:
        before = stored(st)
        with Peak(fcgi) as peak:
            r = upload(st, sid, filename, data)
        body = st.is_problem(r, status, "%s (%d bytes)" % (name, len(data))) or {}
        tap.is_(body.get("type"), "urn:imagetools:problem:" + slug, "%s: %s" % (name, slug))
        if status == 413:
            tap.like(body.get("detail", ""), r"^\"%s\" .*limit" % filename.replace(".", r"\."),
                     "%s: the detail names the file and the limit" % name)
            tap.diag(body.get("detail", ""))
        tap.is_(stored(st), before, "%s: no image row, blob or chunk stored" % name)
        check_peak(peak, name)
        if not tap.ok(alive(fcgi), "%s: imagetools.fcgi survived" % name):
            # lighttpd starts another one on the next request; watch that one.
            fcgi = wait_for(lambda: st.request("GET", "/api/v1/health").status and st.fcgi_pids(), timeout=20,
                            what="a new imagetools.fcgi")[0]
            if measure:
                cap_address_space(fcgi)

    # -------------------------------------------------------------- uploads: large legitimate images work
    for name, filename, data, w, h in GOOD:
        with Peak(fcgi) as peak:
            r = upload(st, sid, filename, data)
        tap.is_(r.status, 201, "%s: uploaded (%r)" % (name, r.body[:200]))
        if r.status == 201:
            img = r.json()["images"][0]
            tap.is_((img.get("width"), img.get("height")), (w, h), "%s: %dx%d" % (name, w, h))
            t = st.request("GET", img["thumbnail_url"])
            tap.ok(t.status == 200 and len(t.body) > 0, "%s: has a thumbnail" % name)
        check_peak(peak, name)

    # -------------------------------------------------------------- the worker meets bombs already stored
    # Rows the upload would refuse, put straight into the tables: the worker runs the same check
    # before libvips reads a byte.
    wsid = st.new_session()
    worker_bombs = {
        "wide.png": ("image/png", png(1000000, 100, 16, 6)),
        "frame.gif": ("image/gif", gif(1, 1, [(0, 0, 65535, 65535, False)])),
        "frame16k.gif": ("image/gif", gif(1, 1, [(0, 0, 16384, 16384, False)])),
        "interlaced.png": ("image/png", png(8000, 6000, 16, 6, interlace=1, rows=1)),
        "anim.webp": ("image/webp", webp_vp8x(64, 64, [(0, 0, 64, 64), (0, 0, 16384, 16384)])),
    }
    bad = {put_direct(st, wsid, data, fn, ct): fn for fn, (ct, data) in worker_bombs.items()}
    good = wu.put_image(st, wsid, png(10000, 9999), filename="large.png")
    wide = wu.put_image(st, wsid, png(16384, 2000, 16, 6), filename="widest.png")
    for op_type, params in (("bulk_convert", {"format": "png"}), ("bulk_resize", {"width": 800}),
                            ("bulk_compress", None)):
        with Peak(st.worker.pid) as peak:
            done = run_op(list(bad) + [good, wide], op_type, params)
        res = done.get("result") or {}
        tap.is_((done["status"], res.get("succeeded"), sorted(res.get("failed_image_ids") or [])),
                ("completed", 2, sorted(bad)), "%s: every bomb failed, the large images were done" % op_type)
        for entry in res.get("images", []):
            if entry["image_id"] in bad:
                tap.like(entry.get("error") or "", r"max_pixels|max_dimension|max_decode_bytes|frames",
                         "%s: %s refused for its size: %s" % (op_type, bad[entry["image_id"]], entry.get("error")))
        check_peak(peak, "worker " + op_type)

    # libwebp encodes one picture held whole: 100 megapixels would take about 500 MB.
    large = wu.put_image(st, wsid, png(10000, 9999), filename="large2.png")
    with Peak(st.worker.pid) as peak:
        done = run_op([large], "bulk_convert", {"format": "webp"})
    entry = ((done.get("result") or {}).get("images") or [{}])[0]
    tap.like(entry.get("error") or "", r"WebP.*max_decode_bytes",
             "converting 10000x9999 pixels to WebP is refused for the encoder's buffer: %s" % entry.get("error"))
    check_peak(peak, "worker bulk_convert to WebP")

    # An enlargement is judged by what it would make: a 1x16000 strip resized to 16384 wide.
    strip = wu.put_image(st, wsid, png(1, 16000), filename="strip.png")
    done = run_op([strip], "bulk_resize", {"width": 16384, "enlarge": True, "format": "jpeg"})
    entry = ((done.get("result") or {}).get("images") or [{}])[0]
    tap.like(entry.get("error") or "", r"max_pixels|max_dimension",
             "an enlargement to 16384x262144000 is refused for its output: %s" % entry.get("error"))

tap.done()
