#!/usr/bin/env python3
"""bench/upload.py: upload throughput and memory through lighttpd -> imagetools.fcgi -> PostgreSQL.

    python3 bench/upload.py [--builddir build] [--sizes 1,10,100,200] [--runs 3]

For each size (MB) it uploads a JPEG of exactly that size with `curl -F` (multipart, streamed
by lighttpd to the backend) and, as the baseline in the same run and against the same
PostgreSQL cluster, COPYs the same bytes into a plain bytea table with psql
(`\\copy ... (FORMAT binary)`). It reports the median wall time of each, the throughput, the
ratio upload/COPY (goal >= 0.8) and the peak RSS (VmHWM) of the imagetools.fcgi process,
which is restarted for every size so the peaks do not mix (goal: flat across sizes).

The JPEG is a small real image whose bulk is comment (COM) segments of random bytes: every
byte is stored, hashed and written to the temporary file like any upload, but the thumbnail
costs the same at every size, so the numbers show the streaming path and not libvips.
Traffic goes to 127.0.0.1 only.
"""

import argparse
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

import harness  # noqa: E402
from harness import Stack, Tap  # noqa: E402
from uploads_util import vips_image  # noqa: E402


def padded_jpeg(path, size, base):
    """Writes a valid JPEG of exactly size bytes: base's SOI, then COM segments, then the rest."""
    with open(base, "rb") as f:
        img = f.read()
    pad = size - len(img)
    with open(path, "wb") as f:
        f.write(img[:2])
        while pad > 0:
            # A COM segment is 4 bytes of marker and length plus up to 65533 bytes;
            # never leave a remainder too small for one more segment.
            n = min(pad, 65537)
            if 0 < pad - n < 4:
                n -= 4
            if n < 4:
                raise ValueError("size too small to pad")
            f.write(b"\xff\xfe" + struct.pack(">H", n - 2) + os.urandom(n - 4))
            pad -= n
        f.write(img[2:])
    assert os.path.getsize(path) == size


def copy_file(path, out):
    """The same bytes as one row of a PostgreSQL binary COPY stream."""
    size = os.path.getsize(path)
    with open(out, "wb") as f, open(path, "rb") as src:
        f.write(b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0))
        f.write(struct.pack(">hi", 1, size))
        while True:
            b = src.read(1 << 20)
            if not b:
                break
            f.write(b)
        f.write(struct.pack(">h", -1))


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default=os.environ.get("IT_BUILDDIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--sizes", default="1,10,100,200")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = tempfile.mkdtemp(prefix="it-bench-upload-")
    os.chmod(work, 0o755)
    base = vips_image(os.path.join(work, "base.jpg"), 320, 240)
    tap = Tap()
    rows = []
    limit = max(sizes) * 1048576 + 1048576
    with Stack(tap, own_cluster=True, settings={"log_level": "warn", "max_upload_bytes": limit,
                                                 "max_request_bytes": limit + 65536}) as st:
        st.sql("CREATE TABLE bench_raw (data bytea)")
        S = st.new_session()
        for mb in sizes:
            path = os.path.join(work, "f%d.jpg" % mb)
            padded_jpeg(path, mb * 1048576, base)
            cpath = path + ".copy"
            copy_file(path, cpath)
            st.restart_lighttpd()  # a fresh imagetools.fcgi: its VmHWM is this size's alone
            up, raw = [], []
            for _ in range(args.runs):
                # Each timed step starts from a checkpoint, so that neither side
                # pays for the other's WAL (both write hundreds of MB of it).
                st.sql("CHECKPOINT")
                t0 = time.monotonic()
                r = subprocess.run(["psql", "-X", "-q", "-h", st.sockdir, "-p", str(st.pgport), "-U", "postgres",
                                    "-d", st.dbname, "-c", "\\copy bench_raw (data) FROM '%s' WITH (FORMAT binary)"
                                    % cpath], capture_output=True, text=True)
                raw.append(time.monotonic() - t0)
                if r.returncode != 0:
                    raise RuntimeError(r.stderr)
                st.sql("TRUNCATE bench_raw")
                st.sql("CHECKPOINT")
                t0 = time.monotonic()
                status, _, body = st.curl("-F", "session_id=" + S, "-F", "source=cli", "-F", "file=@" + path,
                                          st.url + "/api/v1/images")
                up.append(time.monotonic() - t0)
                if status != 201:
                    raise RuntimeError("upload of %d MB failed: %d %r" % (mb, status, body[:300]))
                st.sql("DELETE FROM images")
                st.sql("VACUUM")
            hwm = max(vm_hwm_kb(p) for p in st.fcgi_pids())
            tu, tr = statistics.median(up), statistics.median(raw)
            rows.append((mb, tu, mb / tu, tr, mb / tr, tr / tu, hwm))
            os.unlink(path)
            os.unlink(cpath)
    print("| size | upload (curl -F via lighttpd) | MB/s | raw COPY (psql) | MB/s | ratio | fcgi peak RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for mb, tu, su, tr, sr, ratio, hwm in rows:
        print("| %d MB | %.3f s | %.0f | %.3f s | %.0f | %.2f | %.1f MB |" % (mb, tu, su, tr, sr, ratio, hwm / 1024))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
