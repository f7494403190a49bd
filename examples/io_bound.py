"""An I/O-bound Flask app: its views wait on an HTTP upstream, on a sleep, or stream slowly.

Run it: .venv/bin/geventserve -k gevent -w 2 -b 127.0.0.1:8000 --chdir examples io_bound:app
(/upstream needs examples/upstream.py on $UPSTREAM_URL, by default http://127.0.0.1:8001.)

The gevent worker patches the standard library before it imports this module, so the sockets
under `requests` and time.sleep yield to other greenlets while they wait: one worker serves many
of these requests at once, with no change to the code.

    GET /upstream?delay=0.1   calls the upstream, which answers after `delay` seconds
    GET /sleep?seconds=0.1    sleeps, then answers
    GET /stream?chunks=5      streams `chunks` lines, a short pause between them
"""

import os
import time

import requests
from flask import Flask, Response, abort, request
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

UPSTREAM_URL = os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8001")
UPSTREAM_TIMEOUT = (3.0, 35.0)  # connect, read: a little over the upstream's 30 s bound
MAX_SECONDS = 30.0
MAX_CHUNKS = 100
CHUNK_PAUSE = 0.05

app = Flask(__name__)

# One session for the process: it keeps connections to the upstream alive between requests.
# The pool is sized for many concurrent greenlets (the default keeps only 10 connections).
# A pooled connection can be closed by the upstream (its keep-alive timeout) just as a request
# goes out on it; the request then fails with "Remote end closed connection". RFC 9112 9.3.1
# lets a client retry an idempotent request then, so GETs are retried once.
session = requests.Session()
session.mount("http://", HTTPAdapter(pool_maxsize=100,
                                     max_retries=Retry(total=1, connect=1, read=1, status=0,
                                                       redirect=0)))


def _seconds(name: str, default: float) -> float:
    value = request.args.get(name, default, type=float)  # not a number: the default
    if not 0 <= value <= MAX_SECONDS:
        abort(400, f"{name} must be from 0 to {MAX_SECONDS:g} seconds")
    return value


@app.route("/upstream")
def upstream():
    delay = _seconds("delay", 0.1)
    started = time.monotonic()
    try:
        answer = session.get(UPSTREAM_URL, params={"delay": delay}, timeout=UPSTREAM_TIMEOUT)
        answer.raise_for_status()
        payload = answer.json()
    except requests.RequestException as exc:  # refused, timed out, an error status, not JSON
        abort(502, f"upstream failed: {exc}")
    return {"upstream": payload, "seconds": round(time.monotonic() - started, 3)}


@app.route("/sleep")
def sleep():
    seconds = _seconds("seconds", 0.1)
    time.sleep(seconds)
    return {"slept": seconds}


@app.route("/stream")
def stream():
    chunks = request.args.get("chunks", 5, type=int)
    if not 1 <= chunks <= MAX_CHUNKS:
        abort(400, f"chunks must be from 1 to {MAX_CHUNKS}")

    def generate():
        for i in range(chunks):
            if i:
                time.sleep(CHUNK_PAUSE)
            yield f"chunk {i + 1} of {chunks}\n"

    # A generator body has no Content-Length: the server sends it chunked, as it is produced.
    return Response(generate(), mimetype="text/plain")
