"""Taking a connection over (issue 10), in-process over a socketpair with test_connection's
Served (a real Service, a fake clock, the deadline sweep run by hand): environ["gunicorn.socket"]
and StopIteration, the socket lent to an app that runs a WebSocket request (no deadline, no
answer of the server's on any way out, no linger), and the lazy environ["wsgi.websocket"].
"""

import base64
import hashlib
import socket
from typing import Any, List

import gevent
import gevent.event
import pytest
from geventwebsocket.exceptions import WebSocketError
from geventwebsocket.handler import Client
from test_connection import BODY_TIMEOUT, KEEPALIVE, Served, header

from geventserve.http.connection import LENT, TAKEN
from geventserve.http.websocket import WebSocketOffer

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = base64.b64encode(hashlib.sha1(KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                          .digest()).decode()
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: " + KEY.encode() + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
SWITCH = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
          b"Sec-WebSocket-Accept: " + ACCEPT.encode() + b"\r\n\r\n")


class Takeover:
    """A Served connection whose app is ``app`` (given the served connection and the
    environ), with the access log and the request count recorded."""

    def __init__(self, app, websockets: bool = False) -> None:
        self.served = Served()
        self.lines: List[tuple] = []
        self.done = 0
        self.errors: List[str] = []
        handler = self.served.service.handler
        handler.app = lambda environ, start_response: app(self, environ, start_response)
        handler.access = lambda environ, status, sent, duration, headers: self.lines.append(
            (environ["PATH_INFO"], status, sent, duration))
        handler.on_request_done = self.count
        if websockets:
            handler.websockets = WebSocketOffer.load(handler.app)
        self.peer = self.served.peer

    def count(self) -> None:
        self.done += 1

    def __enter__(self) -> "Takeover":
        return self

    def __exit__(self, *exc: object) -> None:
        self.served.close()

    @property
    def conn(self):
        return self.served.conn

    def read_all(self, timeout: float = 5.0) -> bytes:
        """What the server sends until it closes (fails if it does not within ``timeout``)."""
        self.peer.sock.settimeout(timeout)
        data = self.peer.buffer
        self.peer.buffer = b""
        while True:
            chunk = self.peer.sock.recv(65536)
            if not chunk:
                return data
            data += chunk


def answer(start_response, status: str, body: bytes) -> List[bytes]:
    """An ordinary HTTP answer (to a WebSocket request: it declines the upgrade)."""
    start_response(status, [("Content-Length", str(len(body)))])
    return [body]


@pytest.fixture
def records(caplog):
    """Errors the server logs, as ``logs.error_log`` records."""
    caplog.set_level("DEBUG", logger="geventserve")
    return caplog


def echo_once_then_stop(t: Takeover, environ, start_response):
    """As simple-websocket does with gunicorn: the handshake on gunicorn.socket, then
    StopIteration from the call."""
    sock = environ["gunicorn.socket"]
    assert sock is t.conn.sock and t.conn.takeover == LENT
    sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    sock.sendall(b"echo:" + sock.recv(100))
    raise StopIteration


def test_stop_iteration_ends_the_connection_with_nothing_more_sent(records):
    with Takeover(echo_once_then_stop) as t:
        t.peer.send(UPGRADE + b"GET /pipelined HTTP/1.1\r\nHost: a\r\n\r\n")
        t.served.until(lambda: t.conn.takeover)
        t.peer.send(b"frame")
        # No HTTP answer of the server's, the pipelined request left alone, and a close without
        # lingering (the client has not closed its side).
        assert t.read_all() == b"HTTP/1.1 101 Switching Protocols\r\n\r\necho:frame"
        assert t.served.ended()
        assert [line[:3] for line in t.lines] == [("/ws", "101 Switching Protocols", 0)]
        assert t.done == 1
        assert not [r for r in records.records if r.levelname in ("ERROR", "WARNING")]


