"""nginx_stack.py: nginx in front of imagetools.fcgi, for the deployment tests.

    from nginx_stack import NginxStack, nginx_missing
    with NginxStack(tap, bridge=True) as st:     # nginx (nginx.conf.example) + imagetools.fcgi --socket

A harness.Stack whose web server is Debian's nginx started from the shipped
nginx.conf.example, changed only on its lines marked "edit:" (port, name, paths), and
included in the smallest http {} block a host would have around it: the part written here
(pid file, temporary directories, logs in the stack's directory, the worker user). That
part also compresses every type it can (gzip_types *), the worst a host may do to a
stream, so the site's own settings must keep events out of it. imagetools.fcgi runs on its
own Unix socket as the web user, exactly as under Apache (apache.ApacheStack.start_fcgi).
"""

import os
import re
import signal
import subprocess

from apache import ApacheStack, web_user
from harness import SRCDIR, wait_for

NGINX = os.environ.get("IT_NGINX", "/usr/sbin/nginx")


def nginx_missing():
    """None when nginx and its FastCGI parameters are installed, else why the test cannot run."""
    if not os.access(NGINX, os.X_OK):
        return "nginx (%s) is not installed" % NGINX
    if not os.path.exists("/etc/nginx/fastcgi_params") or not os.path.exists("/etc/nginx/mime.types"):
        return "/etc/nginx/fastcgi_params or mime.types is missing (Debian package nginx-common)"
    return None


def render_edit_lines(template, values):
    """Replaces the arguments of the directives on lines marked "# edit:" whose directive
    (or, inside an upstream block, "upstream-name server") is a key of values; every other
    line stays as shipped. Returns the text and the set of keys used."""
    out, used, upstream = [], set(), None
    for line in template.splitlines():
        m = re.match(r"^\s*upstream\s+(\w+)\s*\{", line)
        if m:
            upstream = m.group(1)
        elif re.match(r"^\s*\}", line):
            upstream = None
        m = re.match(r"^(\s*)(\w+)\s+[^;]*;(\s*#\s*edit:.*)$", line)
        if m:
            key = "%s %s" % (upstream, m.group(2)) if upstream and m.group(2) == "server" else m.group(2)
            if key in values:
                line = "%s%s %s;%s" % (m.group(1), m.group(2), values[key], m.group(3))
                used.add(key)
        out.append(line)
    return "\n".join(out) + "\n", used


class NginxStack(ApacheStack):
    """PostgreSQL + nginx (nginx.conf.example) + imagetools.fcgi on a Unix socket (+ bridge)."""

    def __init__(self, tap, **kw):
        super().__init__(tap, mode="fcgi", **kw)
        self.nginx = None

    def start_lighttpd(self):
        self.errorlog = os.path.join(self.dir, "nginx-error.log")
        self.web = web_user()
        self.start_fcgi()
        webroot = os.path.join(self.dir, "htdocs")
        self.copy_web(webroot)
        with open(os.path.join(SRCDIR, "nginx.conf.example")) as f:
            template = f.read()
        values = {
            "listen": "127.0.0.1:%d" % self.port, "server_name": "127.0.0.1", "root": webroot,
            "error_log": os.path.join(self.dir, "imagetools-error.log"),
            "access_log": os.path.join(self.dir, "imagetools-access.log"),
            "imagetools_fcgi server": "unix:" + self.socket_path,
            "imagetools_bridge server": "127.0.0.1:%d" % self.bridge_port,
        }
        site, used = render_edit_lines(template, values)
        missing = set(values) - used
        if missing:
            raise RuntimeError("nginx.conf.example has no 'edit:' line for %s" % ", ".join(sorted(missing)))
        with open(os.path.join(self.dir, "imagetools-site.conf"), "w") as f:
            f.write(site)
        tmp = os.path.join(self.dir, "nginx-tmp")
        os.makedirs(tmp, exist_ok=True)
        if self.web:
            os.chown(tmp, self.web[0], self.web[1])
        lines = [
            "# Written by tests/integration/nginx_stack.py: the host's part of the configuration.",
            "daemon off;",
            "master_process on;",
            "worker_processes 1;",
            "pid %s;" % os.path.join(self.dir, "nginx.pid"),
            "error_log %s warn;" % self.errorlog,
            "events { worker_connections 1024; }",
            "http {",
            "\tinclude /etc/nginx/mime.types;",
            "\tdefault_type application/octet-stream;",
            "\tsendfile on;",
            "\tclient_body_temp_path %s/body;" % tmp,
            "\tfastcgi_temp_path %s/fastcgi;" % tmp,
            "\tproxy_temp_path %s/proxy;" % tmp,
            "\tscgi_temp_path %s/scgi;" % tmp,
            "\tuwsgi_temp_path %s/uwsgi;" % tmp,
            "\taccess_log off;",
            "\tgzip on;",
            "\tgzip_types *;",
            "\tgzip_min_length 1;",
            "\tinclude %s;" % os.path.join(self.dir, "imagetools-site.conf"),
            "}",
        ]
        if self.web:
            lines.insert(1, "user %s;" % self.web[2])
        self.nginx_conf = os.path.join(self.dir, "nginx.conf")
        with open(self.nginx_conf, "w") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([NGINX, "-t", "-p", self.dir, "-c", self.nginx_conf], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("nginx -t: " + r.stderr)
        self.nginx = subprocess.Popen([NGINX, "-p", self.dir, "-c", self.nginx_conf],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                      start_new_session=True)
        wait_for(lambda: self._health_answers(), timeout=20, what="nginx and imagetools.fcgi")

    def stop_lighttpd(self):
        if self.nginx and self.nginx.poll() is None:
            # SIGQUIT would wait for open streams; SIGTERM ends nginx at once.
            self.nginx.terminate()
            try:
                self.nginx.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.nginx.pid, signal.SIGKILL)
                self.nginx.wait()
        self.nginx = None
        self.stop_fcgi()
        self.kill_fcgi(signal.SIGKILL, only_stray=True)

    def dump_logs(self):
        super().dump_logs()
        if not self.dir:
            return
        p = os.path.join(self.dir, "nginx-error.log")
        if os.path.exists(p):
            with open(p, errors="replace") as f:
                lines = f.readlines()[-40:]
            self.tap.diag("---- nginx-error.log (last %d lines)" % len(lines))
            self.tap.diag("".join(lines))
