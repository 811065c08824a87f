"""test_cli.py: imagetools-upload and imagetools-watch against a scripted loopback server (retries,
errors, exit codes) and against the real stack (bytes stored equal bytes sent, every event once and
in order on both transports, resuming from --state after a kill, --once, bad sessions)."""

import hashlib
import json
import os
import re
import pty
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from cli_helpers import Follower, Scripted, png_bytes, problem, run, write
from harness import Stack, Tap, free_port, wait_for

tap = Tap()
tmp = tempfile.mkdtemp(prefix="it-cli-")
SID = "A" * 32
TOKEN = "itk." + "T0k_-" * 6 + "XY"  # the form of a device token: itk. and 32 characters
img1 = write(os.path.join(tmp, "one.png"), png_bytes(40, 30, seed=1))
img2 = write(os.path.join(tmp, "two.png"), png_bytes(64, 48, seed=2))
big = write(os.path.join(tmp, "big.png"), png_bytes(700, 600, seed=3, noisy=True))
text = write(os.path.join(tmp, "notes.png"), b"this is not an image at all\n" * 10)
OK = (201, {"Content-Type": "application/json"}, {"images": [{"id": "0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b",
                                                              "size": 1, "content_type": "image/png"}]})

# ------------------------------------------------------------------ scripted server

# 503 with Retry-After, then success: the retry waits as long as the server asked.
with Scripted([(503, {"Retry-After": "1", "Content-Type": "application/problem+json"},
                {"type": "urn:imagetools:problem:database-unavailable", "title": "Service Unavailable",
                 "status": 503, "detail": "The database is unavailable."}), OK]) as srv:
    r = run("imagetools-upload", "--server", srv.url, "--session", SID, "--retry-delay", "50", img1)
    tap.is_(r.returncode, 0, "503 then 201: exit 0")
    tap.is_(len(srv.requests), 2, "503 then 201: the upload was sent twice")
    if len(srv.requests) == 2:
        gap = srv.requests[1]["t"] - srv.requests[0]["t"]
        tap.ok(gap >= 0.9, "the retry honoured Retry-After: 1 (waited %.2f s)" % gap)
        tap.is_(srv.requests[1]["parts"].get("file", (None, None))[1], open(img1, "rb").read(),
                "the retried request carries the whole file again")
    tap.like(r.stderr, r"database is unavailable.*retrying", "the retry is announced with the server's reason")

# The multipart body: session_id, source, file with its name and exact bytes.
with Scripted([OK]) as srv:
    r = run("imagetools-upload", "--server", srv.url + "/", "--session", SID, "--source", "android_app", big)
    tap.is_(r.returncode, 0, "upload to the scripted server")
    req = srv.requests[0] if srv.requests else {"parts": {}, "path": "", "headers": {}}
    tap.is_(req["path"], "/api/v1/images", "POST /api/v1/images (trailing slash of --server dropped)")
    tap.is_(req["parts"].get("session_id", (None, b""))[1], SID.encode(), "session_id part")
    tap.is_(req["parts"].get("source", (None, b""))[1], b"android_app", "source part from --source")
    fname, data = req["parts"].get("file", (None, b""))
    tap.is_(fname, "big.png", "file part carries the file's base name")
    tap.ok(data == open(big, "rb").read(), "file part carries the exact bytes (%d)" % len(data or b""))
    tap.like(req["headers"].get("Content-Type", ""), r"^multipart/form-data; boundary=", "multipart/form-data")
    tap.like(r.stdout, r"big\.png: stored as 0b7e3c1a", "a line per stored file")
    tap.ok("\r" not in r.stderr, "no progress bar when stderr is not a terminal")

# A token goes in the Authorization header only: not in the form, not in the URL. While it uploads,
# the program is in the session's presence list (POST /presence, then DELETE at the end).
with Scripted([OK, OK], presence_status=204) as srv:
    r = run("imagetools-upload", "-s", srv.url, "--token", TOKEN, img1, img2)
    tap.is_(r.returncode, 0, "--token: stored")
    req = srv.requests[0] if srv.requests else {"parts": {}, "path": "", "headers": {}}
    tap.is_(req["headers"].get("Authorization"), "Bearer " + TOKEN, "--token: sent as Authorization: Bearer")
    tap.ok("session_id" not in req["parts"] and TOKEN not in req["path"],
           "--token: neither a session_id field nor anything in the URL")
    tap.is_(set(q["parts"].get("file", (None, None))[0] for q in srv.requests), {"one.png", "two.png"},
            "--token: both files sent")
    pres = srv.presence
    tap.is_([(x["method"], (x["body"] or {}).get("state")) for x in pres], [("POST", "uploading"), ("DELETE", None)],
            "presence: announced as uploading before the first file, left at the end")
    first = (pres[0]["body"] or {}) if pres else {}
    tap.is_((first.get("label"), first.get("source")), ("imagetools-upload", "cli"), "presence: label and source")
    tap.like(first.get("client_id", ""), r"^[A-Za-z0-9_-]{16}$", "presence: a random client_id")
    tap.ok(len(pres) == 2 and pres[1]["path"] == "/api/v1/presence?client_id=" + first.get("client_id", "?") and
           pres[1]["headers"].get("Authorization") == "Bearer " + TOKEN,
           "presence: the DELETE names the same client_id, with the credential in the header")
    tap.ok(pres and srv.requests and pres[0]["t"] < srv.requests[0]["t"] and pres[-1]["t"] > srv.requests[-1]["t"],
           "presence: around the uploads")
    tap.ok(TOKEN not in r.stderr + r.stdout, "the token is never printed")