def test_every_request_carries_the_socket():
    seen: List[Any] = []

    def app(t, environ, start_response):
        seen.append(environ["gunicorn.socket"])
        return answer(start_response, "200 OK", b"ok")

    with Takeover(app) as t:
        for _ in range(2):
            t.peer.send(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            assert t.peer.response()[0] == 200
        assert seen == [t.conn.sock, t.conn.sock]
        assert t.conn.takeover == 0


def test_a_lent_connection_outlives_every_deadline():
    """The app holds the socket, silent for longer than any deadline: the sweep leaves it."""
    def app(t, environ, start_response):
        sock = environ["gunicorn.socket"]
        sock.sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        sock.sendall(b"late:" + sock.recv(100))  # the app's own wait, without a deadline
        raise StopIteration

    with Takeover(app) as t:
        t.peer.send(UPGRADE)
        t.served.until(lambda: t.conn.takeover)
        for _ in range(3):
            t.served.expire(KEEPALIVE + BODY_TIMEOUT + 100)
        assert not t.served.task.dead
        assert t.served.service.taken_over() == 1 and t.served.service.in_flight() == []
        t.peer.send(b"x")
        assert t.read_all() == b"HTTP/1.1 101 Switching Protocols\r\n\r\nlate:x"


def test_an_error_after_the_socket_was_lent_sends_no_answer(records):
    def app(t, environ, start_response):
        environ["gunicorn.socket"].sendall(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
        raise ValueError("the app's own bug")

    with Takeover(app) as t:
        t.peer.send(UPGRADE)
        assert t.read_all() == b"HTTP/1.1 101 Switching Protocols\r\n\r\n"  # no 500 after it
        assert t.served.ended()
        assert [line[1] for line in t.lines] == [None]
        assert any("may hold the connection" in r.getMessage() for r in records.records)


def test_a_killed_call_leaves_the_socket_alone():
    """A lent connection whose greenlet is killed (GreenletExit) is closed, nothing written."""
    started = gevent.event.Event()

    def app(t, environ, start_response):
        started.set()
        gevent.sleep(60)

    with Takeover(app) as t:
        t.peer.send(UPGRADE)
        assert started.wait(5)
        t.served.task.kill(block=True, timeout=5)
        assert t.read_all() == b""


def test_a_declined_upgrade_is_an_ordinary_response():
    def app(t, environ, start_response):
        return answer(start_response, "403 Forbidden", b"no")

    with Takeover(app) as t:
        t.peer.send(UPGRADE)
        status, headers, body = t.peer.response()
        assert (status, body) == (403, b"no") and header(headers, "connection") is None
        assert t.conn.takeover == 0
        t.peer.send(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")  # the connection goes on
        assert t.peer.response()[0] == 403
        assert t.done == 2 and [line[1] for line in t.lines] == ["403 Forbidden"] * 2


# -- environ["wsgi.websocket"], lazily ----------------------------------------------------------


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame (payload under 126 bytes)."""
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


def test_wsgi_websocket_answers_the_handshake_on_first_use():
    def app(t, environ, start_response):
        ws = environ["wsgi.websocket"]
        assert environ["wsgi.websocket_version"] == "13"
        assert t.conn.takeover == LENT and not hasattr(ws, "settimeout")
        message = ws.receive()
        assert t.conn.takeover == TAKEN
        assert isinstance(ws.handler.server.clients[ws.handler.client_address], Client)
        ws.send("echo:" + message)
        # python-engineio, after an upgrade from polling: an HTTP answer, to be ignored
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ignored"]

    with Takeover(app, websockets=True) as t:
        t.peer.send(UPGRADE)
        t.served.until(lambda: t.conn.takeover == TAKEN)  # receive() sent the answer
        t.peer.send(frame(b"hi"))  # a client sends nothing before it has the answer
        # the answer, the echo, and the close frame the app did not send
        assert t.read_all() == SWITCH + b"\x81\x07echo:hi" + b"\x88\x00"
        assert t.served.ended()
        assert [line[1] for line in t.lines] == ["101 Switching Protocols"]
        assert t.served.service.handler.websockets.server.clients == {}


def test_wsgi_websocket_unused_sends_no_handshake_and_fails_afterwards():
    kept: List[Any] = []

    def app(t, environ, start_response):
        kept.append(environ["wsgi.websocket"])
        return answer(start_response, "403 Forbidden", b"no")

    with Takeover(app, websockets=True) as t:
        t.peer.send(UPGRADE)
        assert t.peer.response()[:3:2] == (403, b"no")
        with pytest.raises(WebSocketError):
            kept[0].send("too late")
        t.peer.sock.settimeout(0.2)
        with pytest.raises(socket.timeout):
            t.peer.sock.recv(10)  # nothing went out


@pytest.mark.parametrize("request_head", [
    UPGRADE.replace(b"Version: 13", b"Version: 12"),
    UPGRADE.replace(KEY.encode(), b"c2hvcnQ="),
    UPGRADE.replace(b"GET", b"PUT"),
    UPGRADE.replace(b"Connection: Upgrade", b"Connection: keep-alive"),
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
], ids=["version", "key", "method", "connection", "plain"])
def test_wsgi_websocket_only_for_valid_websocket_requests(request_head):
    def app(t, environ, start_response):
        return answer(start_response, "200 OK", b"yes" if "wsgi.websocket" in environ else b"no")

    with Takeover(app, websockets=True) as t:
        t.peer.send(request_head)
        assert t.peer.response()[2] == b"no"


def test_wsgi_websocket_of_a_killed_call_gets_no_close_frame():
    def app(t, environ, start_response):
        environ["wsgi.websocket"].send("open")
        gevent.sleep(60)

    with Takeover(app, websockets=True) as t:
        t.peer.send(UPGRADE)
        t.served.until(lambda: t.conn.takeover == TAKEN)
        t.served.task.kill(block=True, timeout=5)
        assert t.read_all() == SWITCH + b"\x81\x04open"
        assert t.served.service.handler.websockets.server.clients == {}


def test_stop_iteration_from_any_request_is_a_takeover():
    """Not only WebSocket requests: the app wrote its own answer and ends the call so."""
    def app(t, environ, start_response):
        assert t.conn.takeover == 0  # nothing said it would take the socket
        environ["gunicorn.socket"].sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine")
        raise StopIteration

    with Takeover(app) as t:
        t.peer.send(b"GET /raw HTTP/1.1\r\nHost: a\r\n\r\n")
        assert t.read_all() == b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nmine"
        assert t.served.ended()
        assert t.done == 1 and [line[1] for line in t.lines] == [None]
