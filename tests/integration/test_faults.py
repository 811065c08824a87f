"""test_faults.py: the fault suite. While clients follow one session over WebSocket, SSE and
long-poll and uploads keep coming, the test restarts PostgreSQL, kills the FastCGI process,
kills and restarts the bridge, restarts lighttpd, kills a worker in the middle of an
operation, drops clients abruptly and stalls one. Afterwards every client must hold every
event of the session exactly once after dropping repeats by id (so no gap and no
reordering), no image may be half-stored, no operation stuck, and every process serving."""

import os
import signal
import socket
import threading
import time

from harness import Stack, Tap, wait_for
from sseclient import SSEStream
from worker_util import _multipart, jpeg_bytes
from wsclient import WsClient

tap = Tap()


class Follower(threading.Thread):
    """Follows the session forever on one transport, reconnecting from its last id."""

    def __init__(self, st, sid, kind):
        threading.Thread.__init__(self, daemon=True)
        self.st, self.sid, self.kind = st, sid, kind
        self.ids = []
        self.stop = False
        self.stall_until = 0.0
        self.reconnects = 0
        self.conn = None

    def last(self):
        return max(self.ids) if self.ids else 0

    def take(self, ev):
        if ev and isinstance(ev.get("id"), int):
            self.ids.append(ev["id"])

    def drop(self):
        """Closes the connection under the client's feet, as a network failure would."""
        c = self.conn
        try:
            sock = c.sock if c is not None else None
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def run(self):
        while not self.stop:
            try:
                getattr(self, "follow_" + self.kind)()
            except Exception:
                pass
            self.conn = None
            self.reconnects += 1
            time.sleep(0.2)

    def follow_sse(self):
        s = SSEStream(self.st.port, self.sid, last_event_id=self.last(), timeout=5)
        self.conn = s
        if s.status != 200:
            s.close()
            return
        try:
            while not self.stop and not s.closed:
                if time.monotonic() < self.stall_until:
                    time.sleep(0.1)
                    continue
                n = len(s.parser.events)
                s.read_until(lambda x: len(x.parser.events) > n, timeout=1)
                for ev in s.parser.events[n:]:
                    self.take(ev["json"])
        finally:
            s.close()

    def follow_longpoll(self):
        r = self.st.request("GET", "/api/v1/events?session_id=%s&cursor=%d&timeout=3" % (self.sid, self.last()),
                            timeout=10)
        if r.status != 200:
            time.sleep(0.3)
            return
        for ev in r.json().get("events", []):
            self.take(ev)

    def follow_ws(self):
        ws = WsClient.connect("127.0.0.1", self.st.port, "/api/v1/ws/%s?last_event_id=%d" % (self.sid, self.last()),
                              timeout=5)
        self.conn = ws
        try:
            while not self.stop:
                try:
                    self.take(ws.recv_json(timeout=1.0))
                except TimeoutError:
                    continue
        finally:
            ws.abort()


class Uploader(threading.Thread):
    """Uploads small JPEGs one after another, retrying what fails, like the phone app does."""

    def __init__(self, st, sid):
        threading.Thread.__init__(self, daemon=True)
        self.st, self.sid = st, sid
        self.stop = False
        self.stored = 0
        self.failed_tries = 0
        self.data = jpeg_bytes(64, 48, seed=7)

    def run(self):
        body = _multipart(self.sid, "fault.jpg", self.data)
        while not self.stop:
            try:
                r = self.st.request("POST", "/api/v1/images", body=body, timeout=10,
                                    headers={"Content-Type": "multipart/form-data; boundary=itboundary"})
                if r.status == 201:
                    self.stored += 1
                else:
                    self.failed_tries += 1
            except Exception:
                self.failed_tries += 1
            time.sleep(0.15)


def exactly_once(ids, n):
    seen, order = set(), []
    for i in ids:
        if i not in seen:
            seen.add(i)
            order.append(i)
    return order == list(range(1, n + 1))


def health_ok(st):
    try:
        return st.request("GET", "/api/v1/health", timeout=3).status == 200
    except Exception:
        return False


