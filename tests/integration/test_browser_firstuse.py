#!/usr/bin/env python3
"""test_browser_firstuse.py: the first minutes with the page in real Chromium, on a site with
public_url set and no WebSocket bridge (tests/browser/firstuse.mjs): the pairing QR code decoded
by zbarimg names public_url; no 404 on page load (favicon, WebSocket); an unknown session is said
rather than replaced; a device joining late sees no old operation; Live / Offline and quick
recovery after the web server returns; an upload retried on its own; the phone layout; Delete asks
first. The loopback warning (no public_url) is checked in gallery.mjs."""

from harness import Tap, Stack
from browser import BrowserRun, skip_all_unless_runnable

PUBLIC_URL = "http://192.0.2.10:8094/"

skip_all_unless_runnable()
tap = Tap()
with Stack(tap, settings={"public_url": PUBLIC_URL}) as st:
    BrowserRun(tap, st).run("firstuse.mjs", env={"IT_PUBLIC_URL": PUBLIC_URL})
tap.done()
