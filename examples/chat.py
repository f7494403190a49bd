"""A Flask-SocketIO chat room: join a room under a name, say something, everyone in it hears.

Run it (one worker: Socket.IO keeps its sessions and rooms in the worker's memory):

    geventserve -k gevent -w 1 -b 127.0.0.1:8000 --chdir examples chat:app

then open http://127.0.0.1:8000/ in two browser tabs. Needs Flask-SocketIO
(``pip install flask-socketio``); works with or without gevent-websocket installed. Several
workers need sticky sessions in front and a message queue behind (Flask-SocketIO's
``message_queue``), as with any server.

Events (python-socketio client or the browser's socket.io): ``join`` {"room", "name"} (the
acknowledgement is the number of people in the room), ``message`` {"room", "text"} (sent to the
room as ``message`` {"room", "name", "text", "sid"}; acknowledged with True), ``leave`` {"room"}.
"""

from typing import Any, Dict

from flask import Flask, request
from flask_socketio import SocketIO, emit, join_room, leave_room

app = Flask(__name__)
socketio = SocketIO(app, async_mode="gevent")
# Per worker: who is in which room, and the names people chose.
members: Dict[str, set] = {}
names: Dict[str, str] = {}

PAGE = """<!doctype html>
<title>chat</title>
<script src="https://cdn.socket.io/4.7.5/socket.io.min.js"></script>
<form id="join">name <input id="name" value="guest"> room <input id="room" value="lobby">
<button>join</button></form>
<form id="say"><input id="text" size="60"><button>say</button></form>
<pre id="log"></pre>
<script>
const socket = io({transports: ["websocket"]});
const log = (line) => document.getElementById("log").textContent += line + "\\n";
const room = () => document.getElementById("room").value;
socket.on("message", (m) => log(`[${m.room}] ${m.name}: ${m.text}`));
document.getElementById("join").onsubmit = (e) => {
  e.preventDefault();
  socket.emit("join", {room: room(), name: document.getElementById("name").value},
              (n) => log(`joined ${room()} (${n} here)`));
};
document.getElementById("say").onsubmit = (e) => {
  e.preventDefault();
  const text = document.getElementById("text");
  socket.emit("message", {room: room(), text: text.value});
  text.value = "";
};
</script>
"""


@app.route("/")
def index() -> str:
    return PAGE


@socketio.on("join")
def on_join(data: Dict[str, Any]) -> int:
    room = str(data["room"])
    names[request.sid] = str(data.get("name") or "guest")[:40]
    join_room(room)
    members.setdefault(room, set()).add(request.sid)
    return len(members[room])


@socketio.on("message")
def on_message(data: Dict[str, Any]) -> bool:
    room = str(data["room"])
    if request.sid not in members.get(room, ()):
        return False
    emit("message", {"room": room, "name": names.get(request.sid, "guest"),
                     "text": str(data["text"]), "sid": request.sid}, to=room)
    return True


@socketio.on("leave")
def on_leave(data: Dict[str, Any]) -> None:
    room = str(data["room"])
    leave_room(room)
    _forget(request.sid, [room])


@socketio.on("disconnect")
def on_disconnect(*args: Any) -> None:  # Flask-SocketIO 5.4+ passes a reason
    _forget(request.sid, list(members))
    names.pop(request.sid, None)


def _forget(sid: str, rooms: list) -> None:
    for room in rooms:
        people = members.get(room)
        if people is not None:
            people.discard(sid)
            if not people:
                del members[room]
