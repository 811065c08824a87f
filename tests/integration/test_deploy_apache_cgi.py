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
with ApacheStack(tap, mode="cgi", prefix="/imagetools") as st:
    run_all(tap, st, mode="cgi", label="apache cgi", websocket=False)
tap.done()
