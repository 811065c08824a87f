#!/usr/bin/env python3
"""bench/cli.py: the command-line clients against the real stack on loopback.

    python3 bench/cli.py [--builddir build] [--sizes 1,32] [--events 5000] [--reps 3]

Uploads: wall time and peak resident memory of `imagetools-upload` for files of each size
(MiB), against `curl -F` sending the same file in the same run (the baseline); the memory
column shows whether the file is streamed (flat) or read whole (growing with the size).
Events: how long `imagetools-watch` takes to print a backlog of N events over SSE and over
long-poll, against `curl -N` reading the same SSE backlog. Traffic goes to 127.0.0.1 only;
every run is bounded in count and time.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from cli_helpers import png_bytes  # noqa: E402
from harness import Stack, Tap  # noqa: E402


def timed(cmd):
    """Runs cmd under GNU time (Debian package "time"); returns (seconds, peak RSS of cmd in
    KiB, exit code). GNU time forks a small process to exec cmd, so the peak is cmd's own, not
    inherited from this large Python process as with os.wait4 after a fork."""
    with tempfile.NamedTemporaryFile("r") as out:
        p = subprocess.run(["/usr/bin/time", "-f", "%e %M", "-o", out.name] + cmd,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        secs, rss = out.read().split()[-2:]
    return float(secs), int(rss), p.returncode


def big_png(path, mib):
    # Noise does not compress: about 3 bytes per pixel.
    side = int((mib * 1024 * 1024 / 3) ** 0.5)
    with open(path, "wb") as f:
        f.write(png_bytes(side, side, seed=mib, noisy=True))
    return os.path.getsize(path)


def follow_until(cmd, n, marker):
    """Starts cmd and returns the seconds until n lines containing marker were read."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    seen = 0
    deadline = t0 + 120
    for line in p.stdout:
        if marker in line:
            seen += 1
            if seen == n:
                break
        if time.monotonic() > deadline:
            break
    t = time.monotonic() - t0
    p.kill()
    p.wait()
    return t if seen == n else float("nan")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default="build")
    ap.add_argument("--sizes", default="1,32")
    ap.add_argument("--events", type=int, default=5000)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args()
    os.environ["IT_BUILDDIR"] = os.path.abspath(a.builddir)
    import harness
    harness.BUILDDIR = os.environ["IT_BUILDDIR"]
    upload = os.path.join(harness.BUILDDIR, "imagetools-upload")
    watch = os.path.join(harness.BUILDDIR, "imagetools-watch")
    tmp = tempfile.mkdtemp(prefix="bench-cli-")
    tap = Tap()
    with Stack(tap, settings={"max_upload_bytes": "64M", "max_request_bytes": "80M",
                              "rate_uploads": 0}) as st:
        sid = st.new_session()
        print("| file | bytes | curl -F s | imagetools-upload s | ratio | curl peak RSS KiB | "
              "imagetools-upload peak RSS KiB |")
        print("|---|---|---|---|---|---|---|")
        for mib in [int(x) for x in a.sizes.split(",")]:
            path = os.path.join(tmp, "f%d.png" % mib)
            size = big_png(path, mib)
            cu, up, cr, ur = [], [], [], []
            for _ in range(a.reps):
                t, rss, code = timed(["curl", "-sS", "-o", "/dev/null", "-F", "session_id=" + sid,
                                      "-F", "source=api", "-F", "file=@" + path, st.url + "/api/v1/images"])
                cu.append(t)
                cr.append(rss)
                t, rss, code = timed([upload, "-q", "-s", st.url, "-S", sid, path])
                if code != 0:
                    print("imagetools-upload failed with %d" % code)
                up.append(t)
                ur.append(rss)
            c, u = statistics.median(cu), statistics.median(up)
            print("| %d MiB | %d | %.3f | %.3f | %.2f | %d | %d |" % (mib, size, c, u, u / c, max(cr), max(ur)))

        es = st.new_session()
        st.sql("SELECT it_append_event(:'p1', 'image.deleted', jsonb_build_object('image_id', g::text)) "
               "FROM generate_series(1, %d) g" % a.events, es)
        base = follow_until(["curl", "-sN", st.url + "/api/v1/events/stream?session_id=" + es], a.events, b"id: ")
        # --no-presence: a follower's own presence.joined would be one more line with an id.
        sse = follow_until([watch, "-q", "--no-presence", "-s", st.url, "-S", es], a.events, b'"id":')
        lp = follow_until([watch, "-q", "--no-presence", "-s", st.url, "-S", es, "-t", "longpoll"], a.events,
                          b'"id":')
        state = os.path.join(tmp, "state")
        sst = follow_until([watch, "-q", "--no-presence", "-s", st.url, "-S", es, "--state", state], a.events,
                           b'"id":')
        print()
        print("| reader | %d events, s | events/s | ratio to curl -N |" % a.events)
        print("|---|---|---|---|")
        for name, t in (("curl -N (SSE, raw)", base), ("imagetools-watch sse", sse),
                        ("imagetools-watch longpoll", lp), ("imagetools-watch sse --state", sst)):
            print("| %s | %.3f | %.0f | %.2f |" % (name, t, a.events / t, t / base))
    print("# load average %.2f %.2f %.2f" % os.getloadavg())


if __name__ == "__main__":
    main()
