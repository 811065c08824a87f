"""test_tus_cli.py: imagetools-upload --resume (libcurl tus client): killed with SIGKILL in the middle of an
upload, run again, it goes on from the server's offset with the URL it kept, and the file becomes one
byte-identical image; a refused file leaves no state behind; an upload token revoked while its upload
is interrupted ends the next run with exit 6, nothing stored and no state left."""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile

from harness import Stack, Tap, wait_for
from uploads_util import png_bytes

tap = Tap()
work = tempfile.mkdtemp(prefix="it-tus-cli-")
state = os.path.join(work, "state")

with Stack(tap, settings={"max_upload_bytes": "64M", "thumbnail_size": "64"}) as st:
    S = st.new_session()
    cli = st.bin("imagetools-upload")
    data = png_bytes(3300, 3300, level=0)
    path = os.path.join(work, "big.png")
    with open(path, "wb") as f:
        f.write(data)

    def offset():
        v = st.sql("SELECT max(\"offset\") FROM tus_uploads WHERE session_id = :'p1'", S)
        return int(v) if v else -1

    args = [cli, "--resume", "--state-dir", state, "-s", st.url, "-S", S]
    p = subprocess.Popen(args + ["--limit-rate", "4000000", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: offset() >= 8 * 1024 * 1024, timeout=60, what="8 MiB committed")
    p.send_signal(signal.SIGKILL)
    p.wait()
    kept = os.listdir(state) if os.path.isdir(state) else []
    tap.is_(len(kept), 1, "killed client: the upload URL was kept in the state directory")
    before = offset()
    tap.ok(0 < before < len(data), "killed client: the server holds part of the file (%d bytes)" % before)

    r = subprocess.run(args + ["--json", path], capture_output=True, text=True, timeout=300)
    tap.is_(r.returncode, 0, "run again: exit 0")
    out = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    tap.ok(out.get("stored") is True, "run again: stored (%s)" % r.stdout.strip()[-300:])
    tap.ok("resuming" in r.stderr, "run again: it says it resumes")
    tap.is_(st.sql("SELECT count(*) FROM tus_uploads WHERE session_id = :'p1'", S), "1",
            "the same upload went on: none was started over")
    ev = [json.loads(x) for x in st.sql("SELECT payload::text FROM events WHERE session_id = :'p1'"
                                        " AND type = 'image.uploaded'", S).splitlines()]
    tap.is_(len(ev), 1, "exactly one image.uploaded")
    tap.is_(st.sql("SELECT sha256 FROM images WHERE id = :'p1'",
                   ev[0]["image_id"] if ev else "00000000-0000-0000-0000-000000000000"),
            hashlib.sha256(data).hexdigest(), "byte-identical")
    tap.is_(os.listdir(state), [], "the state file is gone once the upload is stored")

    bad = os.path.join(work, "notes.txt")
    with open(bad, "w") as f:
        f.write("not an image at all\n" * 100)
    r = subprocess.run(args + [bad], capture_output=True, text=True, timeout=60)
    tap.is_(r.returncode, 1, "a non-image: exit 1")
    tap.ok("not" in r.stderr and "image" in r.stderr, "a non-image: the server's reason is shown")
    tap.is_(os.listdir(state), [], "a refused file leaves no state behind")

    # An upload token revoked between a kill and the next run: refused (exit 6), nothing stored.
    S2 = st.new_session()
    r = st.request("POST", "/api/v1/tokens", body={"scope": "upload", "label": "laptop"},
                   headers={"Authorization": "Bearer " + S2})
    dev = r.json() if r.status == 201 else {}
    targs = [cli, "--resume", "--state-dir", state, "-s", st.url]
    env = dict(os.environ, IMAGETOOLS_TOKEN=dev.get("token", "?"), XDG_CONFIG_HOME="/nonexistent-config")
    env.pop("IMAGETOOLS_SESSION", None)

    def offset2():
        v = st.sql("SELECT max(\"offset\") FROM tus_uploads WHERE session_id = :'p1'", S2)
        return int(v) if v else -1
    p = subprocess.Popen(targs + ["--limit-rate", "4000000", path], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    wait_for(lambda: offset2() >= 8 * 1024 * 1024, timeout=60, what="8 MiB committed with the token")
    p.send_signal(signal.SIGKILL)
    p.wait()
    tap.is_(len(os.listdir(state)), 1, "token upload killed: its URL is kept")
    tap.is_(st.request("DELETE", "/api/v1/devices/" + dev.get("device_id", "?"),
                       headers={"Authorization": "Bearer " + S2}).status, 204, "the owner revokes the token")
    r = subprocess.run(targs + [path], env=env, capture_output=True, text=True, timeout=120)
    tap.is_(r.returncode, 6, "run again with the revoked token: exit 6")
    tap.like(r.stderr, r"token itk\.\S{6}\.\.\. is unknown, expired or revoked", "and the message says so")
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", S2), "0", "nothing was stored")
    tap.is_(os.listdir(state), [], "and no state is left for an upload that cannot resume")

shutil.rmtree(work, ignore_errors=True)
tap.done()
