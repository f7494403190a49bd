"""An app that imports ssl and requests at its top, for --preload with the gevent worker.

Its view calls an upstream over HTTP; with the standard library patched before this module was
imported (in the supervisor), the call is cooperative.
"""

import os
import ssl  # noqa: F401

import requests

UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9")
session = requests.Session()


def app(environ, start_response):
    if environ["PATH_INFO"] == "/call-upstream":
        body = session.get(UPSTREAM + "/sleep?0.5", timeout=10).content
    else:
        body = b"ok"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
