"""apache.py: the other web servers of the deployment tests, next to harness.py's lighttpd.

    from apache import ApacheStack, LighttpdCgiStack
    with ApacheStack(tap, mode="fcgi") as st:     # Apache mod_proxy_fcgi + imagetools.fcgi --socket
    with ApacheStack(tap, mode="cgi") as st:      # Apache mod_cgi, shared-hosting layout, no bridge
    with LighttpdCgiStack(tap) as st:             # lighttpd mod_cgi (lighttpd-cgi.conf.example)

Each is a harness.Stack (same PostgreSQL handling, request(), curl(), sql() ...) whose web
server is started from the shipped example configs, templated only for ports and paths:
apache/imagetools.conf.example by its Define lines, the .htaccess examples by their
IMAGETOOLS_CONFIG line, lighttpd-cgi.conf.example by its var. lines. What the hosting
provider would configure (ServerRoot, modules, Listen, the user) is written here, in the
smallest form Debian's apache2 accepts. `prefix` is the URL path the API sits under
(shared hosting puts it in a subdirectory); tests build URLs as st.prefix + "/api/v1/...".
"""

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess

from harness import SRCDIR, Stack, render_lighttpd, wait_for

APACHE = os.environ.get("IT_APACHE", "/usr/sbin/apache2")
APACHE_MODULES = "/usr/lib/apache2/modules"
# The unprivileged user Apache's children (and, under Apache, imagetools.fcgi) run as when
# the tests run as root, as on a real server.
WEB_USER = os.environ.get("IT_WEB_USER", "www-data")


def prerequisites(*servers):
    """Returns None when every named server can run here, else the reason it cannot."""
    if not os.path.exists("/usr/lib/postgresql/15/bin/postgres"):
        return "PostgreSQL 15 server binaries are not installed"
    for s in servers:
        if s == "apache" and not os.access(APACHE, os.X_OK):
            return "Apache (%s) is not installed" % APACHE
        if s == "lighttpd" and shutil.which("lighttpd") is None:
            return "lighttpd is not installed"
    return None


def render_defines(template, values):
    """Replaces the values of the `Define NAME value` lines named in values, nothing else."""
    out = []
    for line in template.splitlines():
        m = re.match(r"^Define\s+(\w+)\s", line)
        if m and m.group(1) in values:
            line = "Define %s %s" % (m.group(1), values[m.group(1)])
        out.append(line)
    return "\n".join(out) + "\n"


def render_setenv(template, values):
    """Replaces the values of the `SetEnv NAME value` lines named in values, nothing else."""
    out = []
    for line in template.splitlines():
        m = re.match(r"^SetEnv\s+(\w+)\s", line)
        if m and m.group(1) in values:
            line = "SetEnv %s %s" % (m.group(1), values[m.group(1)])
        out.append(line)
    return "\n".join(out) + "\n"


def documented_allowoverride():
    """The AllowOverride value apache/htaccess.example says the host must give (its "Needs from
    the host: AllowOverride ..." line): the shared-hosting test runs with exactly that."""
    with open(os.path.join(SRCDIR, "apache", "htaccess.example")) as f:
        m = re.search(r"(?m)^## Needs from the host: AllowOverride (.+)$", f.read())
    if m is None:
        raise RuntimeError("apache/htaccess.example does not say which AllowOverride it needs")
    return m.group(1).strip()


SANITIZER_RE = re.compile(r"ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:")


def check_logs_for_sanitizers(st, names):
    """Fails st's test for sanitizer reports that reached a server's error log: CGI
    programs' stderr goes there, and Apache gives CGI programs none of our environment
    (so no ASAN_OPTIONS log_path)."""
    for name in names:
        p = os.path.join(st.dir, name)
        if not os.path.exists(p):
            continue
        with open(p, errors="replace") as f:
            text = f.read()
        m = SANITIZER_RE.search(text)
        if m:
            st.tap.ok(False, "no sanitizer report in %s" % name)
            st.tap.diag(text[max(0, m.start() - 200):m.start() + 6000])


