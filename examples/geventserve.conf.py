"""A production config for geventserve behind nginx (examples/nginx.conf); a Python file.

Run it: .venv/bin/geventserve -c examples/geventserve.conf.py
(check it without serving: add --check-config; the setting names are in docs/settings.md.)

Every name without a leading underscore must be a setting or a server hook (anything else is a
warning), so helpers here start with "_". The command line overrides any value set here, e.g.
`-c examples/geventserve.conf.py -b unix:/run/geventserve.sock myproject.wsgi:app`.
"""

import os

# -- the application
# Where the code lives and what to serve. Here: this directory and its Flask hello world, so the
# file works from a checkout; in production, chdir = "/srv/app" and your project's WSGI object.
chdir = os.path.dirname(os.path.abspath(__file__))
wsgi_app = "hello:app"

# -- listening
# Loopback only: nginx, on the same host, is the only client; it terminates TLS, buffers slow
# clients and serves static files. A unix socket ("unix:/run/geventserve.sock") saves the TCP
# overhead; under systemd socket activation (examples/systemd/) this setting is ignored.
bind = ["127.0.0.1:8000"]

# -- workers
# gevent: each worker serves many connections at once, so one process per core is enough (the
# GIL keeps one process on one core); WEB_CONCURRENCY lets the deployment choose.
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY") or len(os.sched_getaffinity(0)))
# Concurrent connections per worker. Beyond it new connections wait in the kernel backlog rather
# than being refused; keep it within what the app's own resources (database pool) can take.
worker_connections = 1000

# -- timeouts
# A worker whose event loop is blocked this long (CPU-bound code, a C call that does not yield)
# is logged with its stack and replaced: the other requests of that worker are stuck meanwhile.
timeout = 30
# On TERM or HUP, requests under way get this long to finish. systemd's TimeoutStopSec must be a
# bit longer (examples/systemd/geventserve.service), or it kills them first.
graceful_timeout = 30
# Idle keep-alive connections from nginx are kept this long. Longer than nginx's upstream
# keepalive_timeout (60 s in examples/nginx.conf), so that nginx, not us, closes idle
# connections: it never sends a request on a connection we are closing at the same moment.
keepalive = 75

# -- worker recycling
# Replace a worker after about this many requests to bound slow memory leaks; the jitter spreads
# the replacements so the workers are not all recycled at once (a replacement is ready before
# the old worker stops accepting, so this costs no capacity).
max_requests = 10000
max_requests_jitter = 1000

# -- behind a proxy
# Peers trusted to set X-Forwarded-For (-> REMOTE_ADDR) and X-Forwarded-Proto (-> https URLs):
# nginx on this host. Unix-socket peers are always trusted. Never "*" on a reachable port:
# any client could then claim any address.
forwarded_allow_ips = ["127.0.0.1", "::1"]

# -- logging
# Standard output and standard error: systemd's journal (or the container runtime) collects and
# rotates them. For files, use paths the service user may write, and USR1 after rotation.
accesslog = "-"
# gunicorn's atoms; %(h)s is the client address nginx reported, %(M)s the duration in ms.
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(M)sms'
errorlog = "-"
loglevel = "info"


# -- server hooks (gunicorn's names and arguments; see docs/settings.md)
def post_fork(server, worker):
    """In each new worker, right after the fork and before the app is imported.

    The place to drop anything inherited from the supervisor that must not be shared between
    processes (an open database connection, a random seed); here it only says hello.
    """
    server.log.info("worker %s started (worker number %s)", worker.pid, worker.age)
