"""test_tus_node.py: tus-js-client (npm, tests/ws/tus.mjs) against the real stack under lighttpd: a whole upload,
the session in an Authorization header, and an upload aborted by the client and resumed from the URL it kept,
ending in one byte-identical image."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import SRCDIR, Stack, Tap  # noqa: E402
from uploads_util import png_bytes  # noqa: E402

tap = Tap()
WSDIR = os.path.join(SRCDIR, "tests", "ws")
NODE = shutil.which("node")

if NODE is None or not os.path.isdir(os.path.join(WSDIR, "node_modules", "tus-js-client")):
    print("1..0 # SKIP node or tests/ws/node_modules/tus-js-client missing (cd tests/ws && npm install)")
    sys.exit(0)

work = tempfile.mkdtemp(prefix="it-tus-node-")


def run(*args):
    """Runs tus.mjs; returns its JSON lines."""
    r = subprocess.run([NODE, os.path.join(WSDIR, "tus.mjs")] + list(args), capture_output=True, text=True,
                       timeout=300, cwd=WSDIR)
    out = []
    for line in r.stdout.splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    if not out:
        tap.diag("tus.mjs: rc %d, stderr %s" % (r.returncode, r.stderr[-2000:]))
    return out


with Stack(tap, settings={"max_upload_bytes": "64M", "thumbnail_size": "64"}) as st:
    endpoint = st.url + "/api/v1/uploads/tus"

    def uploaded(session):
        rows = st.sql("SELECT payload::text FROM events WHERE session_id = :'p1' AND type = 'image.uploaded'"
                      " ORDER BY seq", session)
        return [json.loads(x) for x in rows.splitlines()]

    def stored_sha(image_id):
        return st.sql("SELECT sha256 FROM images WHERE id = :'p1'", image_id)

    # ---------------------------------------------------------------- a whole upload, both ways of naming the session
    small = png_bytes(400, 300)
    path = os.path.join(work, "small.png")
    with open(path, "wb") as f:
        f.write(small)
    for bearer in (False, True):
        how = "Authorization header" if bearer else "Upload-Metadata"
        S = st.new_session()
        out = run(endpoint, S, path, *(["--bearer"] if bearer else []))
        tap.ok(out and "success" in out[-1], "tus-js-client, session in %s: success (%s)" % (how, out))
        ev = uploaded(S)
        tap.is_(len(ev), 1, "%s: one image.uploaded" % how)
        e = ev[0] if ev else {}
        tap.is_((e.get("filename"), e.get("source")), ("node.png", "api"), "%s: filename and source" % how)
        tap.is_(stored_sha(e.get("image_id") or "00000000-0000-0000-0000-000000000000"),
                hashlib.sha256(small).hexdigest(), "%s: byte-identical" % how)

    # ---------------------------------------------------------------- abort, then resume from the kept URL
    big = png_bytes(2600, 2600, level=0)
    path = os.path.join(work, "big.png")
    with open(path, "wb") as f:
        f.write(big)
    S = st.new_session()
    out = run(endpoint, S, path, "--chunk", str(1024 * 1024), "--abort-at", str(5 * 1024 * 1024))
    first = out[-1] if out else {}
    tap.ok("aborted" in first and first.get("offset", 0) >= 5 * 1024 * 1024,
           "aborted after %s acknowledged bytes" % first.get("offset"))
    url = first.get("aborted") or ""
    path_only = url[len(st.url):] if url.startswith(st.url) else url
    r = st.request("HEAD", path_only, headers={"Tus-Resumable": "1.0.0"})
    tap.ok(r.status == 200 and int(r.header("Upload-Offset") or -1) >= first.get("offset", 1 << 62),
           "the server holds at least every acknowledged byte (%s)" % r.header("Upload-Offset"))
    tap.is_(uploaded(S), [], "no image before the upload is complete")
    out = run(endpoint, S, path, "--chunk", str(4 * 1024 * 1024), "--resume", url)
    tap.ok(out and out[-1].get("success") == url, "resumed at the same URL and finished (%s)" % out)
    ev = uploaded(S)
    tap.is_(len(ev), 1, "resumed: exactly one image.uploaded")
    tap.is_(stored_sha((ev[0] if ev else {}).get("image_id") or "00000000-0000-0000-0000-000000000000"),
            hashlib.sha256(big).hexdigest(), "resumed: byte-identical")
    tap.is_(st.sql("SELECT count(*) FROM tus_uploads WHERE session_id = :'p1'", S), "1",
            "resumed: one upload, not a second one started over")

shutil.rmtree(work, ignore_errors=True)
tap.done()
