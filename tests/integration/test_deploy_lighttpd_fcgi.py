"""test_deploy_lighttpd_fcgi.py: the deployment scenarios under lighttpd mod_fastcgi
(lighttpd.conf.example), the bridge behind mod_proxy."""

from apache import prerequisites
from deploy_scenarios import SETTINGS, run_all
from harness import Stack, Tap

why = prerequisites("lighttpd")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
with Stack(tap, bridge=True, worker=False, settings=SETTINGS) as st:
    # tcp-fin-propagate tells the backend at once, long before the next keepalive (15 s).
    run_all(tap, st, mode="fastcgi", label="lighttpd fastcgi", client_gone_within=5)
tap.done()
