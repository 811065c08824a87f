"""test_deploy_startup.py: honest start-up errors. A configuration file that exists but
cannot be read stops every program with its path and the reason (the documented chmod 600
read by another user), a malformed database_url is named without its password, and
imagetools.fcgi --socket never takes over (nor, on exit, deletes) a socket another server
listens on. No database or web server is needed: each program stops before using one."""

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from harness import BUILDDIR, Tap, free_port, wait_for

tap = Tap()
WEB_USER = os.environ.get("IT_WEB_USER", "www-data")
BIN = {n: os.path.join(BUILDDIR, p) for n, p in (
    ("fcgi", "cgi-bin/imagetools.fcgi"), ("bridge", "imagetools-wsbridge"), ("worker", "imagetools-worker"),
    ("migrate", "imagetools-migrate"))}
top = tempfile.mkdtemp(prefix="it-startup-")
os.chmod(top, 0o755)
procs = []
# Sanitizer reports in what the programs wrote (an ASan build): an error exit must be clean too.
reports = []


def as_web_user():
    """Runs a command as the web server's user when we are root (root reads every file)."""
    return ["runuser", "-u", WEB_USER, "--"] if os.geteuid() == 0 else []


def run(cmd, timeout=20):
    """Runs cmd (stdin /dev/null, so imagetools.fcgi is no CGI) and returns (exit code or None
    when it kept running, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMAGETOOLS_")}
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        text = err.decode(errors="replace")
        if "Sanitizer" in text or "runtime error:" in text:
            reports.append((cmd, text[-3000:]))
        return p.returncode, text
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        return None, err.decode(errors="replace")


def program_args(name, conf, rundir):
    if name == "fcgi":
        return [BIN[name], "--config", conf, "--socket", os.path.join(rundir, "fcgi.sock")]
    if name == "bridge":
        return [BIN[name], "--config", conf, "--listen", "127.0.0.1:%d" % free_port()]
    if name == "worker":
        return [BIN[name], "--config", conf]
    return [BIN[name], "--config", conf, "--status"]


try:
    # -- a configuration file readable by root alone, read by the web server's user
    rundir = os.path.join(top, "run")
    os.makedirs(rundir)
    if os.geteuid() == 0:
        pw = pwd.getpwnam(WEB_USER)
        os.chown(rundir, pw.pw_uid, pw.pw_gid)
    conf = os.path.join(top, "imagetools.conf")
    with open(conf, "w") as f:
        f.write("database_url = host=/nonexistent-it dbname=imagetools password=hunter2\n")
    os.chmod(conf, 0o600 if os.geteuid() == 0 else 0)
    for name in ("fcgi", "bridge", "worker", "migrate"):
        rc, err = run(as_web_user() + program_args(name, conf, rundir))
        tap.ok(rc not in (None, 0), "%s: an unreadable configuration file stops it (exit %r)" % (name, rc))
        tap.ok(conf in err and "Permission denied" in err,
               "%s: the error names the file and the reason" % name) or tap.diag(err[-600:])

    # -- a malformed database_url
    bad = os.path.join(top, "bad.conf")
    with open(bad, "w") as f:
        f.write("database_url = host=/nonexistent-it dbname=imagetools password=pass hunter2secret\n")
    os.chmod(bad, 0o644)
    for name in ("fcgi", "bridge", "worker", "migrate"):
        rc, err = run(as_web_user() + program_args(name, bad, rundir))
        tap.ok(rc not in (None, 0), "%s: a malformed database_url stops it (exit %r)" % (name, rc))
        tap.ok("database_url" in err and "malformed" in err, "%s: the error names database_url" % name) \
            or tap.diag(err[-600:])
        tap.ok("hunter2" not in err, "%s: and does not repeat the password" % name)

    # -- a second imagetools.fcgi on the socket of a running one
    good = os.path.join(top, "good.conf")
    with open(good, "w") as f:
        f.write("database_url = host=/nonexistent-it dbname=imagetools\n")
    sock = os.path.join(top, "imagetools.fcgi.sock")
    first_log = open(os.path.join(top, "first.log"), "wb")
    first = subprocess.Popen([BIN["fcgi"], "--config", good, "--socket", sock], stdin=subprocess.DEVNULL,
                             stdout=first_log, stderr=first_log, start_new_session=True)
    procs.append(first)
    wait_for(lambda: os.path.exists(sock), timeout=10, what="the first server's socket")
    ino = os.stat(sock).st_ino
    rc, err = run([BIN["fcgi"], "--config", good, "--socket", sock], timeout=10)
    tap.ok(rc not in (None, 0), "a second imagetools.fcgi on a live socket refuses to start (exit %r)" % rc)
    tap.ok(sock in err and "in use" in err, "and says the socket is in use") or tap.diag(err[-600:])
    tap.is_(os.stat(sock).st_ino if os.path.exists(sock) else None, ino, "the first server's socket is still there")
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock)
        tap.ok(True, "and still reaches the first server")

    # Someone removes the first server's socket file and starts another server there:
    # the first one's exit must not delete the newcomer's socket.
    os.unlink(sock)
    other = socket.socket(socket.AF_UNIX)
    other.bind(sock)
    other.listen(4)
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=20)
    tap.is_(first.returncode, 0, "the first server exits cleanly")
    tap.ok(os.path.exists(sock), "its exit leaves a socket it did not create alone")
    other.close()

    # A socket file left by a server that died (nobody listens) is taken over.
    second_log = open(os.path.join(top, "second.log"), "wb")
    second = subprocess.Popen([BIN["fcgi"], "--config", good, "--socket", sock], stdin=subprocess.DEVNULL,
                              stdout=second_log, stderr=second_log, start_new_session=True)
    procs.append(second)
    # Only a listener accepts a connection there (the stale file refuses it), and
    # nobody but the new server listens now. An inode comparison would not do: a
    # file system may give the new socket the very inode number the old one had.
    def reaches(path):
        with socket.socket(socket.AF_UNIX) as c:
            c.settimeout(2)
            c.connect(path)
        return True
    wait_for(lambda: reaches(sock), timeout=20, what="the new server on the stale socket")
    tap.ok(second.poll() is None, "a stale socket file is replaced")
    second.send_signal(signal.SIGTERM)
    second.wait(timeout=20)
    tap.ok(not os.path.exists(sock), "and its owner removes it on exit")
    tap.is_([c for c, _ in reports], [], "no sanitizer report from a program that stopped on an error")
    for _, text in reports:
        tap.diag(text)
finally:
    for p in procs:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    shutil.rmtree(top, ignore_errors=True)
tap.done()
