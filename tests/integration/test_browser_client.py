#!/usr/bin/env python3
"""test_browser_client.py: the realtime client's decisions under a fake clock and fake transports
(tests/browser/client-unit.mjs, in Node.js): backoff, heartbeat, duplicate filtering, resume
positions, invalid sessions; the tabs' election and relay of the shared mode
(tests/browser/shared-unit.mjs); and the QR encoder (web/js/qr.js) read back by zbarimg at every
version it offers. No stack needed; the Chromium tests cover the real server.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from harness import Tap, SRCDIR

if not shutil.which("node"):
    print("1..0 # SKIP node is not installed")
    sys.exit(0)
tap = Tap()
# client-unit.mjs: the client itself; shared-unit.mjs: the tabs' election and relay
# (web/js/imagetools-shared.js), each tab a worker thread.
for name in ("client-unit.mjs", "shared-unit.mjs"):
    script = os.path.join(SRCDIR, "tests", "browser", name)
    p = subprocess.run(["node", script], capture_output=True, text=True, timeout=180)
    ran = 0
    for line in p.stdout.splitlines():
        if line.startswith("ok - ") or line.startswith("not ok - "):
            ran += 1
            tap.ok(line.startswith("ok - "), name + ": " + line.split(" - ", 1)[1])
        else:
            print(line if line.startswith("#") else "# " + line)
    if p.returncode != 0:
        tap.diag(p.stderr[-3000:])
    tap.ok(p.returncode == 0 and ran > 0, "%s ran %d checks and exited cleanly (rc %d)" % (name, ran, p.returncode))

# web/js/qr.js: codes of every version it offers, at both levels, read back by a real decoder.
if not shutil.which("zbarimg"):
    tap.n += 1
    print("ok %d # SKIP zbarimg is not installed (zbar-tools)" % tap.n)
else:
    with tempfile.TemporaryDirectory() as d:
        versions = set()
        for n in (5, 20, 40, 60, 80, 100, 120, 150, 180, 213, 260):
            # A URL-like text of n bytes, encoded in byte mode.
            text = ("http://127.0.0.1:8080/#s=" + "AbC_dE-fG0123456789" * 20)[:n]
            for level in ("L", "M"):
                if level == "M" and n > 213:
                    continue
                out = os.path.join(d, "q.pbm")
                r = subprocess.run(["node", os.path.join(SRCDIR, "tests", "browser", "qr-pbm.mjs"), text, level, out],
                                   capture_output=True, text=True, timeout=60)
                info = json.loads(r.stdout) if r.returncode == 0 else {}
                versions.add(info.get("version"))
                z = subprocess.run(["zbarimg", "-q", "--raw", out], capture_output=True, text=True, timeout=60)
                tap.is_(z.stdout.rstrip("\n"), text, "qr.js: %d bytes at level %s (version %s, mask %s) decode exactly"
                        % (n, level, info.get("version"), info.get("mask")))
        tap.is_(sorted(v for v in versions if v), list(range(1, 11)), "qr.js: versions 1 to 10 were all exercised")
        r = subprocess.run(["node", "-e", "import('%s').then(m => { try { m.qrEncode('x'.repeat(214), {level: 'M'}); "
                            "process.exit(1); } catch (e) { process.exit(e instanceof RangeError ? 0 : 2); } })"
                            % os.path.join(SRCDIR, "web", "js", "qr.js")], capture_output=True, timeout=60)
        tap.is_(r.returncode, 0, "qr.js: a text too long for version 10 is a RangeError, not a broken code")
tap.done()
