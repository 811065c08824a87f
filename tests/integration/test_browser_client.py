#!/usr/bin/env python3
"""test_browser_client.py: the realtime client's decisions under a fake clock and fake transports
(tests/browser/client-unit.mjs, in Node.js): backoff, heartbeat, duplicate filtering, resume
positions, invalid sessions. No stack needed; the Chromium tests cover the real server.
"""

import os
import shutil
import subprocess
import sys

from harness import Tap, SRCDIR

if not shutil.which("node"):
    print("1..0 # SKIP node is not installed")
    sys.exit(0)
tap = Tap()
script = os.path.join(SRCDIR, "tests", "browser", "client-unit.mjs")
p = subprocess.run(["node", script], capture_output=True, text=True, timeout=120)
ran = 0
for line in p.stdout.splitlines():
    if line.startswith("ok - ") or line.startswith("not ok - "):
        ran += 1
        tap.ok(line.startswith("ok - "), line.split(" - ", 1)[1])
    else:
        print(line if line.startswith("#") else "# " + line)
if p.returncode != 0:
    tap.diag(p.stderr[-3000:])
tap.ok(p.returncode == 0 and ran > 0, "client-unit.mjs ran %d checks and exited cleanly (rc %d)" % (ran, p.returncode))
tap.done()
