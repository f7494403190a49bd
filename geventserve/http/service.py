"""The HTTP side of a worker: builds what its connections are given, serves them, stops.

A worker creates one Service, complete when built (the app and its hooks, the request limit, how
the worker waits), and calls ``serve(sock, peer, listener)`` for each accepted connection;
``stop()`` starts a graceful stop (no new requests, idle connections closed). A worker whose
connections run as tasks (greenlets) passes ``current_task`` and calls ``interrupt_expired()``
periodically; otherwise deadlines become socket timeouts.
"""

from __future__ import annotations

import socket
from time import monotonic
from typing import Any, Callable, Dict, List, Optional, Protocol, Set

from .. import SERVER_SOFTWARE, logs, statsd, tls
from ..settings import Config
from . import eviction
from .connection import Connection, RequestHandler, ServerState
from .health import HealthHandler, health_paths
from .proxy import TrustedProxies
from .proxy_protocol import ProxyProtocol
from .settings import HTTPSettings
from .wsgi import ErrorStream, FileWrapper, WSGIHandler

IDLE_GRACE = 1.0
_SERVE_CODE = Connection._serve.__code__


def _describe(conn: Connection, now: float) -> str:
    request = conn.request
    assert request is not None
    target = request.target.decode("latin-1")
    if len(target) > 200:
        target = target[:200] + "..."
    peer = conn.remote_addr or "-"
    state = "WebSocket open" if conn.takeover else "running"
    return f"{request.method} {target} from {peer} ({state} {now - conn.request_started:.1f}s)"


class Readiness(Protocol):
    """How a worker whose connections share one event loop waits between keep-alive requests
    until a socket is readable (the gevent worker's ReadinessOrder)."""

    def wait(self, sock: Any) -> None:
        """Wait until the plain socket ``sock`` is readable."""

    def wait_tls(self, sock: Any) -> None:
        """The same for a TLS socket (which may hold decrypted bytes already)."""


