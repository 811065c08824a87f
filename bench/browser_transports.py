#!/usr/bin/env python3
"""bench/browser_transports.py: the three transports as a browser sees them. In one Chromium page,
one RealtimeClient per transport (WebSocket through the bridge, SSE, long-poll) follows the same
session; events are committed every --interval ms and each client records the time from commit
to its handler. Prints connect time and latency percentiles per transport, with the WebSocket
(or, without a bridge, SSE) as the baseline of the same run.

    python3 bench/browser_transports.py [--builddir build] [--events 100] [--interval 50]

Needs what the browser tests need (node, tests/browser/node_modules, /usr/bin/chromium).
Loopback only; bounded by --events.
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--builddir", default=os.path.join(HERE, "..", "build"))
ap.add_argument("--events", type=int, default=100)
ap.add_argument("--interval", type=int, default=50)
args = ap.parse_args()
os.environ["IT_BUILDDIR"] = os.path.abspath(args.builddir)
os.environ.setdefault("IT_SRCDIR", os.path.abspath(os.path.join(HERE, "..")))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import Stack, Tap  # noqa: E402
from browser import BrowserRun, skip_all_unless_runnable  # noqa: E402

skip_all_unless_runnable()
tap = Tap()
with Stack(tap, bridge=True) as st:
    BrowserRun(tap, st).run("bench-transports.mjs", env={"IT_BENCH_EVENTS": str(args.events),
                                                         "IT_BENCH_INTERVAL_MS": str(args.interval)})
tap.done()
