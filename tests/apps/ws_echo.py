"""A Flask-Sock echo app (simple-websocket takes environ["gunicorn.socket"]) for the WebSocket tests.

``/echo`` sends every message back, text as text and bytes as bytes, except three commands:
``close`` (the server closes with code 1000 and the reason ``bye``), ``pid`` (the worker's PID)
and ``block`` (the event loop is blocked for 3 seconds, for the watchdog). ``/`` is a page.
"""

import os

from flask import Flask
from flask_sock import Sock
from gevent import monkey

app = Flask(__name__)
sock = Sock(app)


@app.route("/")
def index() -> str:
    return "ws_echo\n"


@sock.route("/echo")
def echo(ws) -> None:
    while True:
        message = ws.receive()
        if message == "close":
            ws.close(reason=1000, message="bye")
            return
        if message == "pid":
            ws.send(str(os.getpid()))
        elif message == "block":
            monkey.get_original("time", "sleep")(3)  # the real sleep: the whole worker stops
            ws.send("unblocked")
        else:
            ws.send(message)
