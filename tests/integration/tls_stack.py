"""tls_stack.py: the stacks of test_deploy_h2.py: lighttpd and Apache serving ImageTools over TLS with
HTTP/2, each started from its shipped files with a self-signed certificate.

    from tls_stack import LighttpdTlsStack, ApacheTlsStack
    with LighttpdTlsStack(tap, bridge=True) as st:    # lighttpd-tls.conf.example over lighttpd.conf.example
    with ApacheTlsStack(tap, bridge=True) as st:      # apache/imagetools.conf.example with IT_TLS defined

In both, st.port is the https port and st.http_port the plain one, which redirects to https
for the names the shipped file says. st.request(), st.url and st.curl() speak https (HTTP/1.1
for request(), whatever curl negotiates for curl()), trusting only st.cert, so everything
harness.py and deploy_scenarios.py do works unchanged through the TLS front.
"""

import http.client
import os
import ssl
import subprocess

from apache import ApacheStack
from harness import SRCDIR, Stack, free_port, render_lighttpd, wait_for


def make_cert(directory):
    """A self-signed certificate for localhost, 127.0.0.1 and ::1, made the way scripts/dev makes
    one (openssl req -x509, an EC P-256 key); returns (certificate path, key path)."""
    cert = os.path.join(directory, "tls-cert.pem")
    key = os.path.join(directory, "tls-key.pem")
    if not os.path.exists(cert):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                        "-keyout", key, "-out", cert], check=True, capture_output=True)
        # The web server may read it after dropping root (Apache's children do).
        os.chmod(key, 0o644)
    return cert, key


class TlsClient:
    """What a stack's clients need to speak https to it; mixed in before the stack class."""

    @property
    def url(self):
        return "https://127.0.0.1:%d" % self.port

    @property
    def origin(self):
        return self.url

    def ssl_context(self, alpn=("http/1.1",)):
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.set_alpn_protocols(list(alpn))
        return ctx

    def _connection(self, timeout):
        return http.client.HTTPSConnection("127.0.0.1", self.port, timeout=timeout, context=self.ssl_context())

    def curl(self, *args, check=False):
        return super().curl("--cacert", self.cert, *args, check=check)

    def tls_prepare(self):
        self.cert, self.key = make_cert(self.dir)
        if getattr(self, "http_port", None) is None:
            self.http_port = free_port()


class LighttpdTlsStack(TlsClient, Stack):
    """lighttpd-tls.conf.example including lighttpd.conf.example, both changed in their var. lines
    only: the plain port of the base file is st.http_port, the https port st.port."""

    def start_lighttpd(self):
        self.tls_prepare()
        self.acme_dir = os.path.join(self.dir, "acme")
        with open(os.path.join(SRCDIR, "lighttpd.conf.example")) as f:
            base = f.read()
        with open(os.path.join(SRCDIR, "lighttpd-tls.conf.example")) as f:
            tls = f.read()
        self.errorlog = os.path.join(self.dir, "lighttpd-error.log")
        with open(os.path.join(self.dir, "lighttpd.conf"), "w") as f:
            f.write(render_lighttpd(base, dict({
                "port": self.http_port, "bind": "127.0.0.1", "statedir": self.dir,
                "webroot": os.path.join(SRCDIR, "web"), "fcgi_bin": self.bin("cgi-bin/imagetools.fcgi"),
                "fcgi_procs": self.fcgi_procs, "config": self.config, "bridge_host": "127.0.0.1",
                "bridge_port": self.bridge_port, "errorlog": self.errorlog,
                "pidfile": os.path.join(self.dir, "lighttpd.pid")}, **self.lighttpd_vars)))
        # base_conf relative, as documented: lighttpd reads it next to the including file.
        self.lighttpd_conf = os.path.join(self.dir, "lighttpd-tls.conf")
        with open(self.lighttpd_conf, "w") as f:
            f.write(render_lighttpd(tls, {"base_conf": "lighttpd.conf", "tls_port": self.port,
                                          "tls_cert": self.cert, "tls_key": self.key, "acme_dir": self.acme_dir}))
        log = open(os.path.join(self.dir, "fcgi.log"), "ab")
        self.lighttpd = subprocess.Popen(["lighttpd", "-D", "-f", self.lighttpd_conf], env=self.env(),
                                         stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        log.close()
        wait_for(lambda: self._health_answers(), timeout=20, what="lighttpd over TLS and imagetools.fcgi")


class ApacheTlsStack(TlsClient, ApacheStack):
    """apache/imagetools.conf.example with its "#Define IT_TLS" line switched on and its Define lines
    set; the host loads mod_ssl and mod_http2 and listens on the plain port too."""

    def __init__(self, tap, **kw):
        super().__init__(tap, mode="fcgi", enable=("IT_TLS",) + tuple(kw.pop("enable", ())), **kw)

    def start_lighttpd(self):
        self.tls_prepare()
        self.extra_defines = {"IT_TLS_CERT": self.cert, "IT_TLS_KEY": self.key, "IT_HTTP_PORT": str(self.http_port)}
        self.extra_modules = ["socache_shmcb", "ssl", "http2"]
        self.extra_host_lines = ["Listen 127.0.0.1:%d" % self.http_port,
                                 "SSLSessionCache shmcb:%s(512000)" % os.path.join(self.dir, "ssl_scache")]
        super().start_lighttpd()
