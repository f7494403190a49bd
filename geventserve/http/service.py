"""What the connections of one worker share: the app, the settings they read, the live state.

A worker creates one Service and calls ``serve(sock, peer, listener)`` for each accepted
connection; ``stop()`` starts a graceful stop (no new requests, idle connections closed).
A worker whose connections run as tasks (greenlets) passes ``current_task`` and calls
``interrupt_expired()`` periodically; otherwise deadlines become socket timeouts.
"""

from __future__ import annotations

import socket
from time import monotonic
from typing import Any, Callable, Dict, List, Optional, Set

from .. import SERVER_SOFTWARE, logs, tls
from ..settings import Config
from . import wsgi
from .connection import Connection
from .errors import HTTPError
from .proxy import TrustedProxies

RECV_BUFFER_SIZE = 64 * 1024
IDLE_GRACE = 1.0
_SERVE_CODE = Connection._serve.__code__


def _describe(conn: Connection, now: float) -> str:
    request = conn.request
    assert request is not None
    target = request.target.decode("latin-1")
    if len(target) > 200:
        target = target[:200] + "..."
    peer = conn.remote_addr or "-"
    return f"{request.method} {target} from {peer} (running {now - conn.request_started:.1f}s)"


class Service:
    """The HTTP side of a worker: serves connections, counts requests, stops gracefully."""

    def __init__(self, app: Callable[..., Any], config: Config, *, multiprocess: bool,
                 multithread: bool, keepalive: bool = True,
                 current_task: Optional[Callable[[], Any]] = None) -> None:
        self.app = app
        #: returns the task (greenlet) serving the calling connection, which
        #: ``interrupt_expired`` interrupts when the connection's deadline passes
        self.current_task = current_task
        self.sweeps_deadlines = current_task is not None
        #: waits, through the event loop, until a socket is readable (set by the gevent worker)
        self.wait_readable: Optional[Callable[[Any], None]] = None
        self.keepalive = config.keepalive if keepalive else 0.0
        self.header_timeout = config.header_timeout
        self.body_timeout = config.body_timeout
        self.parser_limits = (config.request_line_limit, config.request_fields_limit,
                              config.request_field_size_limit)
        # One receive buffer for the whole worker: bytes are parsed as soon as they are
        # received, before any other connection can run, so connections never share it at once.
        self.buffer = bytearray(RECV_BUFFER_SIZE)
        self.view = memoryview(self.buffer)
        self.tls_context = None
        if config.certfile:
            def default_context() -> Any:
                return tls.server_context(config.certfile, config.keyfile, config.ca_certs,
                                          config.cert_reqs)
            hook = config.values.get("ssl_context")
            self.tls_context = hook(config, default_context) if hook else default_context()
        self.use_sendfile = self.tls_context is None  # sendfile(2) cannot encrypt
        self.proxies = TrustedProxies(config.forwarded_allow_ips)
        self.handle_request = wsgi.handle
        #: gunicorn-style hooks, set by the worker: pre_request(req),
        #: post_request(req, environ, resp)
        self.pre_request: Optional[Callable[..., None]] = None
        self.post_request: Optional[Callable[..., None]] = None
        self.access: Optional[Callable[..., None]] = (
            logs.log_access if logs.access_enabled() else None)
        #: set once the worker stops taking requests; read by every connection between requests
        self.stopping = False
        self.connections: Set[Connection] = set()
        #: requests answered by this worker, and the callback run when ``request_limit`` is hit
        self.requests = 0
        self.request_limit = 0
        self.on_request_limit: Optional[Callable[[], None]] = None
        self.base_environ: Dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.errors": wsgi.ErrorStream(),
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": wsgi.FileWrapper,
            "wsgi.url_scheme": "https" if self.tls_context is not None else "http",
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "SCRIPT_NAME": config.script_name,
        }
        self._listener_environs: Dict[socket.socket, Dict[str, Any]] = {}

    def add_listener(self, listener: socket.socket) -> None:
        """Note the environ keys of a listener (SERVER_NAME, SERVER_PORT) while it is open."""
        environ = dict(self.base_environ)
        if listener.family in (socket.AF_INET, socket.AF_INET6):
            name = listener.getsockname()
            environ["SERVER_NAME"], environ["SERVER_PORT"] = str(name[0]), str(name[1])
        else:
            environ["SERVER_NAME"], environ["SERVER_PORT"] = "localhost", "80"
        self._listener_environs[listener] = environ

    def serve(self, sock: socket.socket, peer: Any, listener: socket.socket) -> None:
        """Serve one accepted connection until it ends."""
        try:
            if isinstance(peer, tuple):
                remote_addr, remote_port = peer[0], str(peer[1])
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            else:
                remote_addr, remote_port = "", ""
            conn = Connection(self, sock, self._listener_environs[listener], remote_addr,
                              remote_port)
            conn.trusted_proxy = self.proxies.trusts(remote_addr)
        except Exception:
            logs.error_log.exception("cannot serve a connection from %s", peer)
            sock.close()
            return
        if self.current_task is not None:
            conn.task = self.current_task()
        self.connections.add(conn)
        try:
            conn.run(self.tls_context)
        finally:
            self.connections.discard(conn)

    def interrupt_expired(self, now: float) -> None:
        """Make every socket operation past its deadline time out (gevent worker's sweep)."""
        for conn in [c for c in self.connections if 0.0 < c.deadline < now]:
            if 0.0 < conn.deadline < now:  # the previous interrupt may have moved it on
                conn.interrupt()

    def request_done(self) -> None:
        self.requests += 1
        if self.requests == self.request_limit and self.on_request_limit is not None:
            self.on_request_limit()

    def stop(self) -> None:
        """Take no new requests: busy connections finish with Connection: close, idle ones end
        (within IDLE_GRACE seconds, answering a request that was already on its way)."""
        self.stopping = True
        for conn in list(self.connections):
            conn.end_if_idle(IDLE_GRACE)

    def in_flight(self) -> List[str]:
        """The requests being served, as 'GET /path (running 1.2s)'."""
        now = monotonic()
        return [_describe(conn, now) for conn in list(self.connections) if conn.request is not None]

    def describe_blocked(self, frame: Any) -> Optional[str]:
        """The request whose code ``frame`` (a stack, innermost first) is running, if any."""
        while frame is not None:
            if frame.f_code is _SERVE_CODE:
                conn = frame.f_locals.get("self")
                if isinstance(conn, Connection) and conn.request is not None:
                    return _describe(conn, monotonic())
            frame = frame.f_back
        return None

    def log_error_access(self, conn: Connection, error: HTTPError) -> None:
        """Access-log an error the server answered without the application."""
        environ = dict(conn.listener_environ, REMOTE_ADDR=conn.remote_addr)
        environ.setdefault("REQUEST_METHOD", "-")
        environ.setdefault("RAW_URI", "-")
        environ.setdefault("SERVER_PROTOCOL", "-")
        if self.access is not None:
            self.access(environ, f"{error.status} {error.reason}", 0, 0.0, ())
