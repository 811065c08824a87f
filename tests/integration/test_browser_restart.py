#!/usr/bin/env python3
"""test_browser_restart.py: a page stays open in Chromium while PostgreSQL and lighttpd restart;
its events resume with nothing lost or repeated (tests/browser/restart.mjs). The stack has its
own PostgreSQL cluster, since the test stops and starts it.
"""

from harness import Tap, Stack
from browser import BrowserRun, skip_all_unless_runnable

skip_all_unless_runnable()
tap = Tap()
with Stack(tap, own_cluster=True, bridge=True, worker=True) as st:
    BrowserRun(tap, st).run("restart.mjs")
tap.done()
