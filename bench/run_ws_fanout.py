#!/usr/bin/env python3
"""run_ws_fanout.py: starts a throwaway stack (PostgreSQL, bridge) and runs bench/ws_fanout scenarios.

    python3 bench/run_ws_fanout.py [BUILDDIR] [--quick]

Runs, against one bridge process on 127.0.0.1 (not through lighttpd):
  10,000 clients on 1 session, 50 events at 5/s and at 20/s (fan-out to one session)
  10,000 clients on 1,000 sessions, 2,000 events at 200/s (spread across sessions)
--quick runs 1,000 clients instead. Prints the benchmark's lines for docs/performance.md.
"""
import os
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
args = [a for a in sys.argv[1:] if not a.startswith("--")]
build = os.path.abspath(args[0] if args else os.path.join(HERE, "..", "build"))
os.environ.setdefault("IT_BUILDDIR", build)
os.environ.setdefault("IT_SRCDIR", os.path.abspath(os.path.join(HERE, "..")))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import Tap, Stack  # noqa: E402

soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
n = 1000 if "--quick" in sys.argv else 10000
scenarios = [(n, 1, 50, 5), (n, 1, 50, 20), (n, n // 10, 2000, 200)]

tap = Tap()
rc = 0
with Stack(tap, own_cluster=True, bridge=True, settings={"log_level": "warn", "max_streams_per_session": 20000,
                                                                  "rate_streams": 0}) as st:
    for clients, sessions, events, rate in scenarios:
        # A fresh bridge each time, so that its RSS growth is this scenario's.
        st.bridge.terminate()
        st.bridge.wait()
        st.start_bridge()
        print("## %d clients, %d session(s), %d events at %d/s" % (clients, sessions, events, rate))
        r = subprocess.run([os.path.join(build, "bench", "ws_fanout"), "--bridge", "127.0.0.1:%d" % st.bridge_port,
                            "--db", st.conninfo, "--pid", str(st.bridge.pid), "--clients", str(clients),
                            "--sessions", str(sessions), "--events", str(events), "--rate", str(rate)],
                           timeout=600)
        tap.is_(r.returncode, 0, "every frame delivered exactly once")
        rc |= r.returncode
tap.done()
