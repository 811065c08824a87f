"""test_deploy_install.py: `make install` gives a site operator everything the deployment
guide names, at the configured paths: programs, migrations, web/, example configs, systemd
units with the right paths; the installed programs work from there, and the example
configuration lists every key and loads."""

import os
import re
import shutil
import subprocess
import tempfile

from apache import prerequisites
from harness import BUILDDIR, SRCDIR, Stack, Tap

why = prerequisites()
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)


# make runs this test: its MAKEFLAGS (jobserver, -w) must not leak into the makes started here.
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")}


def make(*args):
    return subprocess.run(["make", "-s", "--no-print-directory", "-C", BUILDDIR] + list(args),
                          capture_output=True, text=True, env=MAKE_ENV)


def makevar(name):
    return make("--eval", "it-print-var: ; @echo $(%s)" % name, "it-print-var").stdout.strip()


def systemd_unit_paths():
    """The directories systemd reads units from (as root, for the system manager)."""
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "unit-paths"], capture_output=True, text=True)
        if r.returncode == 0 and r.stdout.strip():
            return [l.strip().rstrip("/") for l in r.stdout.splitlines() if l.strip()]
    return ["/etc/systemd/system", "/run/systemd/system", "/usr/local/lib/systemd/system", "/lib/systemd/system",
            "/usr/lib/systemd/system"]


def units_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs
                  if f.endswith((".service", ".socket")))


def check_unit_dirs():
    """A prefix install (./configure --prefix=/opt/x) puts its units where systemd reads them,
    not under the prefix; --with-systemdsystemunitdir=DIR and =no are obeyed. Only configure
    and the units' install rule run (nothing is compiled): with DESTDIR, as a packager would."""
    have_pc = subprocess.run(["pkg-config", "--exists", "systemd"]).returncode == 0
    for option, want in ((None, "systemd"), ("/srv/it-units", "/srv/it-units"), ("no", None)):
        build = tempfile.mkdtemp(prefix="it-prefix-build-")
        root = tempfile.mkdtemp(prefix="it-prefix-dest-")
        try:
            args = [os.path.join(SRCDIR, "configure"), "-q", "--prefix=/opt/x"]
            if option:
                args.append("--with-systemdsystemunitdir=" + option)
            label = "--prefix=/opt/x" + (" --with-systemdsystemunitdir=" + option if option else "")
            r = subprocess.run(args, cwd=build, capture_output=True, text=True, env=MAKE_ENV)
            if not tap.is_(r.returncode, 0, label + ": configure succeeds"):
                tap.diag(r.stderr[-2000:])
                continue
            if want == "systemd" and not have_pc:
                tap.skip(label + ": units where systemd reads them", "systemd's pkg-config file is not installed")
                continue
            r = subprocess.run(["make", "-s", "--no-print-directory", "install-data", "DESTDIR=" + root],
                               cwd=build, capture_output=True, text=True, env=MAKE_ENV)
            if not tap.is_(r.returncode, 0, label + ": make install-data DESTDIR=... succeeds"):
                tap.diag(r.stderr[-2000:])
                continue
            units = units_under(root)
            if want is None:
                tap.is_(units, [], label + ": installs no systemd unit")
                continue
            dirs = sorted(set("/" + os.path.dirname(u) for u in units))
            tap.is_(len(units), 4, label + ": installs the four units (%s)" % ", ".join(dirs))
            if want == "systemd":
                tap.ok(len(dirs) == 1 and dirs[0] in systemd_unit_paths(),
                       label + ": in a directory systemd reads units from: %s" % dirs)
            else:
                tap.is_(dirs, [want], label + ": in the directory given")
            text = open(os.path.join(root + dirs[0], "imagetools-wsbridge.service")).read() if dirs else ""
            tap.like(text, r"(?m)^ExecStart=/opt/x/bin/imagetools-wsbridge$", label + ": naming the programs under the prefix")
        finally:
            shutil.rmtree(build, ignore_errors=True)
            shutil.rmtree(root, ignore_errors=True)


