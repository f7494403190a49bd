"""The supervisor's small HTTP server for --metrics-bind, served from its own loop.

No thread (the supervisor forks) and no wait of its own: the listener and its connections are
non-blocking sockets that the supervisor's select() watches beside its wake-up pipe (Wakeup
asks ``prepare`` what to watch and gives ``handle`` what is ready). So it answers while every
worker is busy or stuck. A connection stays open after a page (a scraper reuses it) and closes
after anything else; each request and its answer must be done REQUEST_TIME seconds after the
accept or the answer before, its head at most HEAD_LIMIT bytes; at most MAX_CONNECTIONS are
open, the others wait in the kernel's queue.
"""

from __future__ import annotations

import errno
import os
import socket
import time
from typing import Any, Callable, Dict, List, MutableMapping, Optional, Tuple

from .. import logs, sockets

HEAD_LIMIT = 8192
REQUEST_TIME = 10.0
MAX_CONNECTIONS = 32
BACKLOG = 64
#: a USR2 re-exec hands the listener to the new supervisor in this variable
INHERITED_FD_ENV = "GEVENTSERVE_METRICS_FD"

#: a page: (the request's header fields, lower-case names) -> (status, body, content type)
Page = Callable[[Dict[str, str]], Tuple[int, bytes, str]]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            431: "Request Header Fields Too Large", 500: "Internal Server Error",
            503: "Service Unavailable"}


def response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8",
             head_only: bool = False, extra: str = "", keep_alive: bool = False) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n{extra}\r\n")
    return head.encode("latin-1") + (b"" if head_only else body)


class _Client:
    __slots__ = ("sock", "received", "out", "keep_alive", "deadline")

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.received = b""
        self.out: Optional[memoryview] = None  # the response, from what is still to send
        self.keep_alive = False  # the response under way leaves the connection open
        self.deadline = deadline


class Endpoint:
    """The listener, its connections, and ``pages``: the page of a path, or None."""

    def __init__(self, listener: socket.socket, created: bool) -> None:
        self.listener = listener
        self.created = created  # a unix socket file this process made (removed at the end)
        listener.setblocking(False)
        self.clients: Dict[int, _Client] = {}
        self.pages: Callable[[str], Optional[Page]] = lambda path: None

    @classmethod
    def open(cls, address: str, environ: MutableMapping[str, str]) -> Endpoint:
        """Bind ``address``, or take the listener of the supervisor that re-executed this one
        if it is for the same address; BindError with one line."""
        parsed = sockets.parse_address(address)
        inherited = environ.pop(INHERITED_FD_ENV, "")
        if inherited.isdigit():
            try:
                sock = sockets.adopt_fd(int(inherited))
            except sockets.BindError:
                sock = None
            if sock is not None and sockets._same_address(sock, parsed):
                return cls(sock, created=False)
            if sock is not None:
                sock.close()
        try:
            sock = sockets.bind(parsed, BACKLOG)
        except sockets.BindError as exc:
            raise sockets.BindError(f"--metrics-bind: {exc}") from None
        return cls(sock, created=parsed.kind == "unix")

    def describe(self) -> str:
        return sockets.describe(self.listener)

    # -- what Wakeup calls around its select()

    def prepare(self, readers: List[Any], writers: List[Any], timeout: float) -> float:
        """Add what to watch; the timeout shortened to the next connection's deadline."""
        now = time.monotonic()
        for fd, client in list(self.clients.items()):
            if now >= client.deadline:
                self._drop(fd)
                continue
            (writers if client.out is not None else readers).append(fd)
            timeout = min(timeout, client.deadline - now)
        if len(self.clients) < MAX_CONNECTIONS:
            readers.append(self.listener.fileno())
        return max(timeout, 0.0)

    def handle(self, readable: List[Any], writable: List[Any]) -> None:
        for fd in readable:
            if fd == self.listener.fileno():
                self._accept()
            elif fd in self.clients:
                self._receive(fd)
        for fd in writable:
            if fd in self.clients:
                self._send(fd)

    # -- connections

    def _accept(self) -> None:
        while len(self.clients) < MAX_CONNECTIONS:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logs.error_log.warning("metrics endpoint: cannot accept: %s", exc.strerror)
                return  # ECONNABORTED and the like: the next one, at the next wake-up
            sock.setblocking(False)
            self.clients[sock.fileno()] = _Client(sock, time.monotonic() + REQUEST_TIME)

    def _receive(self, fd: int) -> None:
        client = self.clients[fd]
        try:
            data = client.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(fd)
            return
        client.received += data
        self._next_request(fd, client)

    def _next_request(self, fd: int, client: _Client) -> None:
        head, end, client.received = client.received.partition(b"\r\n\r\n")
        if len(head) > HEAD_LIMIT:
            self._answer_with(fd, client, response(431, b"request head too large\n"))
        elif end:
            self._answer(fd, client, head)
        else:
            client.received = head

    def _answer(self, fd: int, client: _Client, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            self._answer_with(fd, client, response(400, b"bad request line\n"))
            return
        method, target, _ = parts
        headers = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if colon:
                headers[name.strip().lower()] = value.strip()
        page = self.pages(target.partition("?")[0])
        if page is None:
            data = response(404, b"not found: try /metrics or /status\n")
        elif method not in ("GET", "HEAD"):
            data = response(405, b"only GET and HEAD\n", extra="Allow: GET, HEAD\r\n")
        else:
            keep_alive = (parts[2] == "HTTP/1.1" and not client.received  # not pipelined
                          and "content-length" not in headers
                          and "transfer-encoding" not in headers
                          and "close" not in headers.get("connection", "").lower())
            try:
                status, body, content_type = page(headers)
                data = response(status, body, content_type, head_only=method == "HEAD",
                                keep_alive=keep_alive)
            except Exception:
                logs.error_log.exception("metrics endpoint: %s failed", target)
                data, keep_alive = response(500, b"internal error (see the server's log)\n"), False
            client.keep_alive = keep_alive
        self._answer_with(fd, client, data)

    def _answer_with(self, fd: int, client: _Client, data: bytes) -> None:
        client.out = memoryview(data)
        self._send(fd)

    def _send(self, fd: int) -> None:
        client = self.clients[fd]
        out = client.out
        if out is None:
            return
        try:
            sent = client.sock.send(out)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(fd)
            return
        client.out = out[sent:]
        if client.out:
            return
        if client.keep_alive:  # the next request, within its own time
            client.out, client.keep_alive = None, False
            client.deadline = time.monotonic() + REQUEST_TIME
            self._next_request(fd, client)
            return
        try:
            client.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        self._drop(fd)

    def _drop(self, fd: int) -> None:
        client = self.clients.pop(fd)
        try:
            client.sock.close()
        except OSError:
            pass

    # -- ends

    def pass_on(self) -> None:
        """In the process about to exec a new supervisor (USR2): it takes the listener."""
        fd = self.listener.fileno()
        os.set_inheritable(fd, True)
        os.environ[INHERITED_FD_ENV] = str(fd)

    def close(self) -> None:
        """In a worker just forked: the sockets are the supervisor's."""
        for fd in list(self.clients):
            self._drop(fd)
        self.listener.close()

    def shutdown(self, unlink: bool = True) -> None:
        """At the supervisor's exit; ``unlink`` False leaves a unix socket file to the new
        supervisor a USR2 started."""
        for fd in list(self.clients):
            self._drop(fd)
        sockets.close_listener(self.listener, unlink=unlink and self.created)
