#!/usr/bin/env python3
"""test_browser_deploy.py: the page in Chromium on the other shipped deployments: shared hosting
(Apache mod_cgi, the .htaccess files, everything under /imagetools, no daemons: the client ends
on SSE, whose CGI streams end and resume) and Apache with mod_proxy_fcgi plus the bridge.
Same script as test_browser.py's first part (tests/browser/gallery.mjs).
"""

from apache import ApacheStack, prerequisites
from browser import BrowserRun, skip_all_unless_runnable
from harness import Tap

skip_all_unless_runnable()
why = prerequisites("apache")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
with ApacheStack(tap, mode="cgi", prefix="/imagetools", worker=True) as st:
    tap.diag("Apache mod_cgi under /imagetools")
    BrowserRun(tap, st).run("gallery.mjs", label="apache-cgi")
with ApacheStack(tap, mode="fcgi", bridge=True, worker=True) as st:
    tap.diag("Apache mod_proxy_fcgi with the bridge")
    BrowserRun(tap, st).run("gallery.mjs", label="apache-fcgi")
tap.done()
