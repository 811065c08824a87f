"""test_repoll_cost.py: what a long-poll re-poll or an SSE resume costs the database when the
hub follows the session. Counted from PostgreSQL's own statement log: re-polls and resumes at
the newest cursor (with or without timeout=0) send no session look-up and no read from the
request thread, and the hub takes small events from their notifications without reading them;
a cursor behind the newest id whose next event the hub's ring holds costs no look-up either
(the ring answers with events that were in the log, whatever a prune committed meanwhile).
A cursor pruned away still gets session.resync cursor-expired, now from the hub's registry
(pruning announces the first kept id); a cursor ahead of the log still goes to the database;
a deleted session is 404 at once."""

import json
import os
import threading
import time

from harness import Stack, Tap, wait_for
from sseclient import SSEStream

tap = Tap()
ROUNDS = 30
# The statements a request thread sends for a poll or a resume (src/db/sessions.c, eventlog.c).
LOOKUP = "FROM sessions WHERE id = $1"
READ = "FROM events e WHERE"


def append(st, sid, n):
    st.sql("".join("SELECT it_append_event(:'p1', 'image.uploaded', '{\"n\": %d}'::jsonb);\n" % i
                   for i in range(n)), sid)
    return int(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid))


def longpoll(st, sid, cursor, timeout=10):
    r = st.request("GET", "/api/v1/events?session_id=%s&cursor=%d&timeout=%d" % (sid, cursor, timeout),
                   timeout=timeout + 20)
    return r, (r.json() if r.status == 200 else None)


def waiters(st):
    return st.request("GET", "/api/v1/health").json()["hub"]["longpoll_waiters"]


class StatementLog:
    """Counts the request threads' statements in PostgreSQL's log from a mark on."""

    def __init__(self, st):
        self.path = st.pg.log
        self.mark()

    def mark(self):
        self.start = os.path.getsize(self.path)

    def count(self):
        with open(self.path, errors="replace") as f:
            f.seek(self.start)
            text = f.read()
        stmts = [ln for ln in text.splitlines() if "LOG:  execute" in ln or "LOG:  statement:" in ln]
        return sum(1 for ln in stmts if LOOKUP in ln), sum(1 for ln in stmts if READ in ln)


def parked_poll(st, sid, cursor, then):
    """Parks a long-poll at cursor, runs then() once the hub holds it, returns the answer."""
    got = {}
    th = threading.Thread(target=lambda: got.update(zip(("r", "b"), longpoll(st, sid, cursor))))
    th.start()
    wait_for(lambda: waiters(st) >= 1, timeout=10, what="the long-poll to be parked")
    then()
    th.join(30)
    return got.get("b") or {}


