"""nodews.py: the npm "ws" client (tests/ws/client.mjs) driven from a test: JSON commands in, JSON lines out.

    from nodews import NodeWs, missing
    why = missing()              # None, or why it cannot run (no node, no tests/ws/node_modules/ws)
    c = NodeWs()
    c.cmd(cmd="connect", url=..., origin=...)   # see client.mjs for the commands
    c.next()                                    # the next line it printed, as JSON
    c.stop()
"""

import json
import os
import selectors
import shutil
import subprocess
import time

from harness import SRCDIR

WSDIR = os.path.join(SRCDIR, "tests", "ws")
NODE = shutil.which("node")


def missing():
    """Why the client cannot run here (scripts/dev check installs it; a bare make check without
    network may not have it), or None."""
    if NODE is None or not os.path.isdir(os.path.join(WSDIR, "node_modules", "ws")):
        return "node or tests/ws/node_modules/ws missing (cd tests/ws && npm install)"
    return None


class NodeWs:
    """One node process running client.mjs."""

    def __init__(self):
        self.p = subprocess.Popen([NODE, os.path.join(WSDIR, "client.mjs")], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=WSDIR)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.p.stdout, selectors.EVENT_READ)
        self.buf = b""

    def cmd(self, **c):
        self.p.stdin.write((json.dumps(c) + "\n").encode())
        self.p.stdin.flush()

    def next(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.sel.select(left):
                raise TimeoutError("the node client said nothing")
            chunk = os.read(self.p.stdout.fileno(), 65536)
            if not chunk:
                raise EOFError("the node client exited: " + self.p.stderr.read().decode(errors="replace"))
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def until(self, pred, timeout=10.0):
        """Returns every line up to and including the first for which pred is true."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            m = self.next(max(0.01, deadline - time.monotonic()))
            seen.append(m)
            if pred(m):
                return seen

    def events(self, n, timeout=10.0):
        """The next n messages that carry an event id (other lines are passed over)."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < n:
            m = self.next(max(0.01, deadline - time.monotonic()))
            if isinstance(m.get("msg"), dict) and "id" in m["msg"]:
                got.append(m["msg"])
        return got

    def quiet(self, seconds):
        """The one line that comes within seconds, or [] when none does."""
        try:
            return [self.next(seconds)]
        except TimeoutError:
            return []

    def stop(self):
        try:
            self.p.stdin.close()
            self.p.wait(timeout=5)
        except Exception:
            self.p.kill()
            self.p.wait()
        self.sel.close()
        self.p.stdout.close()
        self.p.stderr.close()
