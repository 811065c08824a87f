#!/usr/bin/env python3
"""test_browser_tabs.py: ten Chromium tabs of one session share one event stream
(tests/browser/tabs.mjs): plain HTTP/1.1 lighttpd and no WebSocket bridge, so the stream is SSE
and counts against the browser's six connections per host. Every tab gets every event once and
in order, the server holds one stream, an upload from the tenth tab completes, and the tabs
carry on when the leader closes or is frozen. The election and relay without a browser are
checked by tests/browser/shared-unit.mjs (test_browser_client.py).
"""

import re
import subprocess

from harness import Tap, Stack
from browser import BrowserRun, skip_all_unless_runnable


class TabsRun(BrowserRun):
    def ctl_streams(self, req):
        """The event streams the FastCGI hubs hold, from /metrics (sse, longpoll), and the TCP
        connections established to lighttpd, for the diagnosis."""
        r = self.st.request("GET", "/api/v1/metrics")
        out = {}
        for kind in ("sse", "longpoll"):
            m = re.search(r'^imagetools_connections_open\{transport="%s"\}\s+(\d+)' % kind, r.body.decode(), re.M)
            out[kind] = int(m.group(1)) if m else None
        ss = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % self.st.port],
                            capture_output=True, text=True)
        out["tcp"] = len([line for line in ss.stdout.splitlines() if line.strip()]) if ss.returncode == 0 else None
        return out


skip_all_unless_runnable()
tap = Tap()
with Stack(tap) as st:
    TabsRun(tap, st).run("tabs.mjs")
tap.done()