with Stack(tap, own_cluster=True, bridge=True, worker=True,
           settings={"worker_lease": 5, "keepalive_interval": 2}) as st:
    sid = st.new_session()
    followers = [Follower(st, sid, k) for k in ("ws", "sse", "longpoll", "sse", "ws")]
    for f in followers:
        f.start()
    up = Uploader(st, sid)
    up.start()

    def settle(what):
        wait_for(lambda: health_ok(st), timeout=30, what=what)
        time.sleep(1.5)

    time.sleep(2)
    # 1. PostgreSQL restarts.
    st.pg.stop()
    time.sleep(1.5)
    st.pg.start()
    settle("the API after the PostgreSQL restart")
    tap.ok(health_ok(st), "serving after a PostgreSQL restart")

    # 2. The FastCGI process is killed; lighttpd starts a new one.
    before = st.fcgi_pids()
    st.kill_fcgi(signal.SIGKILL)
    settle("a new FastCGI process")
    tap.ok(st.fcgi_pids() and st.fcgi_pids() != before, "a new FastCGI process serves after kill -9")

    # 3. The bridge is killed and started again.
    st.bridge.kill()
    st.bridge.wait()
    time.sleep(1.0)
    st.start_bridge()
    settle("the bridge to return")
    tap.ok(st.bridge.poll() is None, "the bridge serves again after kill -9 and restart")

    # 4. lighttpd restarts.
    st.restart_lighttpd()
    settle("lighttpd to return")
    tap.ok(health_ok(st), "serving after a lighttpd restart")

    # 5. A worker is killed in the middle of an operation; another finishes it after the lease.
    images = []
    body = _multipart(sid, "big.jpg", jpeg_bytes(1600, 1200, seed=3))
    for _ in range(6):
        r = st.request("POST", "/api/v1/images", body=body,
                       headers={"Content-Type": "multipart/form-data; boundary=itboundary"})
        if r.status == 201:
            images.append(r.json()["images"][0]["id"])
    r = st.request("POST", "/api/v1/operations",
                   body={"session_id": sid, "type": "bulk_compress", "image_ids": images, "params": {"quality": 40}})
    tap.is_(r.status, 202, "bulk compress accepted")
    op = r.json().get("operation_id")
    wait_for(lambda: st.sql("SELECT status FROM operations WHERE id = :'p1'", op) == "running", timeout=20,
             what="the operation to start")
    st.worker.kill()
    st.worker.wait()
    st.start_worker()
    wait_for(lambda: st.sql("SELECT status FROM operations WHERE id = :'p1'", op) in ("completed", "failed"),
             timeout=60, what="the operation to finish after the lease")
    tap.is_(st.sql("SELECT status FROM operations WHERE id = :'p1'", op), "completed",
            "the operation a killed worker held is finished by another")

    # 6. Clients dropped abruptly, and one consumer stalled while events keep coming.
    for f in followers[:3]:
        f.drop()
    followers[3].stall_until = time.monotonic() + 4
    time.sleep(5)

    up.stop = True
    up.join(timeout=15)
    tap.ok(up.stored >= 10, "uploads kept flowing around the faults (%d stored, %d tries failed)"
           % (up.stored, up.failed_tries))
    n = int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))
    for f in followers:
        wait_for(lambda: f.ids and max(f.ids) >= n, timeout=30, what="%s to catch up" % f.kind)
    for f in followers:
        f.stop = True
    for i, f in enumerate(followers):
        ok = exactly_once(f.ids, n)
        tap.ok(ok, "%s client %d has all %d events exactly once after dedupe by id (%d reconnects, %d repeats)"
               % (f.kind, i + 1, n, f.reconnects, len(f.ids) - len(set(f.ids))))
        if not ok:
            missing = sorted(set(range(1, n + 1)) - set(f.ids))
            tap.diag("missing: %r" % missing[:20])
    tap.ok(all(f.reconnects >= 1 for f in followers), "every client had to reconnect at least once")

    # Nothing half-stored, nothing stuck, everything serving.
    tap.is_(st.sql("SELECT count(*) FROM images i JOIN blobs b ON b.id = i.blob_id"
                   " WHERE b.size <> i.size OR b.sha256 IS DISTINCT FROM i.sha256"
                   " OR (SELECT coalesce(sum(length(c.data)), 0) FROM blob_chunks c WHERE c.blob_id = b.id) <> i.size"),
            "0", "no image is half-stored")
    tap.is_(st.sql("SELECT count(*) FROM blobs b WHERE NOT EXISTS"
                   " (SELECT 1 FROM images i WHERE i.blob_id = b.id OR i.thumb_blob_id = b.id)"),
            "0", "no orphaned bytes")
    tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", sid),
            st.sql("SELECT count(*) FROM events WHERE session_id = :'p1' AND type = 'image.uploaded'", sid),
            "one image.uploaded event per stored image")
    tap.is_(st.sql("SELECT count(*) FROM operations WHERE status NOT IN ('completed', 'failed', 'cancelled')"), "0",
            "no operation stuck")
    tap.ok(health_ok(st), "the API serves")
    ws = WsClient.connect("127.0.0.1", st.port, "/api/v1/ws/%s?last_event_id=%d" % (sid, n - 1))
    tap.is_([e["id"] for e in ws.recv_events(1)], [n], "the bridge serves")
    ws.abort()
    tap.ok(st.worker.poll() is None, "the worker runs")

tap.done()
