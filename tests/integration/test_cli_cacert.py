"""test_cli_cacert.py: imagetools-upload and imagetools-watch against lighttpd over TLS with a self-signed
certificate (tls_stack.py), the way scripts/dev serves https://localhost:8443 and small sites behind a
private CA do.

What a user relies on:
- with --cacert naming the server's certificate (or cacert = FILE in the config file), a multipart
  upload and a resumable (--resume, tus) upload are stored byte for byte, and imagetools-watch follows
  the session over SSE and long-poll;
- without it, or with another CA's certificate, verification stays on: the upload stops at once with
  exit 4 (the documented exit for a server that cannot be reached) and a message naming the
  certificate and --cacert, nothing is stored, and imagetools-watch stops the same way instead of
  reconnecting forever; a host name the certificate does not name fails the same way;
- a --cacert file that is missing or holds no certificate is a usage error (exit 2) before anything
  is sent.
"""

import hashlib
import http.server
import json
import os
import re
import ssl
import subprocess
import tempfile
import threading

from cli_helpers import Follower, png_bytes, run, write
from harness import Tap
from tls_stack import LighttpdTlsStack

if not os.path.exists("/usr/lib/lighttpd/mod_openssl.so"):
    print("1..0 # SKIP lighttpd-mod-openssl is not installed")
    raise SystemExit(0)

tap = Tap()
tmp = tempfile.mkdtemp(prefix="it-cacert-")
img1 = write(os.path.join(tmp, "one.png"), png_bytes(50, 40, seed=11))
img2 = write(os.path.join(tmp, "two.png"), png_bytes(300, 200, seed=12, noisy=True))
img3 = write(os.path.join(tmp, "three.png"), png_bytes(64, 64, seed=13))
sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()  # noqa: E731

# Another CA: a self-signed certificate for the same names that the server does not use.
other = os.path.join(tmp, "other-ca.pem")
subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", os.path.join(tmp, "other-key.pem"), "-out", other], check=True, capture_output=True)
notpem = write(os.path.join(tmp, "notes.txt"), b"not a certificate\n")
CERT_MSG = r"certificate cannot be verified \(.*\).*--cacert"
# With a CA file given, the message names it instead of pointing at --cacert again.
CERT_FILE_MSG = r"certificate cannot be verified \(.*\) with the CA file %s"


class MismatchServer:
    """A loopback TLS server whose self-signed certificate names elsewhere.example only; every
    handshake fails on the client's side, so it never needs to answer a request."""

    def __init__(self):
        self.cert = os.path.join(tmp, "elsewhere.pem")
        key = os.path.join(tmp, "elsewhere-key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=elsewhere.example", "-addext",
                        "subjectAltName=DNS:elsewhere.example", "-keyout", key, "-out", self.cert],
                       check=True, capture_output=True)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
        self.srv.socket = ctx.wrap_socket(self.srv.socket, server_side=True)
        self.url = "https://127.0.0.1:%d" % self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def stored(st, sid):
    return st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", sid)


mismatch = MismatchServer()

