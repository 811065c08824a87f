#!/usr/bin/env python3
"""bench/soak.py: hold many SSE streams and WebSocket connections open for a long time while
events flow, sampling the resident memory of imagetools.fcgi, lighttpd and the bridge; it
must stay flat. Not part of make check (it runs for minutes).

    python3 bench/soak.py [--builddir build] [--minutes 10] [--sse 2000] [--ws 2000] [--rate 20]

Prints one line per sample and, at the end, each process's growth from the first sample
after the connections opened to the last, and whether every client got every event.
Traffic goes to 127.0.0.1 only; the run is bounded by --minutes.
"""

import argparse
import os
import resource
import selectors
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
sys.path.insert(0, HERE)

import harness  # noqa: E402
from harness import Stack, Tap  # noqa: E402
from streams import Client, rss_kb  # noqa: E402
from wsclient import WsClient  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--builddir", default=os.path.join(HERE, "..", "build"))
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--sse", type=int, default=2000)
    ap.add_argument("--ws", type=int, default=2000)
    ap.add_argument("--sessions", type=int, default=50)
    ap.add_argument("--rate", type=float, default=20, help="events per second, spread over the sessions")
    ap.add_argument("--sample", type=float, default=10, help="seconds between memory samples")
    args = ap.parse_args()
    harness.BUILDDIR = os.path.abspath(args.builddir)
    harness.SRCDIR = os.path.abspath(os.path.join(HERE, ".."))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    tap = Tap()
    with Stack(tap, own_cluster=True, bridge=True, settings={"log_level": "warn", "max_streams": 20000}) as st:
        sessions = [st.new_session() for _ in range(args.sessions)]
        sel = selectors.DefaultSelector()
        sse = [Client("sse", st.port, sessions[i % len(sessions)]) for i in range(args.sse)]
        for c in sse:
            c.start(sel)
        ws = []
        for i in range(args.ws):
            w = WsClient.connect("127.0.0.1", st.bridge_port, "/api/v1/ws/" + sessions[i % len(sessions)])
            w.sock.setblocking(False)
            w.session = sessions[i % len(sessions)]
            w.buf = bytes(w.buf)  # frames that came with the handshake
            w.count = 0
            ws.append(w)
            sel.register(w.sock, selectors.EVENT_READ, w)

        def pump(seconds):
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for key, _ in sel.select(timeout=0.05):
                    obj = key.data
                    if isinstance(obj, Client):
                        obj.on_readable(sel)
                        continue
                    try:
                        data = obj.sock.recv(65536)
                    except BlockingIOError:
                        continue
                    if not data:
                        sel.unregister(obj.sock)
                        continue
                    # Frames from the server are unmasked text; count the events in them.
                    obj.buf += data
                    while len(obj.buf) >= 2:
                        n, off = obj.buf[1] & 0x7F, 2
                        if n == 126:
                            if len(obj.buf) < 4:
                                break
                            n, off = int.from_bytes(obj.buf[2:4], "big"), 4
                        elif n == 127:
                            if len(obj.buf) < 10:
                                break
                            n, off = int.from_bytes(obj.buf[2:10], "big"), 10
                        if len(obj.buf) < off + n:
                            break
                        payload = obj.buf[off:off + n]
                        opcode = obj.buf[0] & 0x0F
                        if opcode == 1 and b'"id":' in payload:
                            obj.count += 1
                        elif opcode == 9:
                            obj.send_frame(10, payload)  # a live client answers pings
                        obj.buf = obj.buf[off + n:]

        pump(5)
        procs = {"imagetools.fcgi": st.fcgi_pids()[0], "lighttpd": st.lighttpd.pid, "wsbridge": st.bridge.pid}
        first = {k: rss_kb(p) for k, p in procs.items()}
        print("connections open: %d SSE, %d WebSocket; RSS KiB %s" % (args.sse, args.ws, first), flush=True)
        sent = {s: 0 for s in sessions}
        end = time.monotonic() + args.minutes * 60
        next_sample = time.monotonic() + args.sample
        per_tick = max(1, int(args.rate / 4))
        i = 0
        while time.monotonic() < end:
            batch = [sessions[(i + k) % len(sessions)] for k in range(per_tick)]
            i += per_tick
            st.sql("".join("SELECT it_append_event('%s', 'soak.tick', '{}');\n" % s for s in batch))
            for s in batch:
                sent[s] += 1
            pump(0.25)
            if time.monotonic() >= next_sample:
                next_sample += args.sample
                now = {k: rss_kb(p) for k, p in procs.items()}
                print("t=%6.0fs RSS KiB %s" % (args.minutes * 60 - (end - time.monotonic()), now), flush=True)
        pump(10)
        last = {k: rss_kb(p) for k, p in procs.items()}
        want_sse = sum(sent[c.session] for c in sse)
        got_sse = sum(len(c.seen) for c in sse)
        want_ws = sum(sent[w.session] for w in ws)
        got_ws = sum(w.count for w in ws)
        short = [(w.session[:6], w.count, sent[w.session]) for w in ws if w.count != sent[w.session]]
        if short:
            print("WebSocket clients short of events: %d, e.g. %r" % (len(short), short[:5]))
        print("\nevents: SSE %d/%d, WebSocket %d/%d" % (got_sse, want_sse, got_ws, want_ws))
        for k in procs:
            print("%-16s first %8d KiB  last %8d KiB  growth %+6.1f%%" % (
                k, first[k], last[k], 100.0 * (last[k] - first[k]) / max(1, first[k])))
        return 0 if (got_sse, got_ws) == (want_sse, want_ws) else 1


if __name__ == "__main__":
    sys.exit(main())
