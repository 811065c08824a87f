"""browser.py: runs a tests/browser/*.mjs script in real Chromium (playwright-core) against a Stack.

The script prints TAP-like lines that this module renumbers into the test's own Tap, and asks for
changes to the stack over a small control channel ("@@ctl {json}" on its stdout, one JSON answer
line on its stdin): restart lighttpd, stop and start PostgreSQL or the bridge, append events
through it_append_event, upload as an external source with curl.

    from harness import Tap, Stack
    from browser import BrowserRun
    tap = Tap()
    with Stack(tap, bridge=True, worker=True) as st:
        BrowserRun(tap, st).run("gallery.mjs")
    tap.done()
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib

from harness import BUILDDIR, SRCDIR

BROWSER_DIR = os.path.join(SRCDIR, "tests", "browser")
CHROMIUM = os.environ.get("IT_CHROMIUM", "/usr/bin/chromium")


def skip_all_unless_runnable():
    """Prints a whole-file TAP skip and exits when Node.js, playwright-core or Chromium is missing."""
    why = None
    if not shutil.which("node"):
        why = "node is not installed"
    elif not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", "playwright-core")):
        why = "playwright-core is not installed (npm install in tests/browser)"
    elif not os.access(CHROMIUM, os.X_OK):
        why = CHROMIUM + " is not installed"
    if why:
        print("1..0 # SKIP " + why)
        sys.exit(0)


def png_bytes(w, h, seed=0):
    """A small real PNG (an RGB gradient)."""
    rows = bytearray()
    for y in range(h):
        rows.append(0)
        for x in range(w):
            rows += bytes(((x * 255 // w + seed * 40) & 255, y * 255 // h, (128 + seed * 25) & 255))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(rows))) + chunk(b"IEND", b""))


class BrowserRun:
    def __init__(self, tap, stack):
        self.tap = tap
        self.st = stack
        # Shared-hosting stacks serve everything under a path (url_prefix).
        self.prefix = getattr(stack, "prefix", "") or ""
        self.artifacts = os.path.join(BUILDDIR, "tests", "artifacts")
        os.makedirs(self.artifacts, exist_ok=True)

    # -- what the stack can do (pieces land one by one; missing ones are skipped, visibly)

    def features(self):
        st = self.st
        f = {"bridge": st.bridge is not None, "worker": st.worker is not None}
        sid = self.new_session()
        p = self.prefix
        r = st.request("GET", p + "/api/v1/events?session_id=%s&cursor=0&timeout=1" % sid, timeout=15)
        f["longpoll"] = r.status == 200
        st_code, headers, _ = st.curl("-m", "2", "%s%s/api/v1/events/stream?session_id=%s" % (st.url, p, sid))
        f["sse"] = st_code == 200 and "text/event-stream" in headers
        r = st.request("GET", p + "/api/v1/sessions/%s/images" % sid)
        f["uploads"] = r.status == 200
        r = st.request("GET", p + "/api/v1/operations/%s" % uuid.uuid4(), headers={"Authorization": "Bearer " + sid})
        # A missing route answers the router's generic "not-found" problem; a missing operation
        # answers its own type.
        f["operations"] = r.status == 404 and b'problem:not-found"' not in r.body.replace(b" ", b"")
        return f

    # -- running a script

    def run(self, script, env=None, timeout=300, label=None):
        """Runs script; label (e.g. "apache-cgi") prefixes its artifact file names."""
        e = dict(os.environ)
        if label:
            e["IT_LABEL"] = label
        self.feat = self.features()
        self.tap.diag("stack features: %s" % json.dumps(self.feat, sort_keys=True))
        e.update({"IT_URL": self.st.url + self.prefix, "IT_ARTIFACTS": self.artifacts, "IT_FEATURES": json.dumps(self.feat),
                  "IT_CHROMIUM": CHROMIUM, "IT_BROWSER_TIMEOUT": str(timeout - 20)})
        e.update(env or {})
        proc = subprocess.Popen(["node", os.path.join(BROWSER_DIR, script)], cwd=BROWSER_DIR, env=e,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, bufsize=1, start_new_session=True)
        stderr = []
        t = threading.Thread(target=lambda: stderr.extend(proc.stderr), daemon=True)
        t.start()
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        ran = 0
        try:
            for line in proc.stdout:
                line = line.rstrip("\n")
                if line.startswith("@@ctl "):
                    answer = self.control(json.loads(line[6:]))
                    proc.stdin.write(json.dumps(answer) + "\n")
                    proc.stdin.flush()
                elif line.startswith("ok - ") or line.startswith("not ok - "):
                    ran += 1
                    good = line.startswith("ok - ")
                    self.tap.ok(good, "%s: %s" % (script, line.split(" - ", 1)[1]))
                elif line.startswith("skip - "):
                    ran += 1
                    name, _, why = line[7:].partition(" # ")
                    self.tap.n += 1
                    print("ok %d - %s: %s # SKIP %s" % (self.tap.n, script, name, why))
                else:
                    print(line if line.startswith("#") else "# " + line)
            rc = proc.wait()
        finally:
            killer.cancel()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        t.join(timeout=5)
        self.tap.ok(rc == 0 and ran > 0, "%s: ran %d checks and exited cleanly (rc %s)" % (script, ran, rc))
        if rc != 0 and stderr:
            self.tap.diag("".join(stderr[-30:]))
        if rc != 0:
            self.st.dump_logs()

    # -- the control channel

    def control(self, req):
        cmd = req.get("cmd")
        try:
            fn = getattr(self, "ctl_" + cmd)
            return {"result": fn(req)}
        except Exception as ex:  # the script decides what a failure means
            return {"error": "%s: %s" % (type(ex).__name__, ex)}

    def new_session(self):
        r = self.st.request("POST", self.prefix + "/api/v1/sessions", body=b"", headers={"Content-Length": "0"})
        if r.status != 201:
            raise RuntimeError("session create failed: %r" % r)
        return r.json()["session_id"]

    def ctl_new_session(self, req):
        return self.new_session()

    def ctl_append(self, req):
        """Appends count events of type to a session through it_append_event; returns their ids."""
        ids = []
        for i in range(int(req.get("count", 1))):
            data = dict(req.get("data") or {})
            data.setdefault("n", i)
            out = self.st.sql("SELECT it_append_event(:'p1', :'p2', :'p3'::jsonb)",
                              req["session"], req.get("type", "image.deleted"), json.dumps(data))
            ids.append(int(out))
        return ids

    def ctl_append_timed(self, req):
        """Appends count events interval_ms apart, each with data.t = its insert time (epoch ms, taken
        inside the transaction just before commit), for latency measurements; returns the ids."""
        ids = []
        for i in range(int(req.get("count", 1))):
            out = self.st.sql("SELECT it_append_event(:'p1', 'image.deleted', jsonb_build_object("
                              "'image_id', 'bench', 'n', %d, 't', "
                              "round(extract(epoch FROM clock_timestamp()) * 1000, 3)))" % i, req["session"])
            ids.append(int(out))
            time.sleep(float(req.get("interval_ms", 50)) / 1000.0)
        return ids

    def ctl_restart_lighttpd(self, req):
        self.st.restart_lighttpd()
        return True

    def ctl_stop_lighttpd(self, req):
        self.st.stop_lighttpd()
        return True

    def ctl_start_lighttpd(self, req):
        self.st.start_lighttpd()
        return True

    def ctl_pg_stop(self, req):
        self.st.pg.stop(req.get("mode", "fast"))
        return True

    def ctl_pg_start(self, req):
        self.st.pg.start()
        return True

    def ctl_bridge_stop(self, req):
        b = self.st.bridge
        if b is None:
            return False
        b.terminate()
        b.wait(timeout=10)
        self.st.procs.remove(b)
        self.st.bridge = None
        return True

    def ctl_bridge_start(self, req):
        self.st.start_bridge()
        return True

    def ctl_worker_stop(self, req):
        w = self.st.worker
        if w is None:
            return False
        w.terminate()
        w.wait(timeout=10)
        self.st.procs.remove(w)
        self.st.worker = None
        return True

    def ctl_worker_start(self, req):
        self.st.start_worker()
        return True

    def ctl_curl_upload(self, req):
        """Uploads a generated image with curl, as an external source would; returns (status, body)."""
        d = tempfile.mkdtemp(dir=self.st.dir)
        try:
            path = os.path.join(d, "upload.bin")
            with open(path, "wb") as f:
                f.write(png_bytes(int(req.get("w", 120)), int(req.get("h", 90)), int(req.get("seed", 1))))
            # The file name is given in a separate form so curl does not have to parse it
            # out of the -F value (a name with ';' or '"' would otherwise need quoting).
            name = req["filename"].replace("\\", "\\\\").replace('"', '\\"')
            status, _, body = self.st.curl("-F", "session_id=" + req["session"],
                                           "-F", "source=" + req.get("source", "android_app"),
                                           "-F", 'file=@%s;filename="%s";type=image/png' % (path, name),
                                           self.st.url + self.prefix + "/api/v1/images")
            try:
                body = json.loads(body.decode("utf-8"))
            except ValueError:
                body = body.decode("utf-8", "replace")
            return {"status": status, "body": body}
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def ctl_image_count(self, req):
        """The number of images the database holds for a session."""
        return int(self.st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", req["session"]))

    def ctl_zbar(self, req):
        """Decodes the QR code in an image file with zbarimg; returns the text, or None."""
        if not shutil.which("zbarimg"):
            return {"skip": "zbarimg is not installed (zbar-tools)"}
        r = subprocess.run(["zbarimg", "-q", "--raw", req["path"]], capture_output=True, text=True, timeout=30)
        return {"text": r.stdout.rstrip("\n") if r.returncode == 0 else None}

    def ctl_sleep(self, req):
        time.sleep(float(req.get("seconds", 1)))
        return True
