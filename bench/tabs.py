#!/usr/bin/env python3
"""bench/tabs.py: many tabs, one connection (web/js/imagetools-shared.js). Starts a stack (private
PostgreSQL, lighttpd over plain HTTP/1.1 with imagetools.fcgi, the bridge started half-way) and
runs bench/tabs.mjs: ten Chromium tabs of one session, shared mode against one connection per
tab, over SSE and then WebSocket (upload to event in the last tab, upload time, streams at the
server); then 1,000 simulated browsers with 5 tabs each as SSE streams to imagetools.fcgi and to
the bridge, 1,000 shared streams against 5,000 (connections, server RSS, delivery latency).

    python3 bench/tabs.py [--builddir build] [--uploads 8] [--browsers 1000] [--tabs 5]

Needs what the browser tests need (node, tests/browser/node_modules, /usr/bin/chromium).
Loopback only; bounded in count and time.
"""

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ap = argparse.ArgumentParser()
ap.add_argument("--builddir", default=os.path.join(HERE, "..", "build"))
ap.add_argument("--uploads", type=int, default=8)
ap.add_argument("--browsers", type=int, default=1000)
ap.add_argument("--tabs", type=int, default=5)
args = ap.parse_args()
os.environ["IT_BUILDDIR"] = os.path.abspath(args.builddir)
os.environ.setdefault("IT_SRCDIR", os.path.abspath(os.path.join(HERE, "..")))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from harness import Stack, Tap  # noqa: E402
from browser import BrowserRun, skip_all_unless_runnable  # noqa: E402


def rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def established(port):
    r = subprocess.run(["ss", "-Htn", "state", "established", "( sport = :%d )" % port], capture_output=True, text=True)
    return len([line for line in r.stdout.splitlines() if line.strip()])


class TabsBench(BrowserRun):
    def ctl_streams(self, req):
        r = self.st.request("GET", "/api/v1/metrics")
        out = {}
        for kind in ("sse", "longpoll"):
            m = re.search(r'^imagetools_connections_open\{transport="%s"\}\s+(\d+)' % kind, r.body.decode(), re.M)
            out[kind] = int(m.group(1)) if m else None
        out["ws"] = established(self.st.bridge_port)
        return out

    def ctl_wait_websocket(self, req):
        end = time.time() + 30
        while time.time() < end:
            r = self.st.request("GET", "/api/v1/health")
            if r.status == 200 and r.json().get("websocket") is True:
                return True
            time.sleep(0.2)
        return False

    def ctl_new_sessions(self, req):
        return [self.new_session() for _ in range(int(req["count"]))]

    def ctl_rss(self, req):
        st = self.st
        out = {"fcgi": sum(rss_kb(p) for p in st.fcgi_pids()), "lighttpd": rss_kb(st.lighttpd.pid)}
        if st.bridge is not None:
            out["bridge"] = rss_kb(st.bridge.pid)
        return out

    def ctl_restart_bridge(self, req):
        self.ctl_bridge_stop(req)
        self.ctl_bridge_start(req)
        return True

    def ctl_conns(self, req):
        return established(int(req["port"]))

    def ctl_publish_each(self, req):
        """One event per session in one transaction, each carrying its insert time (epoch ms)."""
        return int(self.st.sql(
            "SELECT count(it_append_event(s, 'image.deleted', jsonb_build_object('image_id', 'bench', 't', "
            "round(extract(epoch FROM clock_timestamp()) * 1000, 3)))) FROM unnest(string_to_array(:'p1', ',')) s",
            ",".join(req["sessions"])))


soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
skip_all_unless_runnable()
tap = Tap()
with Stack(tap, own_cluster=True, settings={"log_level": "warn", "max_streams": 20000}) as st:
    TabsBench(tap, st).run(os.path.join(HERE, "tabs.mjs"), timeout=1200, env={
        "IT_BENCH_UPLOADS": str(args.uploads), "IT_BENCH_BROWSERS": str(args.browsers), "IT_BENCH_TABS": str(args.tabs),
        "IT_HTTP_PORT": str(st.port), "IT_BRIDGE_PORT": str(st.bridge_port)})
    tap.diag("load average: %s" % json.dumps(os.getloadavg()))
tap.done()
