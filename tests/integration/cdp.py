"""cdp.py: drives Debian's Chromium over the DevTools protocol on a pipe (--remote-debugging-pipe),
with the standard library only: launch headless with an unpacked extension, find its service
worker, evaluate JavaScript in it or in a page."""

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

CHROMIUM = os.environ.get("IT_CHROMIUM", "/usr/bin/chromium")


class CdpError(Exception):
    pass


class Chromium:
    """One headless Chromium; messages are JSON objects separated by NUL bytes on fds 3 (in) and 4 (out)."""

    def __init__(self, extension=None, extra_args=()):
        self.profile = tempfile.mkdtemp(prefix="it-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        args = [CHROMIUM, "--headless=new", "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
                "--no-first-run", "--no-default-browser-check", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-sandbox",
                "--window-size=800,600"]
        if extension:
            args += ["--disable-extensions-except=" + extension, "--load-extension=" + extension]
        args += list(extra_args) + ["about:blank"]
        # The shell puts our pipe ends on the descriptors Chromium expects.
        cmd = 'exec "$@" 3<&%d 4>&%d' % (to_child_r, from_child_w)
        self.log = open(os.path.join(self.profile, "chromium.log"), "wb")
        self.proc = subprocess.Popen(["bash", "-c", cmd, "chromium"] + args, pass_fds=(to_child_r, from_child_w),
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log,
                                     start_new_session=True)
        os.close(to_child_r)
        os.close(from_child_w)
        self._next = 0
        self._answers = {}
        self._events = []
        self._cv = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_child, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._cv:
                    self._answers[None] = "closed"
                    self._cv.notify_all()
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                with self._cv:
                    if "id" in msg:
                        self._answers[msg["id"]] = msg
                    else:
                        self._events.append(msg)
                    self._cv.notify_all()

    def send(self, method, params=None, session=None, timeout=30):
        """Sends one command and returns its result; raises CdpError on a protocol error."""
        self._next += 1
        mid = self._next
        msg = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cv:
            while mid not in self._answers:
                if None in self._answers:
                    raise CdpError("Chromium exited")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise CdpError("no answer to " + method)
                self._cv.wait(left)
            ans = self._answers.pop(mid)
        if "error" in ans:
            raise CdpError("%s: %s" % (method, ans["error"].get("message")))
        return ans.get("result", {})

    def wait_target(self, pred, timeout=20):
        """Returns the first target (from Target.getTargets) for which pred is true."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t in self.send("Target.getTargets")["targetInfos"]:
                if pred(t):
                    return t
            time.sleep(0.2)
        raise CdpError("target not found")

    def attach(self, target_id):
        return self.send("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]

    def evaluate(self, session, expression, timeout=30):
        """Evaluates expression (awaiting a promise) and returns its value as JSON."""
        r = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                      session=session, timeout=timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CdpError("exception: %s" % ((d.get("exception") or {}).get("description") or d.get("text")))
        return r.get("result", {}).get("value")

    def close(self):
        try:
            self.send("Browser.close", timeout=5)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, 9)
            self.proc.wait()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)
