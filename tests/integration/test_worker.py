"""test_worker.py: long operations end to end: POST /operations through lighttpd and imagetools.fcgi,
real imagetools-worker processes and libvips on real JPEGs, events read back from the session's log;
cancellation, corrupt files, a worker killed mid-job, concurrent workers, SIGTERM, --once, and the
housekeeping (expiry warnings, expired sessions, event retention, abandoned jobs)."""

import hashlib
import http.client
import json
import signal
import subprocess
import threading
import time

from harness import Stack, Tap, wait_for
import worker_util as wu

tap = Tap()

# Short lease so a dead worker's job is picked up within seconds; short expiry warning for the
# session.expiring check.
SETTINGS = {"worker_lease": 5, "expiry_warning": 3, "thumbnail_size": 64}

# A few distinct photo-like JPEGs at quality 95: compressing to 75 must shrink them.
BASE = [wu.jpeg_bytes(640, 480, 95, seed=s) for s in range(3)]
BIG = wu.jpeg_bytes(1600, 1200, 95, seed=7)


def upload(st, sid, n, data_list=BASE):
    return [wu.put_image(st, sid, data_list[i % len(data_list)], filename="img%d.jpg" % i) for i in range(n)]


def upload_big(st, sid, n):
    return wu.put_copies(st, sid, BIG, n, filename="big.jpg")


def events_of(st, sid, op):
    return wu.op_events(wu.events(st, sid), op)