def web_user():
    """(uid, gid, name) to drop to, or None when not root (everything then runs as we are)."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam(WEB_USER)
    return pw.pw_uid, pw.pw_gid, WEB_USER


class ApacheStack(Stack):
    """PostgreSQL + Apache 2.4 serving the API as FastCGI (mode "fcgi": mod_proxy_fcgi to
    imagetools.fcgi on a Unix socket, the bridge behind mod_proxy) or as plain CGI (mode
    "cgi": mod_cgi, the shipped .htaccess files in a shared-hosting directory layout)."""

    def __init__(self, tap, mode="fcgi", prefix=None, activation="socket", enable=(), **kw):
        if mode == "cgi":
            prefix = "/imagetools" if prefix is None else prefix
        self.mode = mode
        self.prefix = prefix or ""
        self.activation = activation
        self.enable = tuple(enable)  # optional "#Define NAME" lines of the example to switch on
        self.extra_defines = {}      # more Define lines of the example to set (tls_stack.py)
        self.extra_modules = []      # more modules the host loads, and lines it adds (tls_stack.py)
        self.extra_host_lines = []
        self.apache = None
        self.fcgi = None
        settings = dict(kw.pop("settings", None) or {})
        if self.prefix:
            settings.setdefault("url_prefix", self.prefix)
        super().__init__(tap, settings=settings, **kw)

    def env(self):
        """harness.Stack.env(), with sanitizer reports going to a directory the web user
        (whom imagetools.fcgi runs as) can write to."""
        e = super().env()
        sandir = os.path.join(self.dir, "san")
        if not os.path.isdir(sandir):
            os.makedirs(sandir)
            os.chmod(sandir, 0o1777)
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            e[k] = e[k].replace("log_path=%s:" % os.path.join(self.dir, "sanitizer"),
                                "log_path=%s:" % os.path.join(sandir, "sanitizer"))
        return e

    def check_sanitizers(self):
        super().check_sanitizers()
        sandir = os.path.join(self.dir or "", "san")
        if os.path.isdir(sandir):
            check_logs_for_sanitizers(self, [os.path.join("san", n) for n in sorted(os.listdir(sandir))])
        check_logs_for_sanitizers(self, ["apache-error.log", "imagetools-error.log", "fcgi.log"])

    # harness.Stack.start() calls start_lighttpd() once the database and the bridge are up:
    # here that starts Apache (and the FastCGI backend) instead.
    def start_lighttpd(self):
        self.errorlog = os.path.join(self.dir, "apache-error.log")
        self.web = web_user()
        if self.mode == "fcgi":
            self.start_fcgi()
            site = self.render_fcgi_site()
        else:
            site = self.render_cgi_site()
        self.apache_conf = os.path.join(self.dir, "apache.conf")
        with open(self.apache_conf, "w") as f:
            f.write(self.host_config(site))
        r = subprocess.run([APACHE, "-t", "-f", self.apache_conf], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("apache2 -t: " + r.stderr)
        self.apache = subprocess.Popen([APACHE, "-f", self.apache_conf, "-DFOREGROUND"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       start_new_session=True)
        wait_for(lambda: self._health_answers(), timeout=20, what="Apache and imagetools.fcgi")

    def _health_answers(self):
        r = self.request("GET", self.prefix + "/api/v1/health", timeout=5)
        return r.status in (200, 503)

    def stop_lighttpd(self):
        if self.apache and self.apache.poll() is None:
            # SIGTERM: Apache stops its children (and their CGI processes) and exits.
            self.apache.terminate()
            try:
                self.apache.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.apache.pid, signal.SIGKILL)
                self.apache.wait()
        self.apache = None
        self.stop_fcgi()
        self.kill_fcgi(signal.SIGKILL, only_stray=True)

    # -- the FastCGI backend, started the way a service manager would

    @property
    def socket_path(self):
        return os.path.join(self.rundir, "imagetools.fcgi.sock")

    def start_fcgi(self):
        """Starts imagetools.fcgi on a Unix socket, as the web user when we are root: with
        --socket PATH (it creates the socket), or with activation="systemd" the way
        imagetools-fcgi.socket hands it over (a listening socket on fd 3, LISTEN_FDS/LISTEN_PID)."""
        self.rundir = os.path.join(self.dir, "run")
        os.makedirs(self.rundir, exist_ok=True)
        if self.web:
            os.chown(self.rundir, self.web[0], self.web[1])
        log = open(os.path.join(self.dir, "fcgi.log"), "ab")
        binary = self.bin("cgi-bin/imagetools.fcgi")
        drop = ["runuser", "-u", self.web[2], "--"] if self.web else []
        if self.activation == "systemd":
            lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            if os.path.exists(self.socket_path):
                os.unlink(self.socket_path)
            lsock.bind(self.socket_path)
            # What SocketMode=0660 + SocketGroup=www-data give: only the web server may connect.
            os.chmod(self.socket_path, 0o660)
            if self.web:
                os.chown(self.socket_path, 0, self.web[1])
            lsock.listen(128)
            # LISTEN_PID must be the pid of the process that reads it: the shell sets it
            # to its own pid and then becomes imagetools.fcgi with exec.
            cmd = drop + ["sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 exec "$0"', binary]
            self.fcgi = subprocess.Popen(cmd, env=self.env(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=lambda: os.dup2(lsock.fileno(), 3),
                                         close_fds=False, start_new_session=True)
            lsock.close()
        else:
            self.fcgi = subprocess.Popen(drop + [binary, "--socket", self.socket_path], env=self.env(),
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
            wait_for(lambda: os.path.exists(self.socket_path), timeout=10, what="the FastCGI socket")
        log.close()

    def stop_fcgi(self):
        if self.fcgi and self.fcgi.poll() is None:
            os.killpg(self.fcgi.pid, signal.SIGTERM)
            try:
                self.fcgi.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.fcgi.pid, signal.SIGKILL)
                self.fcgi.wait()
        self.fcgi = None

    def restart_fcgi(self, activation=None):
        self.stop_fcgi()
        if activation:
            self.activation = activation
        self.start_fcgi()

    # -- configuration

    def render_fcgi_site(self):
        with open(os.path.join(SRCDIR, "apache", "imagetools.conf.example")) as f:
            template = f.read()
        webroot = os.path.join(self.dir, "htdocs")
        self.copy_web(webroot)
        for name in self.enable:
            template = re.sub(r"^#Define %s$" % name, "Define %s" % name, template, flags=re.M)
        return render_defines(template, {
            "IT_PORT": str(self.port), "IT_SERVERNAME": "127.0.0.1", "IT_WEBROOT": webroot,
            "IT_SOCKET": self.socket_path, "IT_BRIDGE": "127.0.0.1:%d" % self.bridge_port,
            "IT_LOGDIR": self.dir, **self.extra_defines})

    def render_cgi_site(self):
        """The shared-hosting layout of apache/htaccess.example under a document root that
        allows exactly the .htaccess overrides that file says it needs (documented_allowoverride),
        as a hosting provider configures it."""
        docroot = os.path.join(self.dir, "public_html")
        appdir = self.appdir = docroot + self.prefix
        self.copy_web(appdir)
        cgidir = os.path.join(appdir, "cgi-bin")
        os.makedirs(cgidir, exist_ok=True)
        shutil.copy2(os.path.join(SRCDIR, "apache", "htaccess.example"), os.path.join(appdir, ".htaccess"))
        with open(os.path.join(SRCDIR, "cgi-bin", ".htaccess.example")) as f:
            htaccess = render_setenv(f.read(), {"IMAGETOOLS_CONFIG": self.config})
        with open(os.path.join(cgidir, ".htaccess"), "w") as f:
            f.write(htaccess)
        shutil.copy2(self.bin("cgi-bin/imagetools.fcgi"), os.path.join(cgidir, "imagetools.fcgi"))
        return """
