"""test_longpoll_storm.py: a re-poll storm through the shipped lighttpd config. Some 1,200
long-poll clients wait on one session (bench/fanout, raw non-blocking sockets); events are
committed meanwhile, so that every one of them answers all the clients at once and they all
poll again at once, more of them than the FastCGI socket's listen backlog (1024) holds. At
the same time another client renames an image and uploads new ones. No answer may be a 5xx,
every client must get every event of the session's log once and in order, and every rename
and upload must succeed.

IT_STORM_CLIENTS changes the number of clients (it must stay above the backlog to mean
anything)."""

import http.client
import json
import os
import resource
import subprocess
import tempfile
import threading
import time

from harness import BUILDDIR, Stack, Tap
from uploads_util import multipart, png_bytes

CLIENTS = int(os.environ.get("IT_STORM_CLIENTS", "1200"))
SQL_EVENTS = 80      # committed straight in the log, 20 a second: each one is a storm
RENAMES = 20
UPLOADS = 10
BOUND = 45           # generous bound for any one request, and for the whole run to drain

tap = Tap()
FANOUT = os.path.join(BUILDDIR, "bench", "fanout")
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if not os.path.exists(FANOUT):
    tap.skip("long-poll storm", "bench/fanout is not built")
    tap.done()
if hard != resource.RLIM_INFINITY and hard < 3 * CLIENTS + 256:
    tap.skip("long-poll storm", "the descriptor limit (%d) is too low for %d clients" % (hard, CLIENTS))
    tap.done()
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

# One address opens every stream of one session: lift the per-session and per-address
# stream limits (the rate limits are already off in the harness).
SETTINGS = {"max_streams": 20000, "max_streams_per_session": 100000, "log_level": "warn"}


def call(st, method, path, body=None, headers=None):
    """One request on its own connection; returns (status, parsed JSON or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", st.port, timeout=BOUND)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        try:
            return r.status, json.loads(data)
        except ValueError:
            return r.status, None
    except OSError as e:
        return "error: %s" % e, None
    finally:
        conn.close()


def upload(st, sid, name):
    ctype, body = multipart([("session_id", sid)], [("file", 'filename="%s"' % name, png_bytes(24, 16))])
    return call(st, "POST", "/api/v1/images", body, {"Content-Type": ctype})


def rename(st, sid, image, name):
    return call(st, "PATCH", "/api/v1/images/" + image, json.dumps({"filename": name}).encode(),
                {"Content-Type": "application/json", "Authorization": "Bearer " + sid})


with Stack(tap, settings=SETTINGS) as st:
    sid = st.new_session()
    status, first = upload(st, sid, "first.png")
    tap.is_(status, 201, "an image to rename is uploaded")
    image = ((first or {}).get("images") or [{}])[0].get("id", "missing")
    total = 1 + SQL_EVENTS + RENAMES + UPLOADS  # every event the session's log will hold

    with tempfile.NamedTemporaryFile("w", suffix=".sids", dir=st.dir, delete=False) as f:
        f.write(sid + "\n")
    url = "http://127.0.0.1:%d/api/v1/events?session_id={s}&cursor={c}&timeout=30" % st.port
    fan = subprocess.Popen([FANOUT, "--transport", "longpoll", "--flavor", "imagetools", "--ids", "--url", url,
                            "--sessions", f.name, "--clients", str(CLIENTS), "--events", str(total),
                            "--open-timeout", "30", "--drain", str(BOUND), "--timeout", str(2 * BOUND)],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        ready = fan.stdout.readline().decode().split()
        tap.is_(ready[2:3], ["%d/%d" % (CLIENTS, CLIENTS)], "%d long-poll clients have sent their first poll"
                % CLIENTS)
        # Each first poll is answered with the first event at once; let them all park again.
        time.sleep(2)

        # The other client: renames and uploads, one after the other, all through the storm.
        answers = []

        def other_client():
            for i in range(RENAMES):
                answers.append(("rename", rename(st, sid, image, "storm-%d.png" % i)[0]))
                if i % 2 == 0:
                    answers.append(("upload", upload(st, sid, "storm-%d.png" % i)[0]))

        other = threading.Thread(target=other_client)
        other.start()
        # The events: committed one at a time, as the application does.
        psql = subprocess.Popen(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", st.sockdir,
                                 "-p", str(st.pgport), "-U", "postgres", "-d", st.dbname, "-o", "/dev/null"],
                                stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        for k in range(SQL_EVENTS):
            psql.stdin.write(("SELECT it_append_event('%s', 'storm.tick', '{\"k\": %d}');\n" % (sid, k)).encode())
            psql.stdin.flush()
            time.sleep(0.05)
        psql.stdin.close()
        err = psql.stderr.read().decode()
        tap.is_((psql.wait(timeout=BOUND), err), (0, ""), "%d events committed" % SQL_EVENTS)
        other.join(timeout=4 * BOUND)
        tap.ok(not other.is_alive(), "the renames and uploads ended")

        fan.stdin.write(b"END\n")
        fan.stdin.flush()
        line = fan.stdout.readline().decode()
        res = json.loads(line) if line.startswith("{") else {}
        fan.wait(timeout=BOUND)
    finally:
        if fan.poll() is None:
            fan.kill()
            fan.wait()

    tap.is_(st.sql("SELECT last_event_seq FROM sessions WHERE id = :'p1'", sid), str(total),
            "the session's log holds the %d events" % total)
    tap.diag("clients: %s" % {k: res.get(k) for k in ("polls", "s2xx", "s4xx", "s5xx", "reconnects", "drops",
                                                      "connect_errors", "tail_s")})
    tap.is_(res.get("s5xx"), 0, "no long-poll was answered with a 5xx")
    tap.is_((res.get("delivered"), res.get("expected")), (CLIENTS * total, CLIENTS * total),
            "every client got every event")
    tap.is_((res.get("dup"), res.get("ooo"), res.get("bogus")), (0, 0, 0), "once each, in order, and nothing else")
    bad = [a for a in answers if a[1] != (201 if a[0] == "upload" else 200)]
    tap.is_(len(answers), RENAMES + UPLOADS, "every rename and upload was answered")
    tap.is_(bad, [], "every rename (200) and upload (201) succeeded during the storm")
    with open(st.errorlog, errors="replace") as f:
        backend = [line for line in f if "gw_backend" in line or "network_write" in line]
    tap.is_(len(backend), 0, "lighttpd logged no failed FastCGI connection")
    if backend:
        tap.diag("".join(backend[:3]))
    sn, _ = call(st, "GET", "/api/v1/health")
    tap.is_(sn, 200, "the API still answers")

tap.done()