# A long upload stays in the presence list: the entry is renewed every 20 s while the file is sent.
slow = write(os.path.join(tmp, "slow.png"), png_bytes(270, 270, seed=9, noisy=True))
with Scripted([OK], presence_status=204) as srv:
    r = run("imagetools-upload", "-s", srv.url, "--token", TOKEN, "--limit-rate", "8000", slow)
    posts = [x for x in srv.presence if x["method"] == "POST"]
    tap.is_(r.returncode, 0, "a slow upload (%d bytes at 8 kB/s): stored" % os.path.getsize(slow))
    tap.ok(len(posts) >= 2 and srv.requests and posts[-1]["t"] < srv.requests[0]["t"],
           "presence: renewed while the file was still being sent (%d posts)" % len(posts))
    tap.ok(len(set(x["body"]["client_id"] for x in posts)) == 1 and srv.presence[-1]["method"] == "DELETE",
           "presence: one client_id throughout, and a DELETE at the end")
# A server from before presence answers 404: asked once, then left alone; the upload goes on.
with Scripted([OK, OK]) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, img1, img2)
    tap.is_((r.returncode, len(srv.requests), len(srv.presence)), (0, 2, 1),
            "presence 404 (an older server): asked once, both files stored")
    tap.is_(srv.requests[0]["parts"].get("session_id", (None, b""))[1] if srv.requests else None, SID.encode(),
            "a session id still goes in the session_id field, as every server takes it")
# Refusals of a token: 401 invalid-token (unknown, expired or revoked) and 403 insufficient-scope
# stop the batch with exit codes of their own and a message saying what to do.
for status, slug, code, pattern in [(401, "invalid-token", 6, r"token itk\.T0k_-T\.\.\. is unknown, expired or revoked"),
                                    (403, "insufficient-scope", 7, r"token itk\.T0k_-T\.\.\. may not upload")]:
    with Scripted([problem(status, slug, "The token is refused."), OK]) as srv:
        r = run("imagetools-upload", "-s", srv.url, "--token", TOKEN, img1, img2)
        tap.is_((r.returncode, len(srv.requests)), (code, 1), "%d %s: exit %d, the later file not sent"
                % (status, slug, code))
        tap.like(r.stderr, pattern, "%d %s: the message says what is wrong" % (status, slug))
        tap.ok(TOKEN not in r.stderr, "%d %s: only the token's prefix is shown" % (status, slug))
r = run("imagetools-upload", "-s", "http://127.0.0.1:9", "--token", "itk.short", img1)
tap.is_(r.returncode, 3, "a token of the wrong form: exit 3 before anything is sent")
r = run("imagetools-upload", "--pair", "http://127.0.0.1:9/#s=" + SID)
tap.is_(r.returncode, 2, "--pair with a link that carries no pairing code: exit 2")
tap.like(r.stderr, r"--pair takes a pairing code", "and the message says what --pair takes")

# 429 is retried like 503; every other 4xx is final and explained.
with Scripted([(429, {"Retry-After": "0"}, b""), OK]) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, "--retry-delay", "50", img1)
    tap.is_((r.returncode, len(srv.requests)), (0, 2), "429 is retried")

cases = [(415, "unsupported-media-type", "The file is not a PNG, JPEG, GIF or WebP image.",
          r"not an image the server accepts.*not a PNG"),
         (413, "too-large", "The file is larger than 50 MiB.", r"too large for this server.*larger than 50 MiB"),
         (400, "invalid-source", "source must be one of web, android_app.", r"refused.*source must be")]
for status, slug, detail, pattern in cases:
    with Scripted([problem(status, slug, detail), OK]) as srv:
        r = run("imagetools-upload", "-s", srv.url, "-S", SID, "--retry-delay", "50", img1)
        tap.is_(r.returncode, 1, "%d: exit 1" % status)
        tap.is_(len(srv.requests), 1, "%d: not retried" % status)
        tap.like(r.stderr, pattern, "%d: the message says what was wrong" % status)

# A rejected file does not sink the others; a missing one neither.
with Scripted([OK, problem(415, "unsupported-media-type", "Not an image."), OK]) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, "--json", img1, text,
            os.path.join(tmp, "missing.png"), img2)
    tap.is_(r.returncode, 1, "some failed: exit 1")
    tap.is_(len(srv.requests), 3, "one request per existing file")
    lines = [json.loads(x) for x in r.stdout.splitlines()]
    tap.is_([x.get("file") for x in lines], [img1, text, os.path.join(tmp, "missing.png"), img2],
            "--json prints one object per file, in order, naming it")
    tap.is_([x.get("status") for x in lines[1:3]], [415, 0], "--json carries the failure's status")
    tap.ok("images" in lines[0] and "images" in lines[3], "--json carries the server's answer")

