#!/usr/bin/env python3
"""test_browser_tus.py: resumable uploads in Chromium (tests/browser/tus.mjs). The page uploads a
30 MB photo with tus while its network is cut midway; it resumes at the server's offset and
completes with one upload, one image.uploaded and the file's bytes, and a second tab shows the
upload arriving. A reload in the middle resumes when the same file is chosen again. Uppy
(@uppy/core + @uppy/tus) and tus-js-client, bundled from npm, upload from a page in Chromium. A
server without the tus route gets the large file as multipart. Under lighttpd FastCGI, Apache
mod_proxy_fcgi and Apache mod_cgi (under a path prefix).
"""

import json
import os

from harness import Tap, Stack
from apache import ApacheStack, prerequisites
from browser import BrowserRun, BROWSER_DIR, skip_all_unless_runnable

skip_all_unless_runnable()
for mod in ("esbuild", "tus-js-client", os.path.join("@uppy", "tus")):
    if not os.path.isdir(os.path.join(BROWSER_DIR, "node_modules", mod)):
        print("1..0 # SKIP %s is not installed (npm install in tests/browser)" % mod)
        raise SystemExit(0)


class TusRun(BrowserRun):
    def ctl_tus_facts(self, req):
        """What the server holds for a session: its tus uploads, its image.uploaded events (with the
        sha256 of the stored bytes) and how many upload.progress events it sent."""
        s = req["session"]
        uploads = int(self.st.sql("SELECT count(*) FROM tus_uploads WHERE session_id = :'p1'", s))
        rows = self.st.sql("SELECT e.payload::text FROM events e WHERE e.session_id = :'p1'"
                           " AND e.type = 'image.uploaded' ORDER BY e.seq", s)
        uploaded = []
        for line in rows.splitlines():
            d = json.loads(line)
            d["sha256"] = self.st.sql("SELECT sha256 FROM images WHERE id = :'p1'", d.get("image_id") or d.get("id"))
            uploaded.append(d)
        progress = int(self.st.sql("SELECT count(*) FROM events WHERE session_id = :'p1' AND type = 'upload.progress'", s))
        types = self.st.sql("SELECT type FROM events WHERE session_id = :'p1' ORDER BY seq", s).split()
        images = int(self.st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", s))
        return {"uploads": uploads, "uploaded": uploaded, "progress": progress, "types": types, "images": images}


SETTINGS = {"max_upload_bytes": "64M", "thumbnail_size": "64"}
tap = Tap()
with Stack(tap, bridge=True, settings=SETTINGS) as st:
    tap.diag("lighttpd FastCGI with the bridge")
    TusRun(tap, st).run("tus.mjs", timeout=400)
if prerequisites("apache"):
    tap.diag("skipping the Apache runs: %s" % prerequisites("apache"))
else:
    with ApacheStack(tap, mode="fcgi", bridge=True, settings=SETTINGS) as st:
        tap.diag("Apache mod_proxy_fcgi with the bridge")
        TusRun(tap, st).run("tus.mjs", timeout=400, label="apache-fcgi")
    with ApacheStack(tap, mode="cgi", prefix="/imagetools", settings=SETTINGS) as st:
        tap.diag("Apache mod_cgi under /imagetools, no daemons")
        TusRun(tap, st).run("tus.mjs", timeout=400, label="apache-cgi")
tap.done()