class Service:
    """Serves connections, counts requests, stops gracefully."""

    def __init__(self, app: Callable[..., Any], config: Config, *, multiprocess: bool,
                 multithread: bool, keepalive: bool = True,
                 current_task: Optional[Callable[[], Any]] = None,
                 readiness: Optional[Readiness] = None, request_limit: int = 0,
                 on_request_limit: Optional[Callable[[], None]] = None,
                 pre_request: Optional[Callable[..., None]] = None,
                 post_request: Optional[Callable[..., None]] = None,
                 ready: Optional[Callable[[], bool]] = None,
                 websockets: Any = None,
                 observe: Optional[Callable[[Any], Any]] = None,
                 tally: Optional[Callable[[Any], None]] = None,
                 on_connection: Optional[Callable[[], None]] = None,
                 clock: Callable[[], float] = monotonic) -> None:
        """``current_task``: returns the task (greenlet) serving the calling connection, which
        ``interrupt_expired`` interrupts when the connection's deadline passes; ``readiness``:
        how to wait between keep-alive requests; ``request_limit``: after this many requests
        (0: never), ``on_request_limit`` is called; ``pre_request(req)``,
        ``post_request(req, environ, resp)``: gunicorn-style hooks; ``ready()``: whether
        --readiness-path answers 200 (it does when not given); ``observe(access)``: what is
        called per answered request instead of the access log (None, or a function of
        access-log arguments), given that; ``tally((method, status, seconds))``: called per
        answered request for the metrics (see metrics/recorder.py); ``on_connection()``:
        called per connection; ``websockets``: what offers environ["wsgi.websocket"]
        (``websocket.WebSocketOffer``), if anything."""
        self.current_task = current_task
        self.clock = clock
        self.tls_context = None
        if config.certfile:
            def default_context() -> Any:
                return tls.server_context(config.certfile, config.keyfile, config.ca_certs,
                                          config.cert_reqs)
            hook = config.values.get("ssl_context")
            self.tls_context = hook(config, default_context) if hook else default_context()
        tls_on = self.tls_context is not None
        self.settings = HTTPSettings.from_config(
            config, keepalive=keepalive, sendfile=not tls_on,  # sendfile(2) cannot encrypt
            sweeps_deadlines=current_task is not None)
        self.wait_readable: Optional[Callable[[Any], None]] = None
        if readiness is not None:
            self.wait_readable = readiness.wait_tls if tls_on else readiness.wait
        self.proxies = TrustedProxies(config.forwarded_allow_ips)
        #: requests answered by this worker; ``on_request_limit`` runs when it reaches the limit
        self.requests = 0
        self.request_limit = request_limit
        self.on_request_limit = on_request_limit
        access = statsd.request_path(logs.log_access if logs.access_enabled() else None)
        self.on_connection = on_connection
        self.handler: RequestHandler = WSGIHandler(
            app, proxies=self.proxies,
            access=observe(access) if observe is not None else access, tally=tally,
            pre_request=pre_request, post_request=post_request,
            on_request_done=self.request_done, websockets=websockets, clock=clock)
        paths = health_paths(config.liveness_path, config.readiness_path)
        if paths:  # otherwise the WSGI handler takes every request directly
            self.handler = HealthHandler(
                self.handler, paths, ready or (lambda: True), clock=clock,
                access=self.handler.access if config.log_health_checks else None,
                tally=tally if config.log_health_checks else None)
        self.proxy_protocol: Optional[ProxyProtocol] = None
        if config.proxy_protocol != "off":
            self.proxy_protocol = ProxyProtocol(config.proxy_protocol, config.proxy_allow_ips,
                                                self.proxies)
        self.state = ServerState()
        self.connections: Set[Connection] = set()
        self.base_environ: Dict[str, Any] = {
            "wsgi.version": (1, 0),
            "wsgi.errors": ErrorStream(),
            "wsgi.multithread": multithread,
            "wsgi.multiprocess": multiprocess,
            "wsgi.run_once": False,
            "wsgi.input_terminated": True,
            "wsgi.file_wrapper": FileWrapper,
            "wsgi.url_scheme": "https" if tls_on else "http",
            "SERVER_SOFTWARE": SERVER_SOFTWARE,
            "SCRIPT_NAME": config.script_name,
        }
        self._listener_environs: Dict[socket.socket, Dict[str, Any]] = {}

    @property
    def stopping(self) -> bool:
        """The worker takes no new requests (``stop()`` was called)."""
        return self.state.stopping

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
            proxy_protocol = self.proxy_protocol
            if proxy_protocol is not None and not proxy_protocol.expected_from(remote_addr):
                proxy_protocol = None  # an untrusted peer: plain HTTP, no header believed
            conn = Connection(sock, self.settings, self.handler, self.state,
                              listener_environ=self._listener_environs[listener],
                              remote_addr=remote_addr, remote_port=remote_port,
                              trusted_proxy=self.proxies.trusts(remote_addr),
                              wait_readable=self.wait_readable, clock=self.clock,
                              proxy_protocol=proxy_protocol)
        except Exception:
            logs.error_log.exception("cannot serve a connection from %s", peer)
            sock.close()
            return
        if self.current_task is not None:
            conn.task = self.current_task()
        if self.on_connection is not None:
            self.on_connection()
        self.connections.add(conn)
        try:
            conn.run(self.tls_context)
        finally:
            self.connections.discard(conn)

    def interrupt_expired(self, at_most: int = 0) -> bool:
        """Make the socket operations past their deadlines time out (gevent worker's sweep):
        ``at_most`` of them (0: all); whether more remain."""
        now = self.clock()
        expired = [c for c in self.connections if 0.0 < c.deadline < now]
        for conn in expired[:at_most] if at_most else expired:
            if 0.0 < conn.deadline < now:  # the previous interrupt may have moved it on
                conn.interrupt()
        return 0 < at_most < len(expired)

    def make_room(self) -> bool:
        """The worker's pool is full and a client waits to connect: close the connection that
        can best spare its place (eviction.choose); False if none may be closed. Run from the
        event loop (the gevent worker's), as interrupt_expired is."""
        conn = eviction.choose(self.connections, self.clock())
        if conn is None:
            return False
        conn.evict()
        return True

    def request_done(self) -> None:
        self.requests += 1
        if self.requests == self.request_limit and self.on_request_limit is not None:
            self.on_request_limit()

    def drain(self) -> None:
        """--drain-delay: keep serving, every response with Connection: close, so that clients
        and load balancers take their next requests elsewhere; idle connections wait out
        their keep-alive (a request on its way is answered, then the connection closed)."""
        self.state.closing = True

    def stop(self) -> None:
        """Take no new requests: busy connections finish with Connection: close, idle ones end
        (within IDLE_GRACE seconds, answering a request that was already on its way)."""
        self.state.stopping = self.state.closing = True
        for conn in list(self.connections):
            conn.end_if_idle(IDLE_GRACE)

    def in_flight(self) -> List[str]:
        """The requests being served, as 'GET /path (running 1.2s)', but for the connections
        the application holds (``taken_over``)."""
        now = self.clock()
        return [_describe(conn, now) for conn in list(self.connections)
                if conn.request is not None and not conn.takeover]

    def taken_over(self) -> int:
        """How many connections the application holds (or may: WebSocket requests)."""
        return sum(1 for conn in list(self.connections) if conn.takeover)

    def describe_blocked(self, frame: Any) -> Optional[str]:
        """The request whose code ``frame`` (a stack, innermost first) is running, if any."""
        while frame is not None:
            if frame.f_code is _SERVE_CODE:
                conn = frame.f_locals.get("self")
                if isinstance(conn, Connection) and conn.request is not None:
                    return _describe(conn, self.clock())
            frame = frame.f_back
        return None
