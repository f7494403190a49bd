"""An app that counts its own requests with prometheus_client in multiprocess mode: the server
sets PROMETHEUS_MULTIPROC_DIR (a fresh directory per start) and serves these on --metrics-bind.

``/`` answers ``hello``; ``/pid`` the worker's PID; ``/spin?S`` spins the CPU for S seconds
(the event loop with it); ``/ssl`` the worker's PID and the module of its ssl.SSLContext (gevent.ssl
once patched); ``/dir`` the PROMETHEUS_MULTIPROC_DIR it was given.
"""

import os
import time

from prometheus_client import Counter, Gauge

REQUESTS = Counter("app_requests", "Requests the app answered.", ["path"])
WORKERS = Gauge("app_workers_alive", "1 per live worker.", multiprocess_mode="livesum")
WORKERS.set(1)


def app(environ, start_response):
    path = environ["PATH_INFO"]
    REQUESTS.labels(path=path).inc()
    if path == "/pid":
        body = str(os.getpid())
    elif path == "/spin":
        end = time.time() + float(environ.get("QUERY_STRING") or "1")
        while time.time() < end:
            pass
        body = "spun"
    elif path == "/dir":
        body = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    elif path == "/ssl":
        import ssl

        body = f"{os.getpid()} {ssl.SSLContext.__module__}"
    else:
        body = "hello"
    data = body.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(data)))])
    return [data]
