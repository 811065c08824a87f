#!/usr/bin/env python3
"""test_browser.py: the web page and the browser client in real Chromium against the real stack.

Two tabs on one session (uploads from the page and from curl appear live in the other with a
notification, hostile names render as text, bulk compress and cancel, QR code, screenshots),
then the transport fallback WebSocket -> SSE -> long-poll and back without losing or repeating
an event. The scripts are tests/browser/gallery.mjs and fallback.mjs; screenshots go to
build/tests/artifacts/.
"""

from harness import Tap, Stack
from browser import BrowserRun, skip_all_unless_runnable

skip_all_unless_runnable()
tap = Tap()
with Stack(tap, bridge=True, worker=True) as st:
    run = BrowserRun(tap, st)
    run.run("gallery.mjs")
    run.run("fallback.mjs")
tap.done()
