"""test_deploy_apache_cgi.py: the deployment scenarios on shared hosting: Apache mod_cgi,
the shipped .htaccess files in a subdirectory (/imagetools, url_prefix), no daemons."""

from apache import ApacheStack, prerequisites
from deploy_scenarios import run_all
from harness import Tap

why = prerequisites("apache")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
# Apache notices a departed client only when a write fails: with a 2 s keepalive the
# stream's process must be gone within a few keepalives.
with ApacheStack(tap, mode="cgi", prefix="/imagetools", settings={"keepalive_interval": 2}) as st:
    run_all(tap, st, mode="cgi", label="apache cgi", websocket=False, client_gone_within=10)
tap.done()