with Stack(tap, own_cluster=True, settings={"rate_streams": 0, "keepalive_interval": 20}) as st:
    sid = st.new_session()
    last = append(st, sid, 3)
    # The first poll of the session is looked up in the database; its stream makes the hub follow
    # the session (one check by the hub, not by the request thread).
    r, b = longpoll(st, sid, last, timeout=1)
    tap.is_((b or {}).get("events"), [], "a first poll at the newest cursor waits and answers empty")

    st.sql("ALTER SYSTEM SET log_statement = 'all'")
    st.sql("SELECT pg_reload_conf()")
    time.sleep(0.5)
    log = StatementLog(st)

    # --- N long-poll rounds: park at the newest id, one event commits, the answer carries it.
    hub_reads = st.request("GET", "/api/v1/health").json()["hub"]["reads"]
    cursor, got, order_ok = last, [], True
    for k in range(ROUNDS):
        b = parked_poll(st, sid, cursor, lambda: append(st, sid, 1))
        ids = [e["id"] for e in b.get("events", [])]
        if not ids or ids[0] != cursor + 1:
            order_ok = False
        got += b.get("events", [])
        cursor = b.get("cursor", cursor)
    last = cursor
    tap.ok(order_ok and [e["id"] for e in got] == list(range(4, 4 + ROUNDS)),
           "%d re-polls: every event once, in order" % ROUNDS)
    hub_reads = st.request("GET", "/api/v1/health").json()["hub"]["reads"] - hub_reads
    tap.ok(hub_reads <= 2, "the hub took the events from their notifications: %d reads for %d events"
           % (hub_reads, ROUNDS))

    # --- at once (timeout=0) and an SSE resume, both at the newest id.
    r, b = longpoll(st, sid, last, timeout=0)
    tap.is_(b, {"events": [], "cursor": last}, "timeout=0 at the newest id answers empty at once")
    s = SSEStream(st.port, sid, last_event_id=last)
    s.read_until(lambda s: len(s.parser.events) >= 1, timeout=10)
    tap.is_([e["type"] for e in s.parser.events], ["connection.status"], "an SSE resume at the newest id opens")
    s.close()
    lookups, reads = log.count()
    tap.diag("request-thread statements over %d polls and a resume at the newest id: %d look-ups, %d reads"
             % (ROUNDS + 1, lookups, reads))
    tap.ok(lookups <= 1, "re-polls and resumes of a followed session send no session look-up (%d)" % lookups)
    tap.is_(reads, 0, "and no read from the request thread")

    # --- behind the newest id, inside the hub's ring: the ring answers, with no look-up.
    log.mark()
    r, b = longpoll(st, sid, last - 5)
    tap.is_([e["id"] for e in b["events"]], list(range(last - 4, last + 1)),
            "a re-poll behind the newest id gets exactly the rest")
    s = SSEStream(st.port, sid, last_event_id=last - 3)
    s.read_until(lambda s: len(s.ids()) >= 3, timeout=10)
    tap.is_(s.ids(), list(range(last - 2, last + 1)), "an SSE resume 3 behind gets exactly the rest")
    s.close()
    tap.is_(log.count(), (0, 0), "both answered from the hub's ring: no look-up, no read from the request thread")
    stored = [json.loads(j) for j in st.sql("SELECT it_event_json(e) FROM events e WHERE session_id = :'p1'"
                                            " AND seq > 3 AND seq <= :'p2' ORDER BY seq", sid, 3 + ROUNDS).splitlines()]
    tap.ok(got == stored, "the events of the %d rounds are exactly what a read of the log gives" % ROUNDS)

    # --- pruning: the hub hears of the new first kept id and answers cursor-expired itself.
    st.sql("UPDATE events SET created_at = now() - interval '1 hour' WHERE session_id = :'p1' AND seq <= :'p2'",
           sid, last - 3)
    tap.is_(st.sql("SELECT it_prune_events(60, 100)"), str(last - 3), "the old events are pruned")
    # Notifications arrive in commit order: once a parked poll has the next event, the hub has
    # also handled the prune's.
    b = parked_poll(st, sid, last, lambda: append(st, sid, 1))
    tap.is_([e["id"] for e in b.get("events", [])], [last + 1], "the next event arrives")
    last += 1
    first_kept = int(st.sql("SELECT first_kept_seq FROM sessions WHERE id = :'p1'", sid))
    tap.is_(first_kept, last - 3, "first_kept_seq moved past the pruned events")
    log.mark()
    r, b = longpoll(st, sid, 2)
    tap.is_([(e["type"], e["data"]["reason"], e["data"]["last_event_id"]) for e in b["events"]],
            [("session.resync", "cursor-expired", last)], "a pruned cursor gets session.resync cursor-expired")
    tap.is_(b["cursor"], last, "and the cursor to continue from")
    s = SSEStream(st.port, sid, last_event_id=1)
    s.read_until(lambda s: any(e["type"] == "session.resync" for e in s.parser.events), timeout=10)
    tap.ok(any(e["type"] == "session.resync" and '"cursor-expired"' in e["data"] for e in s.parser.events),
           "an SSE resume from a pruned cursor gets it too")
    s.close()
    tap.is_(log.count(), (0, 0), "both answered from the hub's registry: no look-up, no read")
    r, b = longpoll(st, sid, first_kept - 1)
    tap.is_([e["id"] for e in b["events"]], list(range(first_kept, last + 1)),
            "a cursor at first_kept_seq - 1 is still served, without a resync")

    # --- what the hub cannot vouch for still goes to the database.
    log.mark()
    r, b = longpoll(st, sid, last + 5)
    tap.is_([(e["type"], e["data"]["reason"]) for e in b["events"]], [("session.resync", "cursor-ahead")],
            "a cursor ahead of the log gets cursor-ahead")
    tap.is_(log.count()[0], 1, "from a look-up in the database")
    r = st.request("DELETE", "/api/v1/sessions/" + sid)
    tap.is_(r.status, 204, "the session is deleted")
    st.is_problem(st.request("GET", "/api/v1/events?session_id=%s&cursor=%d&timeout=0" % (sid, last)), 404,
                  "a poll right after the delete")
    st.is_problem(st.request("GET", "/api/v1/events/stream?session_id=%s" % sid), 404, "an SSE resume after it")

    st.sql("ALTER SYSTEM RESET log_statement")
    st.sql("SELECT pg_reload_conf()")

tap.done()
