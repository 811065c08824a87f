#!/usr/bin/env python3
"""bench/tus.py: resumable (tus) upload throughput against multipart, and what an interruption costs.

    python3 bench/tus.py [--builddir build] [--sizes 10,100] [--runs 3]

For each size (MB) it uploads the same JPEG (a small image padded with COM segments, as in
bench/upload.py) through lighttpd -> imagetools.fcgi -> PostgreSQL twice per run: with
`curl -F` to POST /api/v1/images (multipart), and as a tus upload: POST /uploads/tus, then
one `curl -X PATCH -T` of the whole file (streamed, as `curl -F` streams). It reports the median wall times, the
ratio tus/multipart throughput (goal >= 0.9) and the peak RSS of imagetools.fcgi (restarted
per size). Then it cuts a PATCH after half the file and reports the resume cost: the bytes
sent that the server did not keep (what a client sends twice). When bench/tus-node has its
node_modules (cd bench/tus-node && npm install), the same POST + PATCH also goes to
@tus/server with its file store, the reference implementation, on the same machine (it
writes a local file and neither sniffs, hashes nor thumbnails). Traffic goes to 127.0.0.1
only.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import Stack, Tap, wait_for  # noqa: E402
from upload import padded_jpeg, vm_hwm_kb  # noqa: E402
from uploads_util import vips_image  # noqa: E402

V = {"Tus-Resumable": "1.0.0"}


def reference(path, size, runs, work):
    """Median seconds of POST + PATCH of path against @tus/server, or None when it is not installed."""
    node, here = shutil.which("node"), os.path.join(HERE, "tus-node")
    if node is None or not os.path.isdir(os.path.join(here, "node_modules", "@tus", "server")):
        return None
    port = harness.free_port()
    store = os.path.join(work, "tus-store")
    os.makedirs(store, exist_ok=True)
    p = subprocess.Popen([node, os.path.join(here, "server.mjs"), str(port), store], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, cwd=here)
    try:
        p.stdout.readline()
        times = []
        for _ in range(runs):
            t0 = time.monotonic()
            r = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-X", "POST", "-H", "Tus-Resumable: 1.0.0",
                                "-H", "Upload-Length: %d" % size, "http://127.0.0.1:%d/files" % port],
                               capture_output=True, text=True)
            loc = [ln.split(":", 1)[1].strip() for ln in r.stdout.splitlines() if ln.lower().startswith("location:")]
            if not loc:
                raise RuntimeError("@tus/server create: %r" % r.stdout)
            url = loc[0] if loc[0].startswith("http") else "http://127.0.0.1:%d%s" % (port, loc[0])
            r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-X", "PATCH",
                                "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                                "-H", "Content-Type: application/offset+octet-stream", "-T", path, url],
                               capture_output=True, text=True)
            times.append(time.monotonic() - t0)
            if r.stdout != "204":
                raise RuntimeError("@tus/server PATCH: %r" % r.stdout)
            for f in os.listdir(store):
                os.unlink(os.path.join(store, f))
        return statistics.median(times)
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default=os.environ.get("IT_BUILDDIR", os.path.join(HERE, "..", "build")))
    ap.add_argument("--sizes", default="10,100")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = tempfile.mkdtemp(prefix="it-bench-tus-")
    os.chmod(work, 0o755)
    base = vips_image(os.path.join(work, "base.jpg"), 320, 240)
    tap = Tap()
    rows, resumes = [], []
    limit = max(sizes) * 1048576 + 1048576
    with Stack(tap, own_cluster=True, settings={"log_level": "warn", "max_upload_bytes": limit,
                                                 "max_request_bytes": limit + 65536}) as st:
        S = st.new_session()

        def create(size):
            import base64
            r = st.request("POST", "/api/v1/uploads/tus", headers=dict(V, **{
                "Upload-Length": str(size), "Content-Length": "0",
                "Upload-Metadata": "session_id " + base64.b64encode(S.encode()).decode()}))
            if r.status != 201:
                raise RuntimeError("tus create: %r" % r)
            return r.header("Location")

        for mb in sizes:
            path = os.path.join(work, "f%d.jpg" % mb)
            size = mb * 1048576
            padded_jpeg(path, size, base)
            st.restart_lighttpd()
            mp, tu = [], []
            for _ in range(args.runs):
                st.sql("CHECKPOINT")
                t0 = time.monotonic()
                status, _, body = st.curl("-F", "session_id=" + S, "-F", "file=@" + path, st.url + "/api/v1/images")
                mp.append(time.monotonic() - t0)
                if status != 201:
                    raise RuntimeError("multipart: %d %r" % (status, body[:200]))
                st.sql("DELETE FROM images")
                st.sql("VACUUM")
                st.sql("CHECKPOINT")
                t0 = time.monotonic()
                loc = create(size)
                status, _, body = st.curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
                                          "-H", "Content-Type: application/offset+octet-stream",
                                          "-T", path, st.url + loc)
                tu.append(time.monotonic() - t0)
                if status != 204:
                    raise RuntimeError("tus: %d %r" % (status, body[:200]))
                st.sql("DELETE FROM tus_uploads")
                st.sql("DELETE FROM images")
                st.sql("VACUUM")
            hwm = max(vm_hwm_kb(p) for p in st.fcgi_pids())
            m, t = statistics.median(mp), statistics.median(tu)
            ref = reference(path, size, args.runs, work)
            rows.append((mb, m, mb / m, t, mb / t, m / t, hwm, ref))

            # The resume cost: half the file sent, then the connection cut.
            loc = create(size)
            sent = size // 2
            with open(path, "rb") as f:
                data = f.read(sent)
            s = socket.create_connection(("127.0.0.1", st.port))
            s.sendall(("PATCH %s HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                       "Content-Type: application/offset+octet-stream\r\nContent-Length: %d\r\n\r\n"
                       % (loc, size)).encode() + data)
            time.sleep(1)
            s.close()
            uid = loc.rsplit("/", 1)[1]

            def unlocked():
                try:
                    st.sql("BEGIN; SELECT 1 FROM tus_uploads WHERE id = :'p1' FOR UPDATE NOWAIT; ROLLBACK;", uid)
                    return True
                except RuntimeError:
                    return False
            wait_for(unlocked, timeout=60, what="the cut PATCH to end")
            kept = int(st.sql("SELECT \"offset\" FROM tus_uploads WHERE id = :'p1'", uid))
            resumes.append((mb, sent, kept))
            st.sql("DELETE FROM tus_uploads")
            os.unlink(path)
    print("| size | multipart (curl -F) | MB/s | tus (POST + one PATCH) | MB/s | tus/multipart | fcgi peak RSS |"
          " @tus/server (file store) |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mb, m, sm, t, stu, ratio, hwm, ref in rows:
        print("| %d MB | %.3f s | %.0f | %.3f s | %.0f | %.2f | %.1f MB | %s |"
              % (mb, m, sm, t, stu, ratio, hwm / 1024, "%.3f s, %.0f MB/s" % (ref, mb / ref) if ref else "-"))
    print()
    print("| size | bytes sent before the cut | kept by the server | to send again |")
    print("|---:|---:|---:|---:|")
    for mb, sent, kept in resumes:
        print("| %d MB | %d | %d | %d |" % (mb, sent, kept, sent - kept))
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
