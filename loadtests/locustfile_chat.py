"""Locust users of the Flask-SocketIO chat room (examples/chat.py), each on an open WebSocket.

A user connects with the python-socketio client over the WebSocket transport alone, joins one of
CHAT_ROOMS rooms (10), and every 2 to 4 seconds says something in it. What locust records:

- ``connect+join``: the connection, the Socket.IO handshake and the acknowledged join;
- ``round trip``: from sending a message to hearing it back from the room (the acknowledgement
  and the broadcast both arrived);
- ``delivery``: for every message heard from someone else in the room, how long it took.

Failures: a connection or join that fails, a message not heard back within 10 s, a message from
another room, a gap in someone's numbered messages (one was lost on the way), and the server
closing the connection (the user then connects again at its next turn). By hand::

    geventserve -k gevent -w 1 -b 127.0.0.1:8000 --chdir examples chat:app
    locust -f loadtests/locustfile_chat.py --headless -u 200 -r 50 --run-time 30s \
        -H http://127.0.0.1:8000
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any, Dict, Optional

import socketio
from gevent.event import AsyncResult
from locust import User, between, task

import common  # noqa: F401  loadtests/common.py: the last write of the --csv files at exit

ROOMS = int(os.environ.get("CHAT_ROOMS", "10"))
TIMEOUT = 10.0  # seconds for a connection, an acknowledgement, a message to come back
_numbers = itertools.count()


class ChatUser(User):
    """Someone in a chat room: one WebSocket held open, a message every 2 to 4 seconds."""

    wait_time = between(2, 4)

    def on_start(self) -> None:
        number = next(_numbers)
        self.name = f"{os.getpid()}-{number}"
        self.room = f"room-{number % ROOMS}"
        self.sio: Optional[socketio.Client] = None
        self.sent = 0
        self.waiting: Dict[int, AsyncResult] = {}
        self.last_seen: Dict[str, int] = {}  # sender -> the last of its numbers heard
        self._connect()

    def on_stop(self) -> None:
        sio, self.sio = self.sio, None  # a disconnection from now on is ours
        if sio is not None:
            sio.disconnect()

    def _record(self, name: str, started: float, exc: Optional[BaseException] = None) -> None:
        self.environment.events.request.fire(
            request_type="socketio", name=name, response_time=(time.time() - started) * 1000,
            response_length=0, exception=exc, context={})

    def _connect(self) -> bool:
        started = time.time()
        sio = socketio.Client(reconnection=False)
        sio.on("message", self._on_message)
        sio.on("disconnect", self._on_disconnect)
        try:
            sio.connect(self.host, transports=["websocket"], wait_timeout=TIMEOUT)
            sio.call("join", {"room": self.room, "name": self.name}, timeout=TIMEOUT)
        except Exception as exc:
            self._record("connect+join", started, exc)
            try:
                sio.disconnect()
            except Exception:
                pass
            return False
        self.sio = sio
        self.last_seen.clear()  # what was said while away is not expected
        self._record("connect+join", started)
        return True

    def _on_disconnect(self, *args: Any) -> None:
        if self.sio is not None:
            self.sio = None
            self._record("connection", time.time(),
                         ConnectionError(f"the server closed the connection {args or ''}"))

    def _on_message(self, data: Dict[str, Any]) -> None:
        now = time.time()
        try:
            sender, number, sent_at = data["name"], *data["text"].split()
            number, sent_at = int(number), float(sent_at)
        except (KeyError, TypeError, ValueError):
            self._record("delivery", now, ValueError(f"unexpected message {data!r}"))
            return
        if data.get("room") != self.room:
            self._record("delivery", sent_at, ValueError(f"a message from {data.get('room')}"))
            return
        if sender == self.name:
            waiter = self.waiting.get(number)
            if waiter is not None:
                waiter.set(now)
            return
        last = self.last_seen.get(sender)
        self.last_seen[sender] = number
        if last is not None and number != last + 1:
            self._record("delivery", sent_at, LookupError(
                f"messages {last + 1}..{number - 1} of {sender} never arrived"))
        else:
            self._record("delivery", sent_at)

    @task
    def say(self) -> None:
        if self.sio is None and not self._connect():
            return
        self.sent += 1
        number = self.sent
        heard = self.waiting[number] = AsyncResult()
        started = time.time()
        try:
            ack = self.sio.call("message", {"room": self.room, "text": f"{number} {started}"},
                                timeout=TIMEOUT)
            if ack is not True:
                raise ValueError(f"the server refused the message: {ack!r}")
            heard.get(timeout=max(TIMEOUT - (time.time() - started), 0.01))
        except Exception as exc:
            self._record("round trip", started, exc)
        else:
            self._record("round trip", started)
        finally:
            self.waiting.pop(number, None)