<VirtualHost *:%(port)d>
	ServerName 127.0.0.1
	DocumentRoot %(docroot)s
	<Directory %(docroot)s>
		AllowOverride %(override)s
		Options SymLinksIfOwnerMatch
		Require all granted
	</Directory>
</VirtualHost>
""" % {"port": self.port, "docroot": docroot, "override": documented_allowoverride()}

    def copy_web(self, dest):
        src = os.path.join(SRCDIR, "web")
        if os.path.isdir(src):
            shutil.copytree(src, dest, dirs_exist_ok=True)
        else:
            os.makedirs(dest, exist_ok=True)

    def host_config(self, site):
        mods = ["mpm_event", "authz_core", "authz_host", "mime", "dir", "alias", "env", "setenvif", "headers",
                "rewrite", "filter", "deflate", "reqtimeout", "proxy", "proxy_fcgi", "proxy_http", "proxy_wstunnel"]
        mods += self.extra_modules
        if self.mode == "cgi":
            # The classic shared host: prefork, mod_cgi forking each CGI from its child.
            mods[0] = "mpm_prefork"
            mods.append("cgi")
        lines = ["# Written by tests/integration/apache.py: the host's part of the configuration.",
                 "ServerRoot %s" % self.dir,
                 "DefaultRuntimeDir %s" % self.dir,
                 "PidFile %s" % os.path.join(self.dir, "apache.pid"),
                 "Mutex file:%s default" % self.dir,
                 "ErrorLog %s" % self.errorlog,
                 "LogLevel warn",
                 "Listen 127.0.0.1:%d" % self.port,
                 "ServerName 127.0.0.1",
                 "TypesConfig /etc/mime.types",
                 "Timeout 300",
                 "KeepAlive On",
                 "<Directory />", "\tAllowOverride None", "\tRequire all denied", "</Directory>",
                 '<FilesMatch "^\\.ht">', "\tRequire all denied", "</FilesMatch>",
                 "AccessFileName .htaccess",
                 # The worst a host may do to a stream: compress every response it can
                 # (Debian compresses only some types by default). The shipped configs
                 # must keep event routes out of it.
                 "SetOutputFilter DEFLATE",
                 "RequestReadTimeout header=20-40,MinRate=500 body=20,MinRate=500"]
        lines[1:1] = ["LoadModule %s_module %s/mod_%s.so" % (m, APACHE_MODULES, m) for m in mods]
        lines += self.extra_host_lines
        if self.web:
            lines += ["User %s" % self.web[2], "Group #%d" % self.web[1]]
        return "\n".join(lines) + "\n" + site

    def dump_logs(self):
        super().dump_logs()
        if not self.dir:
            return
        for name in ("apache-error.log", "imagetools-error.log", "fcgi.log"):
            p = os.path.join(self.dir, name)
            if os.path.exists(p):
                with open(p, errors="replace") as f:
                    lines = f.readlines()[-40:]
                self.tap.diag("---- %s (last %d lines)" % (name, len(lines)))
                self.tap.diag("".join(lines))


class LighttpdCgiStack(Stack):
    """PostgreSQL + lighttpd running imagetools.fcgi as plain CGI (lighttpd-cgi.conf.example)."""

    prefix = ""

    def check_sanitizers(self):
        super().check_sanitizers()
        check_logs_for_sanitizers(self, ["lighttpd-error.log"])

    def start_lighttpd(self):
        with open(os.path.join(SRCDIR, "lighttpd-cgi.conf.example")) as f:
            template = f.read()
        self.lighttpd_conf = os.path.join(self.dir, "lighttpd.conf")
        self.errorlog = os.path.join(self.dir, "lighttpd-error.log")
        with open(self.lighttpd_conf, "w") as f:
            f.write(render_lighttpd(template, {
                "port": self.port, "bind": "127.0.0.1", "statedir": self.dir,
                "webroot": os.path.join(SRCDIR, "web"), "fcgi_bin": self.bin("cgi-bin/imagetools.fcgi"),
                "config": self.config, "errorlog": self.errorlog,
                "pidfile": os.path.join(self.dir, "lighttpd.pid")}))
        self.lighttpd = subprocess.Popen(["lighttpd", "-D", "-f", self.lighttpd_conf], env=self.env(),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         start_new_session=True)
        wait_for(lambda: self._health_answers(), timeout=20, what="lighttpd and the CGI")

