"""The server's own health answers (--liveness-path, --readiness-path), given by the worker without
calling the application: liveness is 200 whenever the worker's event loop gets to answer;
readiness is 200 while the server serves and 503 from the moment a stop or a drain begins.

``HealthHandler`` stands in front of the WSGI handler only when a path is set, so a server
without them pays nothing, and one with them a dictionary look-up of the request target.
"""

from __future__ import annotations

from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional, Tuple

from ..health import paths
from .connection import CLOSE, KEEP_ALIVE, Outcome, can_drain
from .errors import HTTPError
from .parser import Request
from .response import SERVER_HEADER, date_header

if TYPE_CHECKING:
    from .connection import Connection, RequestHandler

#: (status line, body) of each answer
ALIVE = (b"200 OK", b"alive\n")
READY = (b"200 OK", b"ready\n")
NOT_READY = (b"503 Service Unavailable", b"not ready: stopping\n")
_HEAD = (b"HTTP/1.1 %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
         b"Cache-Control: no-store\r\n")


def health_paths(liveness: Optional[str], readiness: Optional[str]) -> Dict[bytes, bool]:
    """The request targets answered here: True for readiness, False for liveness."""
    return {path.encode("latin-1"): kind for path, kind in paths(liveness, readiness).items()}


class HealthHandler:
    """Answers the health paths; hands every other request to ``inner`` (the WSGI handler)."""

    __slots__ = ("inner", "paths", "ready", "access", "tally", "clock", "log_error")

    def __init__(self, inner: RequestHandler, paths: Dict[bytes, bool],
                 ready: Callable[[], bool], access: Optional[Callable[..., None]] = None,
                 tally: Optional[Callable[[Any], None]] = None,
                 clock: Callable[[], float] = monotonic) -> None:
        """``ready()``: whether readiness is 200; ``access``: the access log, and ``tally``:
        the metrics' count (see WSGIHandler), for --log-health-checks (None leaves the answers
        out of them)."""
        self.inner = inner
        self.paths = paths
        self.ready = ready
        self.access = access
        self.tally = tally
        self.clock = clock
        self.log_error: Callable[[Connection, HTTPError], None] = inner.log_error

    def handle(self, conn: Connection, request: Request) -> Outcome:
        readiness = self.paths.get(request.target)
        if readiness is None:
            return self.inner.handle(conn, request)
        return self.answer(conn, request, (READY if self.ready() else NOT_READY) if readiness
                           else ALIVE)

    def answer(self, conn: Connection, request: Request, answer: Tuple[bytes, bytes]) -> Outcome:
        status, body = answer
        close = not (request.keep_alive and conn.reusable) or (
            not request.complete and not can_drain(request))
        head = [_HEAD % (status, len(body)), date_header(), SERVER_HEADER]
        if close:
            head.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            head.append(b"Connection: keep-alive\r\n")
        head.append(b"\r\n")
        conn.response_started = True
        sent = 0 if request.method == "HEAD" else len(body)
        conn.send(b"".join(head) + body[:sent])
        if self.access is not None or self.tally is not None:
            self._log(conn, request, status.decode("latin-1"), sent)
        return CLOSE if close else KEEP_ALIVE

    def _log(self, conn: Connection, request: Request, status: str, sent: int) -> None:
        from .wsgi import build_environ

        duration = self.clock() - conn.request_started
        if self.tally is not None:
            self.tally((request.method, status, duration))
        if self.access is not None:
            self.access(build_environ(conn, request), status, sent, duration, ())
