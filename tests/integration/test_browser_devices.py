#!/usr/bin/env python3
"""test_browser_devices.py: devices in real Chromium (tests/browser/devices.mjs) against the real
stack with the WebSocket bridge: a phone context pairs by the QR code (read by zbarimg), uploads,
and the desktop sees its presence and its image; a view-only tablet follows the gallery over its
own stream; the desktop revokes both: the tablet's stream is closed, the phone's next upload is
refused and nothing is stored; an upload-only token cannot list or download; no request URL of
any page carries the session id or a token."""

from harness import Tap, Stack
from browser import BrowserRun, skip_all_unless_runnable

skip_all_unless_runnable()
tap = Tap()
with Stack(tap, bridge=True) as st:
    BrowserRun(tap, st).run("devices.mjs", timeout=240)
tap.done()