with LighttpdTlsStack(tap) as st:
    sid = st.new_session()

    # -- trusted with --cacert: the multipart path and the tus path store the exact bytes.
    r = run("imagetools-upload", "-s", st.url, "-S", sid, "--cacert", st.cert, "--json", "-q", img1)
    tap.is_(r.returncode, 0, "--cacert: the upload over https succeeds")
    ans = json.loads(r.stdout.splitlines()[0]) if r.stdout.strip() else {}
    tap.is_(((ans.get("images") or [{}])[0]).get("sha256"), sha(img1), "--cacert: the answer has the sent bytes' hash")
    tap.is_(st.sql("SELECT sha256 FROM images WHERE session_id = :'p1' AND original_filename = 'one.png'", sid),
            sha(img1), "--cacert: the stored image has the sent bytes")

    r = run("imagetools-upload", "-s", st.url, "-S", sid, "--cacert", st.cert, "--resume", "--state-dir",
            os.path.join(tmp, "tus-state"), "-q", img2)
    tap.is_(r.returncode, 0, "--cacert --resume: the tus upload over https succeeds (%s)" % r.stderr.strip()[:200])
    tap.is_(st.sql("SELECT sha256 FROM images WHERE session_id = :'p1' AND original_filename = 'two.png'", sid),
            sha(img2), "--cacert --resume: stored byte for byte")

    # -- the config file's cacert key does the same as the option.
    conf_home = os.path.join(tmp, "xdg")
    os.makedirs(os.path.join(conf_home, "imagetools"))
    write(os.path.join(conf_home, "imagetools", "cli.conf"),
          ("server = %s\nsession = %s\ncacert = \"%s\"\n" % (st.url, sid, st.cert)).encode())
    r = run("imagetools-upload", "-q", img3, env={"XDG_CONFIG_HOME": conf_home})
    tap.is_(r.returncode, 0, "cacert = FILE in the config file: the upload succeeds (%s)" % r.stderr.strip()[:200])
    tap.is_(st.sql("SELECT sha256 FROM images WHERE session_id = :'p1' AND original_filename = 'three.png'", sid),
            sha(img3), "config file cacert: stored byte for byte")

    # -- watch with --cacert: events arrive on both transports; --once ends on the first upload.
    for transport in ("sse", "longpoll"):
        ws = st.new_session()
        f = Follower("-s", st.url, "-S", ws, "--cacert", st.cert, "-t", transport, "--type", "image.uploaded",
                     "--once", "--no-presence", "--poll-timeout", "5")
        # The follower may connect after the upload, so upload until it has seen one (bounded).
        code = None
        for _ in range(5):
            r = run("imagetools-upload", "-s", st.url, "-S", ws, "--cacert", st.cert, "-q", img1)
            code = f.wait(8)
            if code is not None:
                break
        if code is None:
            f.stop()
        tap.is_(code, 0, "%s over https with --cacert: --once exits 0 after an upload" % transport)
        lines = f.rest(0.1)
        ev = lines[0] if lines else {}
        tap.is_((ev.get("type"), (ev.get("data") or {}).get("filename")), ("image.uploaded", "one.png"),
                "%s: the image.uploaded event arrived (%s)" % (transport, "".join(f.stderr)[:200]))

    # -- untrusted: without --cacert (the system's store does not know the self-signed certificate)
    # and with another CA's certificate, nothing is sent and the exit is 4 with a clear message.
    bad = st.new_session()
    for label, extra in (("no --cacert", []), ("another CA", ["--cacert", other])):
        r = run("imagetools-upload", "-s", st.url, "-S", bad, "--retry-delay", "50", *extra, img1, img3)
        tap.is_(r.returncode, 4, "%s: the upload fails with exit 4" % label)
        want = CERT_FILE_MSG % re.escape(other) if extra else CERT_MSG
        tap.like(r.stderr, want, "%s: the message names the certificate and --cacert or the CA file" % label)
        tap.ok("retrying" not in r.stderr and r.stderr.count("cannot be verified") == 1,
               "%s: said once, not retried, the batch stopped" % label)
        r = run("imagetools-upload", "-s", st.url, "-S", bad, "--resume", "--state-dir", os.path.join(tmp, "s2"),
                "--retry-delay", "50", *extra, img1)
        tap.is_(r.returncode, 4, "%s: the tus upload fails with exit 4" % label)
        tap.like(r.stderr, want, "%s: tus: the message names the certificate" % label)
        r = run("imagetools-watch", "-s", st.url, "-S", bad, "--retry-delay", "50", *extra, timeout=30)
        tap.is_(r.returncode, 4, "%s: watch stops with exit 4 instead of reconnecting" % label)
        tap.like(r.stderr, want, "%s: watch: the message names the certificate" % label)
    tap.is_(stored(st, bad), "0", "untrusted: nothing was stored")

    # The --pair exchange: refused on the certificate without --cacert (exit 4, before the code is
    # looked at), and with it reaches the server, which does not know the code (exit 6).
    link = "%s/#pair=itp.%s" % (st.url, "Zz9_" * 5 + "Q1")
    pair_env = {"XDG_CONFIG_HOME": os.path.join(tmp, "xdg-pair")}
    r = run("imagetools-upload", "--pair", link, env=pair_env)
    tap.is_(r.returncode, 4, "--pair without --cacert: exit 4")
    tap.like(r.stderr, CERT_MSG, "--pair without --cacert: the certificate message")
    r = run("imagetools-upload", "--cacert", st.cert, "--pair", link, env=pair_env)
    tap.is_(r.returncode, 6, "--pair with --cacert: the exchange reaches the server (an unknown code: exit 6)")

    # A name the certificate does not hold: a server whose certificate (trusted with --cacert) names
    # elsewhere.example only, reached as 127.0.0.1.
    r = run("imagetools-upload", "-s", mismatch.url, "-S", bad, "--cacert", mismatch.cert, "--retry-delay", "50", img1)
    tap.is_(r.returncode, 4, "a certificate for another name: exit 4")
    tap.like(r.stderr, CERT_FILE_MSG % re.escape(mismatch.cert),
             "a certificate for another name: the message names the CA file it was checked against")
    tap.like(r.stderr, r"(?i)(name|subject)", "a certificate for another name: libcurl's detail names the mismatch")

    # -- a file that cannot be used is a usage error before any transfer.
    for label, path in (("a missing file", os.path.join(tmp, "nope.pem")), ("a file without a certificate", notpem)):
        for prog, args in (("imagetools-upload", [img1]), ("imagetools-watch", [])):
            r = run(prog, "-s", st.url, "-S", bad, "--cacert", path, *args, timeout=30)
            tap.is_(r.returncode, 2, "%s: %s is exit 2" % (prog, label))
            tap.like(r.stderr, r"CA certificate file .*%s" % os.path.basename(path), "%s: %s is named" % (prog, label))
    tap.is_(stored(st, bad), "0", "bad --cacert files: nothing was stored")
    tap.is_(st.sql("SELECT count(*) FROM events WHERE session_id = :'p1'", bad), "0",
            "untrusted and unusable CA files: not even a presence announcement reached the server")

mismatch.close()
tap.done()