with Stack(tap, settings=SETTINGS) as st:
    # ---------------------------------------------------------------- validation (no worker needed)
    sid = st.new_session()
    other = st.new_session()
    ids = upload(st, sid, 2)
    foreign = upload(st, other, 1)[0]

    def post(body, **kw):
        return st.request("POST", "/api/v1/operations", body=body, **kw)

    base = {"session_id": sid, "type": "bulk_compress", "image_ids": ids, "params": {"quality": 75}}
    b = st.is_problem(post(dict(base, type="bulk_delete")), 400, "unknown type")
    tap.like((b or {}).get("type", ""), "unknown-operation-type$", "unknown type: problem slug")
    b = st.is_problem(post(dict(base, params={"quality": 0})), 400, "quality out of range")
    tap.like((b or {}).get("detail", ""), "between 1 and 100", "the detail names the range")
    st.is_problem(post(dict(base, params={"qualty": 75})), 400, "misspelt parameter")
    st.is_problem(post(dict(base, type="bulk_resize", params={})), 400, "resize without a size")
    st.is_problem(post(dict(base, type="bulk_convert", params={"format": "bmp"})), 400, "convert to bmp")
    st.is_problem(post(dict(base, image_ids=[])), 400, "no images")
    st.is_problem(post(dict(base, image_ids=["not-a-uuid"])), 400, "malformed image id")
    st.is_problem(post(dict(base, image_ids=[ids[0], ids[0]])), 400, "the same image twice")
    b = st.is_problem(post(dict(base, image_ids=[ids[0], foreign])), 404, "image of another session")
    tap.like((b or {}).get("detail", ""), foreign, "the detail names the image")
    st.is_problem(post(dict(base, session_id="A" * 32)), 404, "unknown session")
    st.is_problem(post(dict(base, session_id="bad'id")), 400, "malformed session id")
    st.is_problem(post(dict(base, extra=1)), 400, "unknown field")
    st.is_problem(st.request("POST", "/api/v1/operations", body=b"{\"session_id\": ",
                             headers={"Content-Type": "application/json"}), 400, "truncated JSON")
    st.is_problem(st.request("POST", "/api/v1/operations", body=b"[]",
                             headers={"Content-Type": "application/json"}), 400, "JSON that is not an object")
    st.is_problem(st.request("POST", "/api/v1/operations", body=b"{" + b" " * 70000 + b"}",
                             headers={"Content-Type": "application/json"}), 413, "oversized body")
    tap.is_(st.sql("SELECT count(*) FROM operations"), "0", "refused requests stored nothing")
    tap.is_([e["type"] for e in wu.events(st, sid) if e["type"].startswith("operation.")], [],
            "and sent no event")
    st.is_problem(st.request("GET", "/api/v1/operations/0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b",
                             headers={"Authorization": "Bearer " + sid}), 404,
                  "unknown operation")
    st.is_problem(st.request("GET", "/api/v1/operations/nope"), 404, "malformed operation id")
    st.is_problem(st.request("POST", "/api/v1/operations/0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b/cancel",
                             body=b"", headers={"Content-Length": "0", "Authorization": "Bearer " + sid}), 404, "cancel an unknown operation")

    # ---------------------------------------------------------------- concurrent enqueues on one session

    statuses = []

    def enqueue_one():
        statuses.append(post(dict(base, image_ids=ids[:1])).status)
    threads = [threading.Thread(target=enqueue_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tap.is_(statuses, [202] * 8, "8 concurrent enqueues on one session all succeed")
    started = [e for e in wu.events(st, sid) if e["type"] == "operation.started"]
    tap.is_(len(started), 8, "with one operation.started each")
    for op_id in set(e["data"]["operation_id"] for e in started):
        wu.cancel_operation(st, op_id)
    tap.is_(st.sql("SELECT count(*) FROM operations WHERE status <> 'cancelled'"), "0",
            "(cancelled again before any worker runs)")

    # ---------------------------------------------------------------- a queued operation, cancelled
    r = post(base)
    tap.is_(r.status, 202, "operation accepted with 202")
    op = r.json()
    tap.is_(op.get("status"), "queued", "queued while no worker runs")
    tap.ok(op.get("operation_id") and op.get("operation_id") == op.get("id"), "operation_id returned")
    tap.is_((op.get("total"), op.get("progress")), (2, 0), "total and progress")
    tap.like(r.header("Location") or "", "/api/v1/operations/" + op["id"] + "$", "Location header")
    evs = events_of(st, sid, op["id"])
    tap.is_([e["type"] for e in evs], ["operation.started"], "operation.started committed with the enqueue")
    tap.is_(evs[0]["data"], {"operation_id": op["id"], "operation_type": "bulk_compress", "total": 2},
            "operation.started data")
    r = wu.cancel_operation(st, op["id"])
    tap.is_(r.status, 202, "cancel accepted")
    tap.is_(r.json().get("status"), "cancelled", "a queued operation is cancelled at once")
    evs = events_of(st, sid, op["id"])
    tap.is_([e["type"] for e in evs], ["operation.started", "operation.failed"], "then operation.failed")
    tap.is_(evs[-1]["data"].get("reason"), "cancelled", "with reason cancelled")
    st.is_problem(wu.cancel_operation(st, op["id"]), 409, "cancelling a finished operation")
    tap.is_([wu.image_row(st, i)["version"] for i in ids], [1, 1], "no image was touched")

    # An image deleted after the operation was queued is reported, not fatal.
    sid_del = st.new_session()
    del_ids = upload(st, sid_del, 2)
    op_del = wu.start_operation(st, sid_del, del_ids)
    tap.is_(st.request("DELETE", "/api/v1/images/" + del_ids[1], headers={"Authorization": "Bearer " + sid_del}).status,
            204, "an image deleted while queued")

    # ---------------------------------------------------------------- compress 5 JPEGs
    w1 = st.start_worker("--progress-interval", "0")
    done = wu.wait_operation(st, op_del)
    entry = [x for x in done["result"]["images"] if x["image_id"] == del_ids[1]]
    tap.is_((done["status"], done["result"]["failed"], entry[0]["error"] if entry else None),
            ("completed", 1, "the image no longer exists"), "is reported as failed; the other one is done")
    sid = st.new_session()
    ids = upload(st, sid, 5)
    before = {i: wu.image_bytes(st, i) for i in ids}
    op = wu.start_operation(st, sid, ids, params={"quality": 75, "format": "jpeg"})
    done = wu.wait_operation(st, op)
    tap.is_(done["status"], "completed", "compress completed")
    tap.is_((done["progress"], done["current"], done["done"], done["total"]), (100, 5, 5, 5), "progress 100, 5 of 5")
    evs = [e for e in wu.events(st, sid) if e["type"] != "image.uploaded"]
    ops = [e for e in evs if e["type"].startswith("operation.")]
    tap.is_(ops[0]["type"], "operation.started", "first operation.started")
    tap.is_(ops[-1]["type"], "operation.completed", "last operation.completed")
    prog = [e["data"] for e in ops if e["type"] == "operation.progress"]
    tap.is_(sorted(set(p["current"] for p in prog)), [1, 2, 3, 4, 5], "progress current 1..5")
    tap.ok(all(a["current"] <= b["current"] and a["progress"] <= b["progress"] for a, b in zip(prog, prog[1:])),
           "progress never goes back")
    tap.is_((prog[-1]["progress"], prog[-1]["current"], prog[-1]["total"]), (100, 5, 5), "last progress is 100%")
    tap.like(prog[0].get("message", ""), r"^Compressing image 1 of 5\.\.\.$", "progress message")
    tap.ok(all(p["operation_type"] == "bulk_compress" and p["operation_id"] == op for p in prog),
           "progress names the operation")
    tap.is_([e["id"] for e in evs], sorted(e["id"] for e in evs), "events in order")
    updated = [e["data"]["image_id"] for e in evs if e["type"] == "image.updated"]
    tap.is_(sorted(updated), sorted(ids), "one image.updated per image")
    tap.ok(evs.index(ops[-1]) == len(evs) - 1, "completed comes after every image.updated")
    # The worker signs the new version's URLs: they fetch the new bytes without a credential,
    # and the URL of version 1 (from image.uploaded) is retired.
    first_up = [e["data"] for e in evs if e["type"] == "image.updated"][0]
    r = st.request("GET", first_up.get("file_url", "/"))
    tap.is_((r.status, r.body), (200, wu.image_bytes(st, first_up["image_id"])),
            "image.updated carries a signed URL of the new version that serves its bytes")
    old_url = [e["data"]["file_url"] for e in wu.events(st, sid)
               if e["type"] == "image.uploaded" and e["data"]["image_id"] == first_up["image_id"]]
    tap.is_(st.request("GET", old_url[0] if old_url else "/").status, 403, "the version-1 URL no longer works")
    result = ops[-1]["data"]["result"]
    tap.is_((result.get("succeeded"), result.get("failed")), (5, 0), "summary: 5 succeeded")
    per = {x["image_id"]: x for x in result.get("images", [])}
    shrank = decoded = versioned = True
    for i in ids:
        row = wu.image_row(st, i)
        data = wu.image_bytes(st, i)
        shrank &= len(data) < len(before[i]) and per[i]["bytes_after"] == len(data) == row["size"]
        shrank &= per[i]["bytes_before"] == len(before[i])
        versioned &= row["version"] == 2 and row["sha256"] == hashlib.sha256(data).hexdigest()
        decoded &= wu.decode_size(data) == (640, 480) and (row["width"], row["height"]) == (640, 480)
        decoded &= wu.decode_size(wu.blob_bytes(st, row["thumb_blob_id"]))[0] == 64
    tap.ok(shrank, "every image shrank; the summary has bytes before and after")
    tap.ok(versioned, "each is version 2 with the sha256 of its bytes")
    tap.ok(decoded, "the new files and thumbnails decode")
    tap.ok(result["bytes_after"] < result["bytes_before"], "totals shrank")
    # What a client of the session receives over long-poll is that same log.
    got, cursor = [], 0
    while True:
        r = st.request("GET", "/api/v1/events?session_id=%s&cursor=%d&timeout=1" % (sid, cursor))
        body = r.json()
        got += body["events"]
        if not body["events"]:
            break
        cursor = body["cursor"]
    tap.is_([(e["id"], e["type"], e["data"]) for e in got],
            [(e["id"], e["type"], e["data"]) for e in wu.events(st, sid)], "a long-poll client sees every event")

    # ---------------------------------------------------------------- resize and convert
    op = wu.start_operation(st, sid, ids[:2], "bulk_resize", {"width": 320, "height": 320})
    tap.is_(wu.wait_operation(st, op)["status"], "completed", "resize completed")
    tap.is_(wu.decode_size(wu.image_bytes(st, ids[0])), (320, 240), "resized to fit 320x320")
    op = wu.start_operation(st, sid, ids[:1], "bulk_convert", {"format": "png"})
    tap.is_(wu.wait_operation(st, op)["status"], "completed", "convert completed")
    row = wu.image_row(st, ids[0])
    tap.is_((row["content_type"], wu.image_bytes(st, ids[0])[:8]), ("image/png", b"\x89PNG\r\n\x1a\n"),
            "converted to PNG")

    # ---------------------------------------------------------------- a corrupt image among good ones
    sid = st.new_session()
    good = upload(st, sid, 2)
    bad = wu.put_image(st, sid, BASE[0][:len(BASE[0]) // 3], filename="broken.jpg", width=640, height=480)
    bad_before = wu.image_bytes(st, bad)
    op = wu.start_operation(st, sid, [good[0], bad, good[1]])
    done = wu.wait_operation(st, op)
    tap.is_(done["status"], "completed", "a corrupt image does not stop the operation")
    res = done["result"]
    tap.is_((res["succeeded"], res["failed"], res["failed_image_ids"]), (2, 1, [bad]), "the summary names it")
    entry = [x for x in res["images"] if x["image_id"] == bad][0]
    tap.ok(entry["status"] == "failed" and entry.get("error"), "with a reason: %s" % entry.get("error"))
    tap.is_([wu.image_row(st, i)["version"] for i in good], [2, 2], "the others were done")
    tap.is_(wu.image_bytes(st, bad), bad_before, "the corrupt one is untouched")
    op = wu.start_operation(st, sid, [bad])
    done = wu.wait_operation(st, op)
    tap.is_(done["status"], "failed", "an operation where every image fails is failed")
    tap.is_(events_of(st, sid, op)[-1]["data"].get("reason"), "every image failed", "with its reason")

    # ---------------------------------------------------------------- cancel mid-way
    sid = st.new_session()
    ids = upload_big(st, sid, 30)
    op = wu.start_operation(st, sid, ids)
    wu.wait_done(st, op, 2)
    r = wu.cancel_operation(st, op)
    tap.is_(r.status, 202, "cancel of a running operation accepted")
    done = wu.wait_operation(st, op)
    tap.is_((done["status"], done["error"]), ("cancelled", "cancelled"), "status cancelled, error cancelled")
    n = done["done"]
    tap.ok(2 <= n < 30, "stopped between images (%d of 30 done)" % n)
    versions = [wu.image_row(st, i)["version"] for i in ids]
    tap.is_(versions, [2] * n + [1] * (30 - n), "the remaining images are untouched")
    evs = events_of(st, sid, op)
    tap.is_((evs[-1]["type"], evs[-1]["data"].get("reason")), ("operation.failed", "cancelled"),
            "operation.failed with reason cancelled")
    tap.is_(len(evs[-1]["data"]["result"]["images"]), n, "its result lists the images done")

    # ---------------------------------------------------------------- SIGTERM: finish the image, give the job back
    sid = st.new_session()
    ids = upload_big(st, sid, 20)
    op = wu.start_operation(st, sid, ids)
    wu.wait_done(st, op, 1)
    rc = wu.stop_worker(st, w1, signal.SIGTERM)
    tap.is_(rc, 0, "SIGTERM: the worker exits cleanly")
    row = st.sql("SELECT status || ' ' || coalesce(lease_owner, '-') || ' ' || attempts || ' ' || done"
                 " FROM operations WHERE id = :'p1'", op).split()
    tap.is_(row[:3], ["queued", "-", "0"], "the job is back in the queue, the claim not counted")
    n = int(row[3])
    tap.ok(1 <= n < 20, "with the finished images kept (%d)" % n)
    tap.is_(sum(wu.image_row(st, i)["version"] == 2 for i in ids), n, "no half-done image")

    # --once drains the queue and exits (cron on shared hosting).
    last_seq = wu.events(st, sid)[-1]["id"]
    r = subprocess.run([st.bin("imagetools-worker"), "--once", "--progress-interval", "60000"], env=st.env(),
                       capture_output=True, timeout=120)
    tap.is_(r.returncode, 0, "--once exits 0")
    done = wu.get_operation(st, op)
    tap.is_((done["status"], done["attempts"]), ("completed", 1), "--once finished the released job")
    prog = [e["data"] for e in events_of(st, sid, op) if e["type"] == "operation.progress" and e["id"] > last_seq]
    tap.is_([(p["current"], p["progress"]) for p in prog], [(n + 1, n * 5), (20, 100)],
            "throttled progress: the claim's first image and the final 100% only")
    tap.is_([wu.image_row(st, i)["version"] for i in ids], [2] * 20, "every image once, none twice")
    ups = [e for e in wu.events(st, sid) if e["type"] == "image.updated"]
    tap.is_(len(ups), 20, "one image.updated per image across the two workers")

    # ---------------------------------------------------------------- fairness between sessions
    # One session queues three jobs, then another session one: it runs second, not last.
    busy, light = st.new_session(), st.new_session()
    busy_img, light_img = upload(st, busy, 1), upload(st, light, 1)
    busy_ops = [wu.start_operation(st, busy, busy_img) for _ in range(3)]
    light_op = wu.start_operation(st, light, light_img)
    r = subprocess.run([st.bin("imagetools-worker"), "--once"], env=st.env(), capture_output=True, timeout=120)
    tap.is_(r.returncode, 0, "--once ran the four jobs")
    order = st.sql("SELECT string_agg(id::text, ',' ORDER BY started_at) FROM operations"
                   " WHERE session_id IN (:'p1', :'p2')", busy, light).split(",")
    tap.is_(order, [busy_ops[0], light_op, busy_ops[1], busy_ops[2]],
            "sessions take turns: the other session's job ran second")

    # ---------------------------------------------------------------- kill -9 mid-job: another worker takes over
    wa = st.start_worker()
    sid = st.new_session()
    ids = upload_big(st, sid, 30)
    op = wu.start_operation(st, sid, ids)
    wu.wait_done(st, op, 3)
    wa.kill()
    wa.wait()
    st.procs.remove(wa)
    killed_at = time.monotonic()
    row = wu.get_operation(st, op)
    tap.is_(row["status"], "running", "after kill -9 the job is still running (leased)")
    n = row["done"]
    wb = st.start_worker()
    done = wu.wait_operation(st, op, timeout=90)
    tap.is_((done["status"], done["attempts"]), ("completed", 2), "another worker finished it on the 2nd claim")
    tap.ok(time.monotonic() - killed_at >= 4, "only after the lease ran out")
    tap.is_([wu.image_row(st, i)["version"] for i in ids], [2] * 30, "every image processed exactly once")
    ups = [e["data"]["image_id"] for e in wu.events(st, sid) if e["type"] == "image.updated"]
    tap.is_(sorted(ups), sorted(ids), "one image.updated per image")
    tap.ok(n >= 3 and len(done["result"]["images"]) == 30, "the result keeps the first worker's images too")

    # ---------------------------------------------------------------- workers never share a job
    # Three workers, 24 jobs queued back to back: every job is claimed exactly once.
    wc = st.start_worker()
    wd = st.start_worker()
    sid = st.new_session()
    all_ids = wu.put_copies(st, sid, BASE[1], 48, filename="small.jpg")
    jobs = [wu.start_operation(st, sid, all_ids[k:k + 2]) for k in range(0, 48, 2)]
    finals = [wu.wait_operation(st, j) for j in jobs]
    tap.ok(all(f["status"] == "completed" and f["attempts"] == 1 for f in finals),
           "24 jobs on 3 workers: each completed on its first claim")
    tap.is_(sorted(set(wu.image_row(st, i)["version"] for i in all_ids)), [2], "no image processed twice")
    ups = [e["data"]["image_id"] for e in wu.events(st, sid) if e["type"] == "image.updated"]
    tap.is_(sorted(ups), sorted(all_ids), "one image.updated per image, none twice")
    bad_jobs = []
    for j in jobs:
        types = [e["type"] for e in events_of(st, sid, j)]
        if types[0] != "operation.started" or types[-1] != "operation.completed" or types.count(
                "operation.completed") != 1:
            bad_jobs.append((j, types))
    tap.is_(bad_jobs, [], "each job: started first, completed exactly once and last")
    with open(st.dir + "/worker.log", errors="replace") as f:
        log = f.read()
    tap.is_([log.count("operation %s: bulk_compress" % j) for j in jobs], [1] * len(jobs),
            "the workers' log shows one claim per job")
    wu.stop_worker(st, wd, signal.SIGTERM)

    # One image that takes longer than the 5 s lease (enlarged to 18 megapixels, then PNG): the
    # worker keeps its lease alive while libvips works, so the other idle worker never steals it.
    sid = st.new_session()
    big = upload_big(st, sid, 1)
    op = wu.start_operation(st, sid, big, "bulk_resize", {"width": 5000, "height": 5000, "enlarge": True,
                                                          "format": "png"})
    done = wu.wait_operation(st, op, timeout=180)
    secs = float(st.sql("SELECT extract(epoch FROM finished_at - started_at) FROM operations WHERE id = :'p1'", op))
    tap.is_((done["status"], done["attempts"]), ("completed", 1),
            "an image slower than the lease (%.1f s) is not taken over by another worker" % secs)
    tap.is_((wu.image_row(st, big[0])["version"], wu.image_row(st, big[0])["width"]), (2, 5000),
            "stored once, at 5000 pixels wide")

    # ---------------------------------------------------------------- housekeeping
    # A job abandoned by IT_OPS_MAX_ATTEMPTS dead workers is failed, never left "running".
    sid = st.new_session()
    ids = upload(st, sid, 1)
    op = wu.start_operation(st, sid, ids)
    wu.wait_operation(st, op)
    st.sql("UPDATE operations SET status = 'running', attempts = 3, lease_owner = 'gone:1:x',"
           " lease_until = now() - interval '1 second', finished_at = NULL WHERE id = :'p1'", op)
    done = wu.wait_operation(st, op, statuses=("failed",), timeout=15)
    tap.is_(done["error"], "abandoned", "a job whose workers kept dying is failed as abandoned")
    tap.is_(events_of(st, sid, op)[-1]["data"].get("reason"), "abandoned", "with operation.failed")

    # session.expiring arrives before expiry, once; then the expired session is deleted.
    sid = st.new_session()
    ids = upload(st, sid, 1)
    op = wu.start_operation(st, sid, ids)
    wu.wait_operation(st, op)
    st.sql("UPDATE sessions SET expires_at = now() + interval '6 seconds' WHERE id = :'p1'", sid)
    # A browser tab on SSE: it must get session.expiring before its stream ends with the session.
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=30)
    conn.request("GET", "/api/v1/events/stream?session_id=" + sid)
    resp = conn.getresponse()
    seen, expiring_live, ev = [], None, [{}]
    while True:
        line = resp.readline()
        if not line:
            break
        if line.startswith(b"event: "):
            seen.append(line[7:].strip().decode())
            if seen[-1] == "session.expiring":
                expiring_live = st.sql("SELECT count(*) FROM sessions WHERE id = :'p1' AND expires_at > now()",
                                       sid)
        elif line.startswith(b"data: ") and seen and seen[-1] == "session.expiring":
            ev = [json.loads(line[6:])]
    conn.close()
    tap.is_(seen.count("session.expiring"), 1, "an SSE client gets session.expiring once, then the stream ends")
    tap.is_(expiring_live, "1", "session.expiring arrives while the session is still live")
    tap.is_(ev[0].get("type"), "session.expiring", "in the wire format")
    data = ev[0].get("data", {})
    tap.ok(0 < data.get("seconds_left", 0) <= 3, "seconds_left within expiry_warning (%r)" % data)
    tap.like(data.get("expires_at", ""), r"Z$", "with expires_at")
    wait_for(lambda: st.sql("SELECT count(*) FROM sessions WHERE id = :'p1'", sid) == "0", timeout=15,
             what="the expired session to be deleted")
    tap.ok(True, "the expired session is deleted")
    tap.is_(st.sql("SELECT (SELECT count(*) FROM images WHERE session_id = :'p1') +"
                   " (SELECT count(*) FROM operations WHERE session_id = :'p1') +"
                   " (SELECT count(*) FROM events WHERE session_id = :'p1')", sid), "0",
            "with its images, operations and events")
    tap.is_(st.sql("SELECT count(*) FROM blobs b WHERE NOT EXISTS (SELECT 1 FROM images i"
                   " WHERE i.blob_id = b.id OR i.thumb_blob_id = b.id)"), "0", "and no orphaned blob")

    # Events older than event_retention go, from the front of the log, and first_kept_seq follows.
    sid = st.new_session()
    upload(st, sid, 4)
    st.sql("UPDATE events SET created_at = now() - interval '3 days' WHERE session_id = :'p1' AND seq <= 3", sid)
    wait_for(lambda: st.sql("SELECT count(*) FROM events WHERE session_id = :'p1'", sid) == "1", timeout=15,
             what="old events to be pruned")
    tap.is_(st.sql("SELECT first_kept_seq || ' ' || last_event_seq FROM sessions WHERE id = :'p1'", sid), "4 4",
            "old events pruned; first_kept_seq moves past them")
    for p in (wb, wc):
        tap.is_(wu.stop_worker(st, p, signal.SIGTERM), 0, "worker stops on SIGTERM")

# ---------------------------------------------------------------- the worker outlives PostgreSQL restarts
with Stack(tap, own_cluster=True, settings=SETTINGS) as st:
    w = st.start_worker()
    sid = st.new_session()
    ids = upload(st, sid, 2)
    op = wu.start_operation(st, sid, ids)
    tap.is_(wu.wait_operation(st, op)["status"], "completed", "a job before the restart")
    st.pg.restart(down_seconds=1.0)
    wait_for(lambda: st.request("GET", "/api/v1/health").status == 200, timeout=30, what="health after restart")
    op = wu.start_operation(st, sid, ids)
    done = wu.wait_operation(st, op, timeout=90)
    tap.is_((done["status"], w.poll()), ("completed", None),
            "after PostgreSQL restarts, the same worker process reconnects and runs the next job")

    # A session deleted in the middle of its job: the worker lets go and takes the next job.
    sid = st.new_session()
    ids = upload_big(st, sid, 30)
    op = wu.start_operation(st, sid, ids)
    wu.wait_done(st, op, 2)
    tap.is_(st.request("DELETE", "/api/v1/sessions/" + sid).status, 204, "session deleted mid-job")
    tap.is_(st.sql("SELECT count(*) FROM operations WHERE id = :'p1'", op), "0", "its operation went with it")
    sid = st.new_session()
    ids = upload(st, sid, 1)
    op = wu.start_operation(st, sid, ids)
    tap.is_(wu.wait_operation(st, op)["status"], "completed", "and the worker goes on with the next job")
    tap.is_(wu.stop_worker(st, w, signal.SIGTERM), 0, "worker stops on SIGTERM")

tap.done()
