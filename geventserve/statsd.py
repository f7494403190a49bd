"""statsd, as gunicorn sends it (--statsd-host, --statsd-prefix, --dogstatsd-tags), so that the
dashboards made for gunicorn keep working: per request ``gunicorn.request.duration`` (a timer, in
ms), ``gunicorn.requests`` and ``gunicorn.request.status.NNN`` (counters); from the supervisor
``gunicorn.workers`` (a gauge, when the count changes); and ``gunicorn.log.critical``, ``.error``,
``.warning`` and ``.exception`` (counters) for each line the error log writes at those levels.

One datagram per metric, formatted as gunicorn formats it, from a non-blocking socket made in the
supervisor before any gevent patching and inherited by the workers: a send never waits, and when
the kernel's buffer is full (or nothing listens) the metric is dropped. With no --statsd-host
nothing here runs per request: the request path is chosen when the worker builds it.
"""

from __future__ import annotations

import _socket
import logging
import re
import socket
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

from . import logs

DEFAULT_PORT = 8125
Target = Union[str, Tuple[str, int]]  # a unix socket path, or (host, port) over UDP


def parse_target(text: Any) -> Target:
    """``HOST:PORT``, ``[V6]:PORT``, ``HOST`` (port 8125), ``unix:PATH`` or ``unix://PATH``;
    ValueError saying which forms are accepted."""
    from .sockets import parse_address

    if not isinstance(text, str):
        raise ValueError("expected HOST:PORT or unix:PATH")
    address = parse_address(text)
    if address.kind == "unix":
        return address.path
    if address.kind != "tcp":
        raise ValueError(f"{text!r}: expected HOST:PORT or unix:PATH")
    has_port = re.search(r"(^|\]|[^:]):\d+$", text.strip()) is not None
    return address.host, address.port if has_port else DEFAULT_PORT


def prefix_of(text: str) -> str:
    """gunicorn's --statsd-prefix rule: a prefix given ends with exactly one dot."""
    stripped = text.rstrip(".")
    return stripped + "." if stripped else ""


def check_name_part(text: Any, what: str, forbidden: str) -> str:
    """A prefix or tag list goes into every datagram as ASCII: refuse what would break one."""
    if not isinstance(text, str):
        raise ValueError("expected a string")
    if not text.isascii() or any(c in forbidden or c.isspace() for c in text):
        raise ValueError(f"{what} may hold printable ASCII characters other than "
                         f"{' '.join(forbidden)} and spaces")
    return text


class Client:
    """Sends metrics as gunicorn's statsd logger formats them; never raises, never waits."""

    def __init__(self, sock: Any, send: Callable[[bytes], Any], prefix: str, tags: str) -> None:
        self.sock = sock
        self._send = send
        self.prefix = prefix_of(prefix)
        self.suffix = ("|#" + tags).encode("ascii") if tags else b""
        self._requests = self._counter("gunicorn.requests", 1)
        self._statuses: Dict[str, bytes] = {}
        self._duration = f"{self.prefix}gunicorn.request.duration:".encode("ascii")
        self._timer_end = b"|ms" + self.suffix
        self._workers: Optional[int] = None

    @classmethod
    def connect(cls, target: Target, prefix: str, tags: str) -> Client:
        """A client for ``target``; OSError (socket.gaierror for a name that does not
        resolve)."""
        if isinstance(target, str):
            sock = _socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.setblocking(False)
            # Unconnected: a receiver that starts (or restarts) later still gets the metrics.
            return cls(sock, lambda data: sock.sendto(data, target), prefix, tags)
        family, _, _, _, address = socket.getaddrinfo(target[0], target[1], 0,
                                                      socket.SOCK_DGRAM)[0]
        sock = _socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            raise
        return cls(sock, sock.send, prefix, tags)

    def close(self) -> None:
        self.sock.close()

    def _counter(self, name: str, value: int) -> bytes:
        return f"{self.prefix}{name}:{value}|c|@1.0".encode("ascii") + self.suffix

    def send(self, data: bytes) -> None:
        try:
            self._send(data)
        except OSError:
            pass  # a full buffer, nobody listening: the metric is dropped, the request is not

    def counter(self, name: str, value: int = 1) -> None:
        self.send(self._counter(name, value))

    def gauge(self, name: str, value: int) -> None:
        self.send(f"{self.prefix}{name}:{value}|g".encode("ascii") + self.suffix)

    def request(self, environ: Any, status: Optional[str], sent: int, duration: float,
                headers: Any = ()) -> None:
        """The three metrics of one request, in gunicorn's order (an access-log callback)."""
        micros = int(duration * 1_000_000)
        millis = (micros // 1_000_000) * 1000 + (micros % 1_000_000) / 1000  # gunicorn's float
        send = self.send
        send(self._duration + repr(millis).encode("ascii") + self._timer_end)
        send(self._requests)
        code = status[:3] if status else ""
        line = self._statuses.get(code)
        if line is None:
            if not code.isdigit():
                return
            line = self._statuses[code] = self._counter(f"gunicorn.request.status.{code}", 1)
        send(line)

    def workers(self, count: int) -> None:
        """The gauge of workers, sent when the count changes (as gunicorn's arbiter)."""
        if count != self._workers:
            self._workers = count
            self.gauge("gunicorn.workers", count)


class LogCounter(logging.Handler):
    """Counts the error log's lines at WARNING and above. Sends a datagram, so it takes no
    lock: the watchdog's emergency lines are counted too."""

    def __init__(self, client: Client) -> None:
        super().__init__(logging.WARNING)
        self.lines = {name: client._counter(f"gunicorn.log.{name}", 1)
                      for name in ("critical", "error", "warning", "exception")}
        self.send = client.send

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        level = record.levelno
        if level >= logging.CRITICAL:
            name = "critical"
        elif level >= logging.ERROR:
            name = "exception" if record.exc_info else "error"
        elif level >= logging.WARNING:
            name = "warning"
        else:
            return
        self.send(self.lines[name])


client: Optional[Client] = None
_counter: Optional[LogCounter] = None


def configure(host: Optional[str], prefix: str, tags: str) -> None:
    """Start (or, on a reload, restart) sending to ``host``; call it after the logs are set
    up (a logging config removes the handlers it finds). A host that does not resolve, or a
    socket that cannot be made, is one warning, and the server runs without statsd."""
    global client, _counter
    if _counter is not None:
        logs.error_log.removeHandler(_counter)
        _counter = None
    if client is not None:
        client.close()
        client = None
    if not host:
        return
    try:
        client = Client.connect(parse_target(host), prefix, tags)
    except socket.gaierror as exc:
        logs.error_log.warning("statsd: cannot resolve %s (%s); running without statsd",
                               host, exc.strerror)
        return
    except (OSError, ValueError) as exc:
        logs.error_log.warning("statsd: cannot send to %s (%s); running without statsd",
                               host, exc)
        return
    _counter = LogCounter(client)
    logs.error_log.addHandler(_counter)


def request_path(access: Optional[Callable[..., None]]) -> Optional[Callable[..., None]]:
    """What runs after each request: the access log (if on), and statsd's metrics (if on)."""
    if client is None:
        return access
    metrics = client.request
    if access is None:
        return metrics

    def both(environ: Any, status: Optional[str], sent: int, duration: float,
             headers: Any = ()) -> None:
        access(environ, status, sent, duration, headers)
        metrics(environ, status, sent, duration, headers)
    return both


def note_workers(workers: Iterable[Any]) -> None:
    """The supervisor's loop: the workers not told to stop, sent when their number changes."""
    if client is not None:
        client.workers(sum(1 for worker in workers if not worker.stopping_since))
