"""A slow HTTP service for examples/io_bound.py to wait on: it answers after ?delay= seconds.

Run it: .venv/bin/geventserve -k gevent -w 1 -b 127.0.0.1:8001 --chdir examples upstream:app

A plain WSGI app (no framework). Under the gevent worker time.sleep is patched, so one worker
keeps thousands of these waits going at once, like a real slow service would.
GET /?delay=0.1 -> 200 {"delay": 0.1} after 0.1 s; a delay that is not a number from 0 to
MAX_DELAY -> 400.
"""

import json
import math
import time
from urllib.parse import parse_qs

MAX_DELAY = 30.0  # seconds; bounds what one request can make the server hold


def _respond(start_response, status, payload):
    body = json.dumps(payload).encode()
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    text = query.get("delay", ["0"])[0]
    try:
        delay = float(text)
    except ValueError:
        delay = math.nan
    if not 0 <= delay <= MAX_DELAY:  # also refuses nan and inf
        return _respond(start_response, "400 Bad Request",
                        {"error": f"delay must be a number of seconds from 0 to {MAX_DELAY:g}",
                         "got": text})
    time.sleep(delay)
    return _respond(start_response, "200 OK", {"delay": delay})


application = app
