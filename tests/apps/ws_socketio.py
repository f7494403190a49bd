"""A Flask-SocketIO app in gevent mode for the WebSocket tests: an acknowledged echo and rooms.

Events: ``echo`` (the acknowledgement carries the data back), ``join`` (enter a room; the
acknowledgement says which), ``say`` ({"room", "text"}: sent as ``said`` to everyone in the
room, the sender included). ``/`` says which WebSocket driver python-engineio chose:
``gevent-websocket`` (it reads environ["wsgi.websocket"]) or ``simple-websocket`` (it takes
environ["gunicorn.socket"]).
"""

from engineio.async_drivers import gevent as engineio_gevent
from flask import Flask
from flask_socketio import SocketIO, emit, join_room

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")
DRIVER = "simple-websocket" if engineio_gevent.SimpleWebSocketWSGI else "gevent-websocket"


@app.route("/")
def index() -> str:
    return f"ws_socketio driver={DRIVER}\n"


@socketio.on("echo")
def echo(data):
    return data


@socketio.on("join")
def join(room: str) -> str:
    join_room(room)
    return room


@socketio.on("say")
def say(data) -> str:
    emit("said", data, to=data["room"])
    return "sent"