tap = Tap()
dest = tempfile.mkdtemp(prefix="it-install-")
try:
    r = make("install", "DESTDIR=" + dest)
    if not tap.is_(r.returncode, 0, "make install DESTDIR=... succeeds"):
        tap.diag(r.stdout[-3000:] + r.stderr[-3000:])
        tap.done()
    paths = {k: makevar(k) for k in ("bindir", "cgibindir", "sysconfdir", "pkgdatadir", "docdir",
                                     "systemdunitdir")}
    tap.ok(all(v.startswith("/") for v in paths.values()), "install paths are known: %r" % paths)

    def inst(*parts):
        return dest + os.path.join(*parts)

    tap.ok(os.access(inst(paths["bindir"], "imagetools-migrate"), os.X_OK), "imagetools-migrate in bindir")
    fcgi = inst(paths["cgibindir"], "imagetools.fcgi")
    tap.ok(os.access(fcgi, os.X_OK), "imagetools.fcgi in cgibindir")
    sqls = sorted(os.listdir(os.path.join(SRCDIR, "sql")))
    tap.is_(sorted(os.listdir(inst(paths["pkgdatadir"], "sql"))), sqls, "every migration in pkgdatadir/sql")
    web = os.path.join(SRCDIR, "web")
    if os.path.isdir(web):
        want = sorted(os.path.relpath(os.path.join(d, f), web) for d, _, fs in os.walk(web) for f in fs)
        got_root = inst(paths["pkgdatadir"], "web")
        got = sorted(os.path.relpath(os.path.join(d, f), got_root) for d, _, fs in os.walk(got_root) for f in fs)
        tap.is_(got, want, "web/ installed in pkgdatadir/web, every file")
    else:
        print("ok %d # SKIP web/ is not built yet" % (tap.n + 1))
        tap.n += 1
    examples = ["imagetools.conf.example", "lighttpd.conf.example", "lighttpd-cgi.conf.example", "nginx.conf.example",
                "apache/imagetools.conf.example", "apache/htaccess.example", "cgi-bin/.htaccess.example"]
    for e in examples:
        p = inst(paths["docdir"], "examples", e)
        with open(os.path.join(SRCDIR, e), "rb") as f:
            src = f.read()
        tap.ok(os.path.exists(p) and open(p, "rb").read() == src, "example installed: " + e)
    for d in ("deploy.md", "scaling.md", "configuration.md"):
        tap.ok(os.path.exists(inst(paths["docdir"], d)), "documentation installed: " + d)

    # systemd units: installation paths substituted, hardening present, nothing left to fill in.
    units = {"imagetools-fcgi.service": paths["cgibindir"] + "/imagetools.fcgi",
             "imagetools-wsbridge.service": paths["bindir"] + "/imagetools-wsbridge",
             "imagetools-worker.service": paths["bindir"] + "/imagetools-worker"}
    for unit, exe in units.items():
        p = inst(paths["systemdunitdir"], unit)
        text = open(p).read() if os.path.exists(p) else ""
        tap.like(text, r"(?m)^ExecStart=%s$" % re.escape(exe), unit + ": ExecStart is the installed program")
        tap.ok("@" not in text, unit + ": no placeholder left")
        for key in ("NoNewPrivileges=yes", "ProtectSystem=strict", "PrivateTmp=yes", "DynamicUser=yes",
                    "Restart=on-failure"):
            tap.ok(("\n" + key + "\n") in text, unit + ": " + key)
        tap.like(text, r"(?m)^LoadCredential=imagetools\.conf:%s/imagetools\.conf$" % re.escape(paths["sysconfdir"]),
                 unit + ": reads the configuration from sysconfdir")
    sock = open(inst(paths["systemdunitdir"], "imagetools-fcgi.socket")).read()
    tap.like(sock, r"(?m)^ListenStream=/run/imagetools/imagetools\.fcgi\.sock$", "the socket unit's path")
    tap.like(sock, r"(?m)^SocketMode=0660$", "only owner and group may connect to the socket")
    apache_conf = open(os.path.join(SRCDIR, "apache", "imagetools.conf.example")).read()
    tap.like(apache_conf, r"(?m)^Define IT_SOCKET\s+/run/imagetools/imagetools\.fcgi\.sock$",
             "the Apache example points at the socket unit's path")
    # With the default prefix the examples work as installed: their paths are the install paths.
    if paths["pkgdatadir"] == "/usr/local/share/imagetools-rt":
        for e in ("lighttpd.conf.example", "lighttpd-cgi.conf.example"):
            text = open(os.path.join(SRCDIR, e)).read()
            tap.like(text, r'(?m)^var\.fcgi_bin\s*=\s*"%s/imagetools\.fcgi"$' % re.escape(paths["cgibindir"]),
                     e + ": fcgi_bin is where make install puts imagetools.fcgi")
            tap.like(text, r'(?m)^var\.webroot\s*=\s*"%s/web"$' % re.escape(paths["pkgdatadir"]),
                     e + ": webroot is where make install puts web/")
        tap.like(apache_conf, r"(?m)^Define IT_WEBROOT\s+%s/web$" % re.escape(paths["pkgdatadir"]),
                 "apache/imagetools.conf.example: IT_WEBROOT is where make install puts web/")
    else:
        tap.n += 1
        print("ok %d # SKIP the examples name the default prefix's paths; this is %s" % (tap.n, paths["pkgdatadir"]))
    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify"] +
                           [inst(paths["systemdunitdir"], u) for u in list(units) + ["imagetools-fcgi.socket"]],
                           capture_output=True, text=True)
        # Only syntax matters here: the programs it cannot find (not built yet, or not
        # executable inside DESTDIR) are not the units' fault.
        bad = [l for l in r.stderr.splitlines()
               if l.strip() and not re.search(r"is not executable|Unit sysinit\.target not found", l)]
        tap.is_(bad, [], "systemd-analyze verify finds nothing wrong in the units")

    # The example configuration: every key the programs know is in it, and with every line
    # uncommented it loads (an unknown key or bad value would stop the program).
    with open(os.path.join(SRCDIR, "src", "common", "config.c")) as f:
        keys = re.findall(r"^\s*(?:S|SC|I)\((\w+),", f.read(), re.M)
    example = open(os.path.join(SRCDIR, "imagetools.conf.example")).read()
    documented = re.findall(r"^# (\w+) =", example, re.M)
    tap.is_(sorted(set(keys) - set(documented)), [], "imagetools.conf.example lists every key")
    tap.is_(sorted(set(documented) - set(keys)), [], "and no key the programs do not know")
    with open(os.path.join(SRCDIR, "docs", "configuration.md")) as f:
        doc = f.read()
    tap.is_([k for k in keys if "`%s`" % k not in doc], [], "docs/configuration.md describes every key")

    with Stack(tap) as st:
        uncommented = re.sub(r"^# (\w+ =.*)$", r"\1", example, flags=re.M)
        uncommented = re.sub(r"(?m)^database_url = .*$", "database_url = " + st.conninfo, uncommented)
        conf = os.path.join(st.dir, "example.conf")
        with open(conf, "w") as f:
            f.write(uncommented)
        env = dict(os.environ, IMAGETOOLS_CONFIG=conf, REQUEST_METHOD="GET", QUERY_STRING="",
                   REQUEST_URI="/imagetools/api/v1/health", GATEWAY_INTERFACE="CGI/1.1", REMOTE_ADDR="127.0.0.1",
                   HTTP_HOST=re.search(r"(?m)^server_names = (\S+)", uncommented).group(1))
        p = subprocess.run([fcgi], env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        out = p.stdout.decode(errors="replace")
        tap.like(out, r"^Status: 200 OK\r\n", "the installed imagetools.fcgi runs with every example key set")
        if not tap.like(out, r'"database":"ok"', "and reaches the database"):
            tap.diag(p.stderr.decode(errors="replace")[-2000:])

        # The installed migrate command applies the installed migrations (idempotently: the
        # stack already migrated this database).
        r = subprocess.run([inst(paths["bindir"], "imagetools-migrate"), "--dir", inst(paths["pkgdatadir"], "sql"),
                            "--database", st.conninfo], capture_output=True, text=True)
        tap.is_(r.returncode, 0, "the installed imagetools-migrate runs the installed migrations")

    r = make("uninstall", "DESTDIR=" + dest)
    tap.is_(r.returncode, 0, "make uninstall succeeds")
    left = [os.path.join(d, f) for d, _, fs in os.walk(dest) for f in fs]
    tap.is_(left, [], "and leaves no file behind")

    check_unit_dirs()
except Exception as e:
    import traceback
    tap.ok(False, "test raised %s: %s" % (type(e).__name__, e))
    tap.diag(traceback.format_exc())
finally:
    shutil.rmtree(dest, ignore_errors=True)
tap.done()
