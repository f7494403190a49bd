"""An app for the start-up audit: imports the modules AUDIT_IMPORTS names (comma-separated), then
does what AUDIT_SETUP names: psycogreen, grpc-gevent (the fixes), threadpool (a real OS thread
of gevent's own)."""

import importlib
import os

for _name in filter(None, os.environ.get("AUDIT_IMPORTS", "").split(",")):
    importlib.import_module(_name)

_SETUP = os.environ.get("AUDIT_SETUP", "").split(",")
if "psycogreen" in _SETUP:
    import psycogreen.gevent

    psycogreen.gevent.patch_psycopg()
if "grpc-gevent" in _SETUP:
    import grpc.experimental.gevent

    grpc.experimental.gevent.init_gevent()
if "threadpool" in _SETUP:
    import gevent

    gevent.get_hub().threadpool.apply(sum, ((1, 2),))


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]
