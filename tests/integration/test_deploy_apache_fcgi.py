"""test_deploy_apache_fcgi.py: the deployment scenarios under Apache mod_proxy_fcgi
(apache/imagetools.conf.example) with imagetools.fcgi started on its own Unix socket, first
with --socket, then handed the socket the way systemd socket activation does."""

from apache import ApacheStack, prerequisites
from deploy_scenarios import SETTINGS, check_basics, run_all
from harness import Tap

why = prerequisites("apache")
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
# Apache notices a departed client only when a write fails: with a 2 s keepalive the
# stream must be released within a few keepalives.
with ApacheStack(tap, mode="fcgi", bridge=True, settings=dict(SETTINGS, keepalive_interval=2)) as st:
    run_all(tap, st, mode="fastcgi", label="apache proxy_fcgi", client_gone_within=10)

    # imagetools-fcgi.socket: systemd creates the socket (root:www-data 0660) and the
    # service inherits it on fd 3 with LISTEN_FDS=1 and LISTEN_PID.
    st.restart_fcgi(activation="systemd")
    check_basics(tap, st, "fastcgi", "apache proxy_fcgi, socket-activated")
tap.done()