# --files-from: paths one per line (here on standard input) after the ones on the command line.
with Scripted([OK, OK, OK]) as srv:
    listing = "%s\n\n%s\r\n%s\n" % (img2, os.path.join(tmp, "missing.png"), big)
    p = subprocess.run([os.path.join(os.environ.get("IT_BUILDDIR", "."), "imagetools-upload"), "-s", srv.url,
                        "-S", SID, "--json", "--files-from", "-", img1], input=listing, capture_output=True,
                       text=True, timeout=60)
    tap.is_(p.returncode, 1, "--files-from: one missing file: exit 1")
    tap.is_([json.loads(x).get("file") for x in p.stdout.splitlines()],
            [img1, img2, os.path.join(tmp, "missing.png"), big],
            "--files-from: arguments first, then each listed path (blank lines skipped, CRLF accepted)")
    tap.is_([r["parts"].get("file", (None, None))[0] for r in srv.requests], ["one.png", "two.png", "big.png"],
            "--files-from: one request per existing file")

# An unknown session stops at once: later files would fail the same way.
with Scripted([problem(404, "unknown-session", "No such session, or it has expired."), OK]) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, img1, img2)
    tap.is_(r.returncode, 3, "404 session: exit 3")
    tap.is_(len(srv.requests), 1, "404 session: no further requests")
    tap.like(r.stderr, r"session AAAAAA\.\.\. is unknown or has expired", "404: clear message")
    tap.ok(SID not in r.stderr, "the message shows only a prefix of the session id")

# A URL that is not an ImageTools server: a web server's own 404 page, or a catch-all page that
# answers 200 to anything. Neither is an unknown session: a message of its own, exit 5, and the
# later files are not sent.
for status, body, what in [(404, b"<html><body>Not Found</body></html>", "a 404 page"),
                           (200, b"<html>Welcome to my blog</html>", "a 200 page")]:
    with Scripted([(status, {"Content-Type": "text/html"}, body), OK]) as srv:
        r = run("imagetools-upload", "-s", srv.url + "/wrong", "-S", SID, img1, img2)
        tap.is_(r.returncode, 5, "wrong URL (%s): exit 5" % what)
        tap.like(r.stderr, r"/wrong/api/v1/images is not an ImageTools server|answered 200, but not as an ImageTools",
                 "wrong URL (%s): the message says the URL is not an ImageTools server" % what)
        tap.ok("unknown or has expired" not in r.stderr, "wrong URL (%s): not blamed on the session" % what)
        tap.is_(len(srv.requests), 1, "wrong URL (%s): the later file is not sent" % what)
# The router's own 404 (an ImageTools server, but not this path) is a wrong URL too.
with Scripted([problem(404, "not-found", "No such route.")]) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, img1)
    tap.is_(r.returncode, 5, "a 404 that is not about the session: exit 5")

# host:port without a scheme is http://host:port.
with Scripted([OK]) as srv:
    r = run("imagetools-upload", "-s", srv.url[len("http://"):], "-S", SID, img1)
    tap.is_((r.returncode, [q["path"] for q in srv.requests]), (0, ["/api/v1/images"]),
            "--server host:port without a scheme uploads over http")

# A malformed session id: one clear error before anything is sent, exit 3.
with Scripted([OK, OK]) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", "not a session!", img1, img2)
    tap.is_(r.returncode, 3, "malformed session id: exit 3")
    tap.is_(len(srv.requests), 0, "malformed session id: nothing is sent")
    tap.is_(len([l for l in r.stderr.splitlines() if l.strip()]), 1, "malformed session id: one error line")
    tap.like(r.stderr, r"is not a session id", "malformed session id: the message says so")

# -r uploads what directories hold (sorted, hidden names left out); without -r a directory is
# refused with a hint.
tree = os.path.join(tmp, "tree")
os.makedirs(os.path.join(tree, "sub", "deeper"))
write(os.path.join(tree, "b.png"), png_bytes(8, 8, seed=4))
write(os.path.join(tree, "a.png"), png_bytes(8, 8, seed=5))
write(os.path.join(tree, "sub", "deeper", "c.png"), png_bytes(8, 8, seed=6))
write(os.path.join(tree, ".hidden.png"), png_bytes(8, 8, seed=7))
with Scripted([OK] * 5) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, "-r", tree, img1)
    tap.is_(r.returncode, 0, "-r: exit 0")
    tap.is_([q["parts"].get("file", (None, None))[0] for q in srv.requests], ["a.png", "b.png", "c.png", "one.png"],
            "-r: every file below the directory, in name order, then the next argument; no hidden file")
with Scripted([OK]) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, tree)
    tap.is_((r.returncode, len(srv.requests)), (1, 0), "a directory without -r: exit 1, nothing sent")
    tap.like(r.stderr, r"is a directory \(use -r", "a directory without -r: the message suggests -r")

# 5xx forever: a bounded number of tries, then exit 4.
with Scripted([(502, {}, b"<html>bad gateway</html>")] * 3) as srv:
    r = run("imagetools-upload", "-s", srv.url, "-S", SID, "--retries", "2", "--retry-delay", "20", img1)
    tap.is_((r.returncode, len(srv.requests)), (4, 3), "502 three times with --retries 2: exit 4 after 3 tries")
    tap.like(r.stderr, r"HTTP 502 \(giving up after 2 retries\)", "says it gave up")
