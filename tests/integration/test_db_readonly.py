"""test_db_readonly.py: the database turns read-only under the running stack (as when a failover
leaves its connections on a demoted primary, or `ALTER DATABASE ... SET default_transaction_read_only`)
and back. While it refuses writes, writes get 503 problem+json and store nothing; once it takes them
again, imagetools.fcgi and the worker recover on their own, within a bounded number of tries,
without anything being restarted or any connection killed from outside."""

import json
import threading

from harness import Stack, Tap, psql, wait_for
import worker_util as wu

tap = Tap()

THREADS = 2
# At most this many requests may still fail once the database takes writes again: one per request
# thread whose connection was opened while it was read-only, and one more.
GRACE = THREADS + 1
SETTINGS = {"threads": THREADS, "worker_lease": 5, "thumbnail_size": 64}


def admin(st, sql):
    """Runs sql from the postgres database: sessions in the test's own database are read-only
    while the setting is on, and ALTER DATABASE cannot run in a read-only transaction."""
    return psql(st.sockdir, st.pgport, "postgres", sql)


def set_read_only(st, on):
    admin(st, "ALTER DATABASE %s SET default_transaction_read_only = %s" % (st.dbname, "on" if on else "off"))


def kill_sessions(st):
    """Ends every session on the test's database: the servers reconnect, and their new sessions
    take the database's current default_transaction_read_only."""
    admin(st, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
              " AND pid <> pg_backend_pid()" % st.dbname)


def create_session(st):
    return st.request("POST", "/api/v1/sessions", body=b"", headers={"Content-Length": "0"})


def upload(st, sid, data):
    return st.request("POST", "/api/v1/images", body=wu._multipart(sid, "p.jpg", data),
                      headers={"Content-Type": "multipart/form-data; boundary=itboundary"})


def concurrently(n, fn):
    """Runs fn() n times at once (so that every request thread serves some) and returns the results."""
    out = [None] * n

    def run(i):
        try:
            out[i] = fn()
        except Exception as e:  # a failed request is a result here, not a crash of the test
            out[i] = e

    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


def recovers(statuses, want):
    """True when, after at most GRACE failures at the start, every status is want."""
    tail = statuses[GRACE:]
    return len(tail) > 0 and all(s == want for s in tail)


JPEG = wu.jpeg_bytes(96, 64, 90, seed=3)

with Stack(tap, settings=SETTINGS, worker=True) as st:
    sid = st.new_session()
    img = wu.put_image(st, sid, JPEG)
    tap.ok(img, "an image to work on")
    before = st.sql("SELECT count(*) FROM sessions")

    # ------------------------------------------------------------ read-only
    set_read_only(st, True)
    kill_sessions(st)
    # Every request thread connects again, now into a read-only session.
    got = concurrently(4 * THREADS, lambda: create_session(st))
    statuses = [getattr(r, "status", None) for r in got]
    tap.is_(statuses, [503] * len(got), "while the database is read-only, POST /sessions answers 503")
    st.is_problem(create_session(st), 503, "POST /sessions on a read-only database")
    st.is_problem(upload(st, sid, JPEG), 503, "an upload (a write inside a transaction) on a read-only database")
    tap.is_(st.sql("SELECT count(*) FROM sessions"), before, "nothing was stored")
    tap.is_(st.sql("SELECT count(*) FROM images"), "1", "no image was stored")
    r = st.request("GET", "/api/v1/sessions/" + sid)
    tap.is_(r.status, 200, "reads still work on a read-only database")

    # The worker reconnected too, into a read-only session: its claims fail.
    wait_for(lambda: "read-only transaction" in open(st.dir + "/worker.log", errors="replace").read(),
             timeout=30, what="the worker to meet the read-only database")

    # ------------------------------------------------------------ writable again
    set_read_only(st, False)
    statuses = [create_session(st).status for _ in range(GRACE + 3 * THREADS)]
    tap.ok(recovers(statuses, 201), "POST /sessions succeeds again within %d tries, nothing restarted" % GRACE)
    tap.diag("statuses after the database took writes again: %r" % statuses)
    got = concurrently(4 * THREADS, lambda: create_session(st))
    tap.is_([getattr(r, "status", None) for r in got], [201] * len(got),
            "every request thread writes again (concurrent POST /sessions)")
    statuses = [upload(st, sid, JPEG).status for _ in range(GRACE + THREADS)]
    tap.ok(recovers(statuses, 201), "uploads succeed again")
    tap.diag("upload statuses: %r" % statuses)

    # The worker: an operation queued now is run, without restarting the worker.
    r = st.request("POST", "/api/v1/operations",
                   body={"session_id": sid, "type": "bulk_compress", "image_ids": [img], "params": {"quality": 50}})
    tap.is_(r.status, 202, "an operation is accepted")
    op = r.json().get("operation_id") or r.json().get("id") if r.status == 202 else None

    def op_done():
        o = st.request("GET", "/api/v1/operations/%s" % op, headers={"Authorization": "Bearer " + sid}).json()
        return o.get("status") in ("completed", "failed", "cancelled") and o

    done = None
    if op:
        try:
            done = wait_for(op_done, timeout=60, interval=0.25, what="the operation to finish")
        except Exception as e:
            tap.diag(str(e))
    tap.is_((done or {}).get("status"), "completed", "the worker ran it once the database took writes again")
    tap.ok(st.worker.poll() is None, "the worker is still the same process")

tap.done()
