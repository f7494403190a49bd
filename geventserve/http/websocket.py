"""WebSocket requests, and gevent-websocket's ``environ["wsgi.websocket"]`` offered lazily.

Apps take a WebSocket over in one of two ways. Most (Flask-Sock, and python-engineio when
gevent-websocket is not installed, both through simple-websocket) answer the handshake
themselves on ``environ["gunicorn.socket"]`` and end their call with StopIteration, as gunicorn's
workers expect (``wsgi.WSGIHandler`` does the rest). Apps written for gevent-websocket
(Flask-Sockets, its ``Resource``, and python-engineio whenever gevent-websocket is importable)
read ``environ["wsgi.websocket"]``, which gevent-websocket's own server makes by answering the
handshake before the application runs. ``WebSocketOffer`` makes the same object, gevent-websocket's
``WebSocket`` class, over a stream that sends the handshake answer only on its first use: an app
that declines the upgrade, or takes ``gunicorn.socket`` instead, answers as it likes.
"""

from __future__ import annotations

import base64
import binascii
import errno
import hashlib
import importlib.util
import sys
from typing import Any, Callable, Dict, Optional, Tuple

from .. import logs
from .connection import TAKEN, Connection

#: the Sec-WebSocket-Accept suffix (RFC 6455 1.3)
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: the Sec-WebSocket-Version values gevent-websocket speaks
VERSIONS = ("13", "8", "7")
SWITCHING = "101 Switching Protocols"
READ_SIZE = 64 * 1024
# _Stream states
_WAITING, _OPEN, _FINISHED = 0, 1, 2


def asks_for_websocket(environ: Dict[str, Any]) -> bool:
    """Whether a request asks to become a WebSocket: its Upgrade field names websocket."""
    return "websocket" in environ.get("HTTP_UPGRADE", "").lower()


def accept_key(environ: Dict[str, Any]) -> Optional[str]:
    """The Sec-WebSocket-Accept answering a valid opening handshake (gevent-websocket's rules,
    RFC 6455 4.2.1: GET over HTTP/1.1, ``Upgrade: websocket``, ``Connection: upgrade``, a version
    it speaks, a key of 16 bytes in base64); None for any other request."""
    if (environ["REQUEST_METHOD"] != "GET" or environ["SERVER_PROTOCOL"] != "HTTP/1.1"
            or environ.get("HTTP_UPGRADE", "").lower() != "websocket"
            or "upgrade" not in environ.get("HTTP_CONNECTION", "").lower()
            or environ.get("HTTP_SEC_WEBSOCKET_VERSION") not in VERSIONS):
        return None
    key = environ.get("HTTP_SEC_WEBSOCKET_KEY", "").strip().encode("latin-1")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    digest = hashlib.sha1(key + GUID, usedforsecurity=False).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake_answer(environ: Dict[str, Any], application: Any) -> bytes:
    """The 101 answering a valid opening handshake (``accept_key``), as gevent-websocket's
    handler writes it: a subprotocol only if the application names one for the path
    (``app_protocol``, as its Resource does) that the client offered."""
    head = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(environ)}"]
    app_protocol = getattr(application, "app_protocol", None)
    if app_protocol is not None:
        protocol = app_protocol(environ["PATH_INFO"])
        if protocol and protocol in environ.get("HTTP_SEC_WEBSOCKET_PROTOCOL", ""):
            head.append(f"Sec-WebSocket-Protocol: {protocol}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")


class _Server:
    """What ``ws.handler.server`` is to gevent-websocket apps (one per worker): the application,
    and the open WebSockets by client address (its chat example broadcasts through them)."""

    def __init__(self, application: Callable[..., Any]) -> None:
        self.application = application
        self.clients: Dict[Tuple[str, Any], Any] = {}
        self.logger = logs.error_log


class _Handler:
    """What ``ws.handler`` is to gevent-websocket apps: the server, the request, the peer."""

    __slots__ = ("server", "environ", "client_address", "socket", "websocket")

    def __init__(self, server: _Server, environ: Dict[str, Any], conn: Connection) -> None:
        self.server = server
        self.environ = environ
        port = conn.remote_port
        # The connection's own peer (gevent-websocket's key): over a unix socket every peer
        # has the same empty address, so the connection tells them apart.
        self.client_address = ((conn.remote_addr, int(port)) if port.isdigit()
                               else (conn.remote_addr, id(conn)))
        self.socket = conn.sock
        self.websocket: Any = None

    @property
    def logger(self) -> Any:
        return self.server.logger

    @property
    def active_client(self) -> Any:
        return self.server.clients[self.client_address]


