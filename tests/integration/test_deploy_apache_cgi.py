"""test_deploy_apache_cgi.py: the deployment scenarios on shared hosting: Apache mod_cgi,
the shipped .htaccess files in a subdirectory (/imagetools, url_prefix), no daemons."""

import os
import shutil

from apache import ApacheStack, documented_allowoverride, prerequisites
from deploy_scenarios import SETTINGS, run_all
from harness import SRCDIR, Tap

why = prerequisites("apache")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
# The host's <Directory> allows exactly the overrides apache/htaccess.example says it needs,
# and the deployment guide says the same.
override = documented_allowoverride()
with open(os.path.join(SRCDIR, "docs", "deploy.md")) as f:
    tap.ok("`AllowOverride %s`" % override in f.read(),
           "docs/deploy.md names the AllowOverride the .htaccess files need: %s" % override)
# Apache notices a departed client only when a write fails: with a 2 s keepalive the
# stream's process must be gone within a few keepalives.
with ApacheStack(tap, mode="cgi", prefix="/imagetools", settings=dict(SETTINGS, keepalive_interval=2)) as st:
    run_all(tap, st, mode="cgi", label="apache cgi", websocket=False, client_gone_within=10)

    # On shared hosting everything sits in the web space: only the binary in cgi-bin/ may be
    # reachable, so a configuration copied there by mistake (it holds the database
    # password) is refused, and so are the .htaccess files and directory listings.
    shutil.copy(st.config, os.path.join(st.appdir, "cgi-bin", "imagetools.conf"))
    for path in ("/cgi-bin/imagetools.conf", "/cgi-bin/.htaccess", "/.htaccess", "/cgi-bin/"):
        r = st.request("GET", st.prefix + path)
        tap.ok(r.status == 403 and b"database_url" not in r.body and b"SetEnv" not in r.body,
               "apache cgi: %s is refused (%d)" % (path, r.status))
    r = st.request("GET", st.prefix + "/cgi-bin/imagetools.fcgi")
    st.is_problem(r, 404, "apache cgi: the binary's own URL is no API route")
tap.done()
