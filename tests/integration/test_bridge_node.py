"""test_bridge_node.py: the bridge through lighttpd, spoken to by the npm "ws" client (tests/ws/client.mjs):
events arrive, text and protocol ping/pong, resume by last_event_id, 4004."""

import os
import sys
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import Tap, Stack  # noqa: E402
from nodews import NodeWs, missing  # noqa: E402

tap = Tap()
if missing():
    # scripts/dev check installs it; a bare make check without network may not have it.
    print("1..0 # SKIP " + missing())
    sys.exit(0)


# A 1x1 PNG, for when the upload endpoint is there.
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8cfc0f01f0005000201e221bc33"
                    "0000000049454e44ae426082")


def upload(st, sid):
    """Uploads PNG through POST /api/v1/images; returns the response (404/405 while uploads are not built)."""
    b = uuid.uuid4().hex
    body = ("--%s\r\nContent-Disposition: form-data; name=\"session_id\"\r\n\r\n%s\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"source\"\r\n\r\ncli\r\n"
            "--%s\r\nContent-Disposition: form-data; name=\"file\"; filename=\"dot.png\"\r\n"
            "Content-Type: image/png\r\n\r\n" % (b, sid, b, b)).encode() + PNG + ("\r\n--%s--\r\n" % b).encode()
    return st.request("POST", "/api/v1/images", body=body,
                      headers={"Content-Type": "multipart/form-data; boundary=" + b})


def append(st, sid, n):
    st.sql("\n".join("SELECT it_append_event(:'p1', 'operation.progress', "
                     "json_build_object('progress', %d)::jsonb);" % i for i in range(n)), sid)


with Stack(tap, bridge=True) as st:
    sid = st.new_session()
    base = "ws://127.0.0.1:%d/api/v1/ws/" % st.port
    c = NodeWs()
    try:
        c.cmd(cmd="connect", url=base + sid, origin="http://127.0.0.1:%d" % st.port)
        tap.is_(c.next(), {"open": True}, "ws: connection opens through lighttpd")
        m = c.next()
        tap.ok(m["msg"]["type"] == "connection.status" and m["msg"]["data"]["transport"] == "websocket",
               "ws: connection.status first")

        r = upload(st, sid)
        if r.status == 201:
            ev = c.events(1)[0]
            tap.is_(ev["type"], "image.uploaded", "ws: an upload's image.uploaded frame arrives")
            tap.is_(ev["data"].get("image_id"), r.json()["images"][0]["id"], "ws: for the uploaded image")
            base_id = ev["id"]
        else:
            tap.diag("uploads not available yet (%d): events come from it_append_event" % r.status)
            base_id = 0
        append(st, sid, 3)
        evs = c.events(3)
        tap.is_([e["id"] for e in evs], [base_id + 1, base_id + 2, base_id + 3], "ws: appended events arrive in order")
        tap.is_(evs[2]["data"], {"progress": 2}, "ws: with their data")

        c.cmd(cmd="send", text="ping")
        tap.is_(c.next(), {"msg": "pong"}, "ws: text ping answered with pong")
        c.cmd(cmd="ping", data="hello")
        tap.is_(c.next(), {"pong": "hello"}, "ws: protocol Ping answered with its payload")

        last = evs[-1]["id"]
        c.cmd(cmd="close")
        tap.is_(c.until(lambda m: "close" in m)[-1], {"close": 1000, "reason": ""}, "ws: clean close")
        append(st, sid, 4)
        c.cmd(cmd="connect", url=base + sid + "?last_event_id=%d" % last)
        c.until(lambda m: m.get("open"))
        got = c.events(4)
        tap.is_([e["id"] for e in got], list(range(last + 1, last + 5)), "ws: resume gets exactly the missed events")
        tap.is_(c.quiet(0.5), [], "ws: nothing twice")
        c.cmd(cmd="close")
        c.until(lambda m: "close" in m)

        c.cmd(cmd="connect", url=base + "B" * 32)
        seen = c.until(lambda m: "close" in m)
        tap.is_(seen[-1], {"close": 4004, "reason": "Invalid session"}, "ws: unknown session closed with 4004")

        c.cmd(cmd="connect", url=base + sid, origin="http://elsewhere.example")
        seen = c.until(lambda m: "close" in m or "status" in m)
        tap.ok(any(m.get("status") == 403 for m in seen), "ws: foreign origin gets 403")
    finally:
        c.stop()

tap.done()