class _Stream:
    """What the WebSocket reads and writes: the connection's socket, with the handshake answer
    sent before the first byte either way (on the first receive, send or close)."""

    __slots__ = ("conn", "sock", "pending", "state", "handler", "client_class")

    def __init__(self, conn: Connection, handler: _Handler, client_class: type) -> None:
        self.conn = conn
        self.sock = conn.sock
        self.pending = b""
        self.state = _WAITING
        self.handler = handler
        self.client_class = client_class  # gevent-websocket's Client, for server.clients

    def _open(self) -> None:
        if self.state == _FINISHED:
            raise OSError(errno.EPIPE, "the request is over: no WebSocket")
        self.state = _OPEN
        conn = self.conn
        conn.takeover = TAKEN  # from the first byte of the answer, the socket is the app's
        handler = self.handler
        address = handler.client_address
        handler.server.clients[address] = self.client_class(address, handler.websocket)
        self.sock.sendall(handshake_answer(handler.environ, handler.server.application))

    def read(self, size: int) -> bytes:
        """``size`` bytes, fewer only at the end of the stream."""
        if self.state != _OPEN:
            self._open()
        data = self.pending
        if len(data) < size:
            parts = [data]
            have = len(data)
            recv = self.sock.recv
            while have < size:
                chunk = recv(max(size - have, READ_SIZE))
                if not chunk:
                    break
                parts.append(chunk)
                have += len(chunk)
            data = b"".join(parts)
            if have <= size:
                self.pending = b""
                return data
        self.pending = data[size:]
        return data[:size]

    def write(self, data: bytes) -> None:
        if self.state != _OPEN:
            self._open()
        self.sock.sendall(data)


class WebSocketOffer:
    """``environ["wsgi.websocket"]`` and ``["wsgi.websocket_version"]`` for the valid WebSocket
    requests of one worker, with gevent-websocket's classes, imported at the first one (a worker
    that never sees one spares their memory). ``load`` returns None when that package is not
    installed: python-engineio then takes gunicorn.socket, through simple-websocket."""

    def __init__(self, application: Callable[..., Any]) -> None:
        self.server = _Server(application)
        self._classes: Optional[Tuple[type, type]] = None
        self._importable = True

    @classmethod
    def load(cls, application: Callable[..., Any]) -> Optional[WebSocketOffer]:
        try:
            found = importlib.util.find_spec("geventwebsocket") is not None
        except (ImportError, ValueError):
            found = False
        return cls(application) if found else None

    def _gevent_websocket(self) -> Optional[Tuple[type, type]]:
        """gevent-websocket's WebSocket, made lazy, and its Client; None if not importable."""
        if self._classes is None and self._importable:
            try:
                from geventwebsocket.handler import Client
                from geventwebsocket.websocket import WebSocket
            except ImportError as exc:
                logs.error_log.debug("no environ['wsgi.websocket']: %s", exc)
                self._importable = False
                return None

            class LazyWebSocket(WebSocket):  # type: ignore[misc,valid-type]
                __slots__ = ()  # and so no settimeout, which python-engineio would call

                def __del__(self) -> None:
                    """gevent-websocket's closes the WebSocket when collected; this one stays
                    as the request left it (an unused one must never answer the handshake)."""

            self._classes = (LazyWebSocket, Client)
        return self._classes

    def offer(self, conn: Connection, environ: Dict[str, Any]) -> Optional[_Stream]:
        """Put the lazy WebSocket in ``environ`` if the request is a valid opening handshake;
        its stream, for ``finish``, or None."""
        if accept_key(environ) is None:
            return None
        classes = self._gevent_websocket()
        if classes is None:
            return None
        websocket_class, client_class = classes
        handler = _Handler(self.server, environ, conn)
        stream = _Stream(conn, handler, client_class)
        websocket = handler.websocket = websocket_class(environ, stream, handler)
        environ["wsgi.websocket_version"] = environ["HTTP_SEC_WEBSOCKET_VERSION"]
        environ["wsgi.websocket"] = websocket
        return stream

    def finish(self, stream: _Stream) -> None:
        """The request is over. A WebSocket the app used and left open gets a close frame (as
        from gevent-websocket's server), unless the call was cut short by a kill; any later use
        fails (gevent-websocket turns the OSError into a WebSocketError)."""
        handler = stream.handler
        websocket = handler.websocket
        if stream.state == _OPEN:
            clients = self.server.clients
            client = clients.get(handler.client_address)
            if client is not None and client.ws is websocket:
                del clients[handler.client_address]
            killed = sys.exc_info()[0]
            if not websocket.closed and (killed is None or issubclass(killed, Exception)):
                try:
                    websocket.close()
                except Exception:
                    logs.error_log.debug("closing a WebSocket failed", exc_info=True)
        stream.state = _FINISHED
        # The WebSocket, its environ and handler refer to each other: undone here, so that
        # they go when the request does, without waiting for the cyclic collector.
        handler.websocket = handler.environ = None
        websocket.environ = None