port = free_port()
r = run("imagetools-upload", "-s", "http://127.0.0.1:%d" % port, "-S", SID, "--retries", "1", "--retry-delay", "20",
        img1)
tap.is_(r.returncode, 4, "nothing listening: exit 4")
tap.like(r.stderr, r"(?i)couldn't connect.*retrying(.|\n)*giving up", "connection errors are retried, then given up")

# Usage and configuration.
tap.is_(run("imagetools-upload", "-s", "http://x", "-S", SID).returncode, 2, "no files: exit 2")
r = run("imagetools-upload", "-S", SID, img1)
tap.is_(r.returncode, 2, "no server: exit 2")
tap.like(r.stderr, r"IMAGETOOLS_SERVER", "the message says how to set the server")
tap.is_(run("imagetools-upload", "-s", "ftp://127.0.0.1", "-S", SID, img1).returncode, 2,
        "server must be an http(s) URL or host:port")
tap.is_(run("imagetools-upload", "--retries", "x", img1).returncode, 2, "a bad number: exit 2")
r = run("imagetools-upload", "--help")
tap.ok(r.returncode == 0 and "--session" in r.stdout and "Exit status" in r.stdout, "--help")
cfgdir = os.path.join(tmp, "cfg")
os.makedirs(os.path.join(cfgdir, "imagetools"))
with Scripted([OK, OK]) as srv:
    write(os.path.join(cfgdir, "imagetools", "cli.conf"),
          ("# test\nserver = %s\nsession = \"%s\"\nsource = browser_addon\n" % (srv.url, SID)).encode())
    r = run("imagetools-upload", img1, env={"XDG_CONFIG_HOME": cfgdir})
    tap.is_(r.returncode, 0, "server, session and source from the config file")
    tap.is_(srv.requests[0]["parts"].get("source", (0, b""))[1] if srv.requests else None, b"browser_addon",
            "source from the config file")
    r = run("imagetools-upload", img1, env={"XDG_CONFIG_HOME": cfgdir, "IMAGETOOLS_SESSION": "B" * 32})
    tap.is_(srv.requests[1]["parts"].get("session_id", (0, b""))[1] if len(srv.requests) > 1 else None,
            b"B" * 32, "IMAGETOOLS_SESSION wins over the config file")
write(os.path.join(cfgdir, "imagetools", "cli.conf"), b"sever = http://typo\n")
r = run("imagetools-upload", img1, env={"XDG_CONFIG_HOME": cfgdir})
tap.is_(r.returncode, 2, "an unknown key in the config file: exit 2")
tap.like(r.stderr, r"cli\.conf:1: unknown key 'sever'", "the message names the file, line and key")

# A progress bar on a terminal.
with Scripted([OK]) as srv:
    master, slave = pty.openpty()
    p = subprocess.Popen([os.path.join(os.environ.get("IT_BUILDDIR", "."), "imagetools-upload"), "-s", srv.url,
                          "-S", SID, big], stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=30)
    os.close(master)
    shown = out.decode(errors="replace")
    tap.like(shown, r"big\.png +100% \[#{20}\] 1\.\d MiB / 1\.\d MiB", "a terminal shows a progress bar to 100%")
    tap.like(shown, r"[\d.]+ [KMG]?i?B/s", "with the transfer rate")

# ------------------------------------------------------------------ the real stack


def append_events(st, sid, n, type_="image.deleted"):
    st.sql("SELECT it_append_event(:'p1', :'p2', jsonb_build_object('image_id', g::text)) "
           "FROM generate_series(1, %d) g" % n, sid, type_)


def download(st, path):
    status, _, body = st.curl(st.url + path)
    return status, body


