"""test_slow_stream.py: a Server-Sent Events client that stops reading. The hub holds
back its events once its buffer is half full, drops it after stream_stall_timeout, and
the client resumes by id with nothing lost or repeated; a reading client on the same
session is not held up meanwhile."""

import threading

from harness import Stack, Tap, wait_for
from sseclient import SSEStream

tap = Tap()

EVENTS = 12000
PAD = "x" * 900  # about 1 KiB an event: 12 MB in all, past the kernel buffers (up to 4 MiB a socket)


def eventually(pred, timeout):
    try:
        return wait_for(pred, timeout=timeout, interval=0.2)
    except TimeoutError:
        return False


def span(ids):
    return "%d events, %s..%s" % (len(ids), ids[0] if ids else "-", ids[-1] if ids else "-")


def hub(st):
    return st.request("GET", "/api/v1/health").json()["hub"]


settings = {"stream_buffer": 8192, "stream_stall_timeout": 2, "keepalive_interval": 1}
with Stack(tap, own_cluster=True, settings=settings) as st:
    sid = st.new_session()
    slow = SSEStream(st.port, sid, rcvbuf=4096)
    fast = SSEStream(st.port, sid)
    tap.is_((slow.status, fast.status), (200, 200), "two streams open on one session")

    def commit_events():
        # In batches of 200, each batch one transaction, while the reader reads.
        for first in range(0, EVENTS, 200):
            st.sql("".join("SELECT it_append_event(:'p1', 'image.uploaded', jsonb_build_object('n', %d, 'pad', '%s'));\n"
                           % (i, PAD) for i in range(first, first + 200)), sid)

    writer = threading.Thread(target=commit_events)
    writer.start()
    fast.read_until(lambda s: len(s.ids()) >= EVENTS, timeout=120)
    writer.join()
    tap.ok(fast.ids() == list(range(1, EVENTS + 1)),
           "the reading client gets every event in order meanwhile (%s)" % span(fast.ids()))

    tap.ok(eventually(lambda: hub(st)["dropped_slow"] >= 1, 30),
           "the stream that stopped reading is dropped after stream_stall_timeout")
    tap.is_(hub(st)["sse_streams"], 1, "and only that one: the reading stream stays open")

    # The stalled client now reads what reached it: a prefix, then the end of the response.
    slow.read_until(lambda s: False, timeout=30)
    got = slow.ids()
    tap.ok(slow.closed, "the server ended the stalled client's response")
    tap.ok(0 < len(got) < EVENTS, "it had received part of the events (%d of %d)" % (len(got), EVENTS))
    tap.ok(got == list(range(1, len(got) + 1)), "a gap-free prefix, in order (%s)" % span(got))

    again = SSEStream(st.port, sid, last_event_id=got[-1] if got else 0)
    again.read_until(lambda s: len(s.ids()) >= EVENTS - len(got), timeout=60)
    tap.ok(got + again.ids() == list(range(1, EVENTS + 1)),
           "resuming from its last id brings the rest: every event exactly once (%s, then %s)"
           % (span(got), span(again.ids())))
    for s in (slow, fast, again):
        s.close()

tap.done()
