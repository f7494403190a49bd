"""A Flask app that imports ssl, socket and threading at its top, and whose view sleeps.

With the gevent worker those modules must already be patched when this module is imported,
so the sleep is cooperative and no MonkeyPatchWarning is printed.
"""

import socket  # noqa: F401
import ssl  # noqa: F401
import threading
import time

from flask import Flask, jsonify, request

app = Flask(__name__)
started = threading.Event()


@app.route("/sleep")
def sleep():
    time.sleep(float(request.args.get("t", "0.5")))
    return "slept"


@app.route("/")
def index():
    return "ok"


@app.route("/info")
def info():
    import gevent.monkey
    return jsonify(patched={name: gevent.monkey.is_module_patched(name)
                            for name in ("socket", "ssl", "threading", "select", "time")})