with Stack(tap, settings={"max_upload_bytes": "2M", "keepalive_interval": 2}) as st:
    sid = st.new_session()

    # -- upload into the real server: the bytes stored equal the bytes sent.
    files = [img1, img2, write(os.path.join(tmp, "three.png"), png_bytes(300, 200, seed=4, noisy=True))]
    r = run("imagetools-upload", "--server", st.url, "--session", sid, "--json", *files)
    tap.is_(r.returncode, 0, "three files stored: exit 0")
    answers = [json.loads(x) for x in r.stdout.splitlines()]
    tap.is_(len(answers), 3, "one JSON line per file")
    for path, a in zip(files, answers):
        img = (a.get("images") or [{}])[0]
        want = hashlib.sha256(open(path, "rb").read()).hexdigest()
        tap.is_(img.get("sha256"), want, "%s: the server's sha256 is the file's" % os.path.basename(path))
        tap.is_(img.get("source"), "cli", "%s: source defaults to cli" % os.path.basename(path))
        # The answer's signed URL fetches the bytes without the session credential.
        status, body = download(st, img.get("file_url", "/"))
        tap.ok(status == 200 and hashlib.sha256(body).hexdigest() == want,
               "%s: the downloaded bytes are the bytes sent" % os.path.basename(path))
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", sid), "3", "three images stored")

    r = run("imagetools-upload", "-s", st.url, "-S", sid, img1, text, img2)
    tap.is_(r.returncode, 1, "a text file among images: exit 1")
    tap.like(r.stderr, r"notes\.png: not an image", "the text file is named as not an image")
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", sid), "5",
            "the two images around it were stored, the text file was not")

    r = run("imagetools-upload", "-s", st.url, "-S", sid, write(os.path.join(tmp, "huge.png"),
            png_bytes(1000, 800, seed=5, noisy=True)))
    tap.is_(r.returncode, 1, "a file over max_upload_bytes: exit 1")
    tap.like(r.stderr, r"huge\.png: too large", "it is named as too large")
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", sid), "5", "and nothing was stored")

    r = run("imagetools-upload", "-s", st.url, "-S", "Z" * 32, img1)
    tap.is_(r.returncode, 3, "unknown session on the real server: exit 3")
    tap.like(r.stderr, r"is unknown or has expired", "with a clear message")

    # A wrong path on the real web server (its own 404 page) is told apart from an unknown session.
    r = run("imagetools-upload", "-s", st.url + "/wrong", "-S", sid, img1)
    tap.is_(r.returncode, 5, "a wrong --server path on the real server: exit 5")
    tap.like(r.stderr, r"not an ImageTools server", "with a message naming the URL, not the session")

    r = run("imagetools-upload", "-s", st.url, "-S", sid, "--source", "fax", img1)
    tap.is_(r.returncode, 1, "an unknown --source: exit 1")
    tap.like(r.stderr, r"one\.png: refused \(.*HTTP 400", "the server's 400 is shown")

    # The web server down when the upload starts: connection errors are retried until it is back.
    st.stop_lighttpd()
    p = subprocess.Popen([os.path.join(os.environ.get("IT_BUILDDIR", "."), "imagetools-upload"), "-s", st.url,
                          "-S", sid, "--retry-delay", "500", "--retries", "8", "--json", img2],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    st.start_lighttpd()
    out, err = p.communicate(timeout=60)
    tap.is_(p.returncode, 0, "upload while the server restarts: stored after retries")
    tap.like(err, r"(?i)couldn't connect.*retrying", "the connection errors were retried")
    img = ((json.loads(out.splitlines()[0]) if out.strip() else {}).get("images") or [{}])[0]
    tap.is_(img.get("sha256"), hashlib.sha256(open(img2, "rb").read()).hexdigest(), "with the right bytes")
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", sid), "6", "stored once")

    # -- watch: every event once and in order, on both transports, across a kill.
    for transport in ("sse", "longpoll"):
        ws = st.new_session()
        state = os.path.join(tmp, "state-" + transport)
        # --no-presence: the follower's own presence events would take ids in the log these
        # checks count on (presence is checked further down).
        args = ["-s", st.url, "-S", ws, "--transport", transport, "--state", state, "--retry-delay", "100",
                "--poll-timeout", "5", "--no-presence"]
        f = Follower(*args)
        append_events(st, ws, 5)
        got = f.stored(5)
        tap.is_([e.get("id") for e in got], [1, 2, 3, 4, 5], "%s: events 1-5 in order" % transport)
        tap.ok(all(e.get("type") == "image.deleted" and e.get("timestamp") for e in got),
               "%s: events are printed whole (type, timestamp, data)" % transport)
        wait_for(lambda: json.load(open(state)).get("last_event_id") == 5, timeout=10, what="state file")
        tap.ok(oct(os.stat(state).st_mode & 0o777) == "0o600", "%s: the state file is private (0600)" % transport)
        f.stop(signal.SIGKILL)
        append_events(st, ws, 3)
        f = Follower(*args)
        got = f.stored(3)
        append_events(st, ws, 2)
        got += f.stored(2)
        more = [e for e in f.rest(1.5) if "id" in e]
        tap.is_([e.get("id") for e in got + more], [6, 7, 8, 9, 10],
                "%s: after a kill it resumes from --state: nothing twice, nothing lost" % transport)

        # The web server going away and coming back: the follower reconnects by itself.
        st.stop_lighttpd()
        append_events(st, ws, 2)
        time.sleep(1.0)
        st.start_lighttpd()
        got = f.stored(2, timeout=40)
        append_events(st, ws, 1)
        got += f.stored(1)
        more = [e for e in f.rest(1.0) if "id" in e]
        tap.is_([e.get("id") for e in got + more], [11, 12, 13],
                "%s: reconnects after the web server restarts: nothing twice, nothing lost" % transport)
        tap.is_(f.stop(), 0, "%s: SIGTERM ends it with exit 0" % transport)
        tap.is_(json.load(open(state)).get("last_event_id"), 13, "%s: the state file has the last id" % transport)

        # --type filters, --once exits on the first match.
        # --since 13: whenever the follower gets going, it starts after the events above.
        f = Follower("-s", st.url, "-S", ws, "-t", transport, "--since", "13", "--type", "image.uploaded",
                     "--once", "--no-presence")
        append_events(st, ws, 2, "image.deleted")
        r = run("imagetools-upload", "-s", st.url, "-S", ws, "-q", img2)
        tap.is_(r.returncode, 0, "%s: uploaded while watching" % transport)
        code = f.wait(20)
        tap.is_(code, 0, "%s: --once exits 0 after the first upload" % transport)
        lines = f.rest(0.1)
        tap.is_(len(lines), 1, "%s: exactly one line printed" % transport)
        ev = lines[0] if lines else {}
        # The uploader's own presence events come before and after its image.uploaded.
        want = int(st.sql("SELECT min(seq) FROM events WHERE session_id = :'p1' AND type = 'image.uploaded' "
                          "AND seq > 15", ws) or 0)
        tap.is_((ev.get("id"), ev.get("type"), (ev.get("data") or {}).get("filename")),
                (want, "image.uploaded", "two.png"), "%s: it is the upload, not the filtered events" % transport)

        # The session ending stops the follower with a clear message and exit 3.
        f = Follower("-s", st.url, "-S", ws, "-t", transport, "--since", "now", "--retry-delay", "100",
                     "--poll-timeout", "2", "--no-presence")
        time.sleep(1.0)
        tap.is_(st.request("DELETE", "/api/v1/sessions/" + ws).status, 204, "%s: session deleted" % transport)
        code = f.wait(30)
        tap.is_(code, 3, "%s: a deleted session ends the follower with exit 3" % transport)
        tap.like("".join(f.stderr), r"session .{6}\.\.\. is unknown or has expired",
                 "%s: and says why" % transport)
        f.stop()

    # SIGKILL in the middle of a backlog: the state file is never torn, nothing is lost, and at
    # most the one event printed just before the kill is printed again.
    for transport in ("sse", "longpoll"):
        ks = st.new_session()
        append_events(st, ks, 2000)
        kstate = os.path.join(tmp, "state-kill-" + transport)
        args = ["-s", st.url, "-S", ks, "-t", transport, "--state", kstate, "--retry-delay", "100", "--no-presence"]
        f = Follower(*args)
        first = f.stored(300)
        f.proc.kill()
        f.proc.wait()
        first += [e for e in f.rest(0.5) if "id" in e]
        saved = json.load(open(kstate)).get("last_event_id")
        f = Follower(*args)
        second = f.stored(2000 - saved, timeout=60)
        second += [e for e in f.rest(1.0) if "id" in e]
        f.stop()
        ids = [e.get("id") for e in first + second]
        tap.is_(sorted(set(ids)), list(range(1, 2001)),
                "%s: killed after %d of 2000 events: none lost across the restart" % (transport, len(first)))
        tap.ok(len(ids) - len(set(ids)) <= 1 and ids == sorted(ids),
               "%s: in order, at most the event in flight twice (%d repeated)" % (transport, len(ids) - len(set(ids))))

    # --since now skips the log so far. SSE prints connection.status once it is connected, after
    # the follower has read the session's last id, so the event appended then is the first new one.
    ns = st.new_session()
    append_events(st, ns, 3)
    f = Follower("-s", st.url, "-S", ns, "--since", "now", "--no-presence")
    first = f.events(1)
    tap.is_([e.get("type") for e in first], ["connection.status"], "--since now: connected")
    append_events(st, ns, 1)
    got = f.events(1)
    tap.is_([e.get("id") for e in got], [4], "--since now: the first event printed is the next one")
    f.stop()

    # A cursor the log cannot serve (here: ahead of it) gets session.resync, and the follower
    # goes on from the id the server names.
    for transport in ("sse", "longpoll"):
        rs = st.new_session()
        append_events(st, rs, 3)
        rstate = os.path.join(tmp, "state-resync-" + transport)
        write(rstate, json.dumps({"session_id": rs, "last_event_id": 50}).encode())
        f = Follower("-s", st.url, "-S", rs, "-t", transport, "--state", rstate, "--retry-delay", "100",
                     "--poll-timeout", "2", "--no-presence")
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any(e.get("type") == "session.resync" for e in seen):
            seen += f.events(1, timeout=1)
        resync = [e for e in seen if e.get("type") == "session.resync"]
        tap.ok(resync and "id" not in resync[0] and resync[0].get("data", {}).get("last_event_id") == 3,
               "%s: a cursor ahead of the log prints session.resync naming event 3" % transport)
        append_events(st, rs, 1)
        got = f.stored(1)
        more = [e for e in f.rest(1.0) if "id" in e]
        tap.is_([e.get("id") for e in got + more], [4], "%s: after the resync it continues with event 4" % transport)
        f.stop()

    # An invalid session from the start.
    r = run("imagetools-watch", "-s", st.url, "-S", "Q" * 32, timeout=30)
    tap.is_(r.returncode, 3, "watch: unknown session: exit 3")
    tap.like(r.stderr, r"QQQQQQ\.\.\. is unknown or has expired", "watch: clear message")
    r = run("imagetools-watch", "-s", st.url, "-S", sid, "--state", state, timeout=30)
    tap.is_(r.returncode, 2, "watch: a state file of another session is refused (exit 2)")
    r = run("imagetools-watch", "-s", st.url, "-S", sid, "--state", os.path.join(tmp, "no", "such", "dir"),
            timeout=30)
    tap.is_(r.returncode, 1, "watch: an unwritable state file is reported at once (exit 1)")
    tap.like(r.stderr, r"cannot write the state file", "watch: and named")
    tap.is_(run("imagetools-watch", "-s", st.url, "-S", sid, "-t", "ws").returncode, 2,
            "watch: unknown transport: exit 2")

    # -- devices: pair with a code, upload and watch with tokens, a revoked token, a token's scope.
    def auth(cred):
        return {"Authorization": "Bearer " + cred}

    def mint_code(owner, scope):
        r = st.request("POST", "/api/v1/pairings", body=json.dumps({"scope": scope}).encode(),
                       headers=dict(auth(owner), **{"Content-Type": "application/json"}))
        tap.is_(r.status, 201, "the owner makes a %s pairing code" % scope)
        return r.json() if r.status == 201 else {}

    def mint_token(owner, scope, label):
        r = st.request("POST", "/api/v1/tokens", body=json.dumps({"scope": scope, "label": label}).encode(),
                       headers=dict(auth(owner), **{"Content-Type": "application/json"}))
        return r.json() if r.status == 201 else {}

    ds = st.new_session()
    home = os.path.join(tmp, "pairhome")
    conf = os.path.join(home, "imagetools", "cli.conf")
    os.makedirs(os.path.dirname(conf))
    write(conf, b"# mine\nsource = cli\nsession = " + ("Z" * 32).encode() + b"\n")
    os.chmod(conf, 0o644)
    pairing = mint_code(ds, "upload")
    r = run("imagetools-upload", "--pair", pairing.get("pair_url", "?"), env={"XDG_CONFIG_HOME": home})
    tap.is_(r.returncode, 0, "--pair with the page's pairing link: exit 0")
    tap.like(r.stderr, r"paired as dev_[A-Za-z0-9_-]{16} .*scope upload", "it says which device it became")
    saved = open(conf).read()
    token = (re.search(r'^token = "(itk\.[A-Za-z0-9_-]{32})"$', saved, re.M) or [None, ""])[1]
    tap.ok(token, "the token is kept in the config file")
    tap.ok(token and token not in r.stderr + r.stdout, "and never printed")
    tap.like(saved, r'(?m)^server = "%s"$' % re.escape(st.url), "with the server from the link")
    tap.ok("# mine" in saved and "source = cli" in saved and "session =" not in saved,
           "the user's other lines stay; the old session line goes")
    tap.is_(oct(os.stat(conf).st_mode & 0o777), "0o600", "the config file is private (0600) once it holds a token")
    dev = st.sql("SELECT label || '|' || source || '|' || scope FROM devices WHERE session_id = :'p1'", ds)
    tap.is_(dev, "imagetools-upload on %s|cli|upload" % socket.gethostname()[:43],
            "the device is labelled after the program and the host, source cli")
    r = run("imagetools-upload", "--pair", pairing.get("pair_url", "?"), env={"XDG_CONFIG_HOME": home})
    tap.is_(r.returncode, 6, "the same pairing code again: exit 6")
    tap.like(r.stderr, r"already used", "and the message says it was used")
    r = run("imagetools-upload", "-s", st.url, "--pair", "itp." + "x" * 22, env={"XDG_CONFIG_HOME": home})
    tap.is_(r.returncode, 6, "an unknown pairing code (bare, with --server): exit 6")
    # A credential in the environment would win over the saved token: the pairing says so.
    home2 = os.path.join(tmp, "pairhome2")
    r = run("imagetools-upload", "--pair", mint_code(ds, "upload").get("pair_url", "?"),
            env={"XDG_CONFIG_HOME": home2, "IMAGETOOLS_SESSION": ds})
    tap.is_(r.returncode, 0, "--pair with IMAGETOOLS_SESSION set: paired")
    tap.like(r.stderr, r"note: IMAGETOOLS_SESSION is set, and later runs use it",
             "and it says the environment's credential wins later")
    tap.ok(os.path.exists(os.path.join(home2, "imagetools", "cli.conf")), "the config directory was created")
    tap.is_(oct(os.stat(os.path.join(home2, "imagetools")).st_mode & 0o777), "0o700",
            "the new config directory is private (0700)")

    # The paired token uploads: the bytes stored are the bytes sent.
    r = run("imagetools-upload", "--json", img2, env={"XDG_CONFIG_HOME": home})
    tap.is_(r.returncode, 0, "upload with the paired token from the config file: exit 0")
    img = ((json.loads(r.stdout.splitlines()[0]) if r.stdout.strip() else {}).get("images") or [{}])[0]
    want = hashlib.sha256(open(img2, "rb").read()).hexdigest()
    status, body = download(st, img.get("file_url", "/"))
    tap.ok(img.get("sha256") == want and status == 200 and hashlib.sha256(body).hexdigest() == want,
           "token upload: the bytes stored are the bytes sent")
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1' AND source = 'cli'", ds), "1",
            "token upload: stored in the code's session")
    r = run("imagetools-upload", "--resume", "--state-dir", os.path.join(tmp, "tus-token"), "--json", img1,
            env={"XDG_CONFIG_HOME": home})
    tap.is_(r.returncode, 0, "token upload over tus (--resume): exit 0")
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", ds), "2", "token upload over tus: stored")

    # While it uploads, imagetools-upload is in the session's presence list, under its device's
    # label, and leaves when it ends.
    def presence(owner):
        r = st.request("GET", "/api/v1/presence", headers=auth(owner))
        return r.json().get("presence", []) if r.status == 200 else []

    me = "imagetools-upload on %s" % socket.gethostname()[:43]
    p = subprocess.Popen([os.path.join(os.environ.get("IT_BUILDDIR", "."), "imagetools-upload"), "-q",
                          "--limit-rate", "100000", big], env=dict(os.environ, XDG_CONFIG_HOME=home),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen = wait_for(lambda: [e for e in presence(ds) if e.get("label") == me], timeout=20,
                        what="the uploader in presence")
    except TimeoutError:
        seen = []
    entry = seen[0] if seen else {}
    tap.is_((entry.get("state"), entry.get("source"), entry.get("transport")), ("uploading", "cli", "http"),
            "presence: imagetools-upload is listed as uploading while it sends, under its device's label")
    tap.is_(p.wait(timeout=60), 0, "the slow upload is stored")
    left = [e for e in presence(ds) if e.get("label") == me]
    tap.is_(left, [], "presence: it leaves when it ends")
    tap.ok(st.sql("SELECT count(*) FROM events WHERE session_id = :'p1' AND type = 'presence.left' "
                  "AND payload->>'client_id' = :'p2'", ds, entry.get("client_id", "?")) == "1",
           "presence: one presence.left for it")

    # An upload-only token cannot follow the session: exit 7 with a message, on both transports.
    for transport in ("sse", "longpoll"):
        r = run("imagetools-watch", "-s", st.url, "--token", token, "-t", transport, timeout=30)
        tap.is_(r.returncode, 7, "%s: watch with an upload token: exit 7" % transport)
        tap.like(r.stderr, r"may not read this session's events.*view or full", "%s: the message says why" % transport)
        tap.ok(token not in r.stderr, "%s: the token is not printed" % transport)

    # A view token follows; revoking it ends the follower at once with exit 6.
    for transport in ("sse", "longpoll"):
        view = mint_token(ds, "view", "watcher " + transport)
        before = st.sql("SELECT coalesce(max(seq), 0) FROM events WHERE session_id = :'p1'", ds)
        # --type: a token's device announces itself, and its presence events are in the log too.
        f = Follower("-s", st.url, "-t", transport, "--since", "now", "--retry-delay", "100", "--poll-timeout", "20",
                     "--type", "image.deleted", env={"IMAGETOOLS_TOKEN": view.get("token", "?")})
        append_events(st, ds, 2)
        got = f.stored(2)
        want = st.sql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM events WHERE session_id = :'p1' "
                      "AND type = 'image.deleted' AND seq > %d" % int(before), ds)
        tap.is_(",".join(str(e.get("id")) for e in got), want,
                "%s: watch with a view token prints the new events" % transport)
        listed = [e for e in presence(ds) if e.get("label") == "watcher " + transport]
        tap.is_([e.get("transport") for e in listed], [transport],
                "%s: the follower is in presence, under its device's label" % transport)
        r = st.request("DELETE", "/api/v1/devices/" + view.get("device_id", "?"), headers=auth(ds))
        tap.is_(r.status, 204, "%s: the owner revokes the watcher's token" % transport)
        code = f.wait(15)
        tap.is_(code, 6, "%s: the revoked follower stops with exit 6" % transport)
        tap.like("".join(f.stderr), r"token itk\.\S{6}\.\.\. (was revoked|is unknown, expired or revoked)",
                 "%s: and says its token was revoked" % transport)
        f.stop()
        r = run("imagetools-watch", "-s", st.url, "--token", view.get("token", "?"), "-t", transport, timeout=30)
        tap.is_(r.returncode, 6, "%s: a revoked token from the start: exit 6" % transport)
    # A follower with the session id announces itself by name; it leaves soon after it stops.
    f = Follower("-s", st.url, "-S", ds, "--since", "now")
    try:
        mine = wait_for(lambda: [e for e in presence(ds) if e.get("label") == "imagetools-watch"], timeout=20,
                        what="the follower in presence")
    except TimeoutError:
        mine = []
    tap.is_([(e.get("source"), e.get("transport")) for e in mine], [("cli", "sse")],
            "presence: imagetools-watch with the session id is listed as itself (source cli, sse)")
    tap.like((mine or [{}])[0].get("client_id", ""), r"^[A-Za-z0-9_-]{16}$", "presence: with its random client_id")
    tap.is_(f.stop(), 0, "the follower stops")
    try:
        wait_for(lambda: not [e for e in presence(ds) if e.get("label") == "imagetools-watch"], timeout=30,
                 what="the follower leaving presence")
        tap.ok(True, "presence: the stopped follower leaves")
    except TimeoutError:
        tap.ok(False, "presence: the stopped follower leaves")
    tap.ok(not any(token in open(os.path.join(st.dir, n), errors="replace").read()
                   for n in os.listdir(st.dir) if n.endswith(".log")),
           "no log of the stack holds the paired token")
    r = run("imagetools-watch", "--help")
    tap.ok(r.returncode == 0 and "--transport" in r.stdout, "watch --help")

shutil.rmtree(tmp, ignore_errors=True)
tap.done()
