"""test_deploy_lighttpd_cgi.py: the deployment scenarios under lighttpd mod_cgi
(lighttpd-cgi.conf.example): one process per request, no bridge."""

from apache import LighttpdCgiStack, prerequisites
from deploy_scenarios import SETTINGS, run_all
from harness import Tap

why = prerequisites("lighttpd")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
with LighttpdCgiStack(tap, settings=SETTINGS) as st:
    # tcp-fin-propagate ends the process at once, long before the next keepalive (15 s).
    run_all(tap, st, mode="cgi", label="lighttpd cgi", websocket=False, client_gone_within=5)
tap.done()
