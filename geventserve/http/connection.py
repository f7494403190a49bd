"""One client connection: read request heads, hand each request to its handler, keep alive.

A connection is given what it uses: the worker's frozen ``HTTPSettings``, the request handler
(the WSGI layer), the ``ServerState`` its worker's connections share, and a clock. The handler
answers each request and says what becomes of the connection (an ``Outcome``).

The same code serves the gevent worker (a greenlet per connection, cooperative sockets) and the
sync worker (blocking sockets). Every wait has a deadline, kept in ``Connection.deadline``: the
sync worker turns it into a socket timeout; the gevent worker leaves its sockets without
timeouts and has one periodic sweep interrupt the connections whose deadline has passed
(``Service.interrupt_expired``), which spares a timer per wait on the hot path.
"""

from __future__ import annotations

import errno
import os
import select
import socket
import ssl
from enum import Enum
from time import monotonic
from typing import Any, Callable, Dict, Optional, Protocol

from .. import logs
from .errors import (
    BadRequest,
    BodyTimeout,
    ClientGone,
    HTTPError,
    Interrupted,
    MalformedBody,
    RequestTimeout,
    TruncatedBody,
)
from .parser import Request, RequestParser
from .proxy_protocol import ProxyHeaderError, ProxyProtocol
from .proxy_protocol import read_header as read_proxy_header
from .response import CONTINUE, error_response
from .settings import HTTPSettings

# One receive buffer per worker (see ServerState).
RECV_BUFFER_SIZE = 64 * 1024
# The rest of a request body the application left unread is dropped, up to this many bytes, if it
# is already there, so that the connection can carry the next request; a longer one, or one
# whose rest has not come, closes it (gently: see Connection._linger).
UNREAD_BODY_LIMIT = 256 * 1024
# Body bytes read ahead, before the application runs, to notice a body cut short.
PEEK_LIMIT = 64 * 1024
# A body up to this size is copied into one buffer with its head; a larger one is sent as is.
COPY_LIMIT = 16 * 1024
# Without sendfile (over TLS), a file is read and sent in parts of this size.
FILE_COPY_SIZE = 256 * 1024
_MSG_MORE = getattr(socket, "MSG_MORE", 0)
# After an error response (or an unread body), how long client input is read and dropped before
# the close; it stops sooner at the client's close, or once it is quiet for LINGER_QUIET seconds
# (long enough for a client on a slow network or held back by a full receive window, and for a
# busy machine; nginx waits 5 s).
LINGER_SECONDS = 2.0
LINGER_QUIET = 1.0
# At most this many reads without waiting, to take the input already there.
LINGER_LAST_READS = 16
_socket_timeout = socket.timeout


def can_drain(request: Request) -> bool:
    """Whether the unread rest of ``request``'s body may be read and dropped so that the
    connection can carry the next request: not when the client waits for 100 Continue (it
    might never send the body), nor when more than UNREAD_BODY_LIMIT bytes are known to remain.
    Only what is already there is read (Connection.body_is_here)."""
    return not request.expect_continue and (
        request.content_length is None
        or request.content_length - request.received <= UNREAD_BODY_LIMIT)


class Outcome(Enum):
    """What becomes of the connection once a request is answered (the handler says).

    KEEP_ALIVE is carried out by Connection._serve, every other outcome by Connection._end.
    """

    #: read the next request
    KEEP_ALIVE = "keep-alive"
    #: close it, after lingering if the client may still be sending
    CLOSE = "close"
    #: the application took the socket over (a WebSocket): close it, and nothing else
    TAKEN_OVER = "taken over"


KEEP_ALIVE, CLOSE, TAKEN_OVER = Outcome.KEEP_ALIVE, Outcome.CLOSE, Outcome.TAKEN_OVER

# Connection.takeover: whether the application holds the socket (environ["gunicorn.socket"]).
#: it runs a WebSocket request, and may answer the handshake on the socket itself at any
#: moment (only the end of its call tells); answering over HTTP gives the socket back
LENT = 1
#: it does (it used environ["wsgi.websocket"], or ended its call with StopIteration)
TAKEN = 2


class Evicted(Exception):
    """Thrown into a connection that waits for a request head when its worker needs the
    place for a new one (see eviction.py)."""


class RequestHandler(Protocol):
    """Answers the requests of a connection (``wsgi.WSGIHandler``)."""

    def handle(self, conn: Connection, request: Request) -> Outcome:
        """Answer ``request`` (reading its body through ``conn.fill_body``)."""

    def log_error(self, conn: Connection, error: HTTPError) -> None:
        """Note an error the connection answered by itself (the access log)."""


class ServerState:
    """What the connections of one worker share: the receive buffer (and one view of it), and
    whether the worker is stopping or draining (the only things here that change)."""

    __slots__ = ("stopping", "closing", "buffer", "view")

    def __init__(self, buffer_size: int = RECV_BUFFER_SIZE) -> None:
        #: set once the worker takes no new requests; read by every connection between requests
        self.stopping = False
        #: set once every response is to end its connection (Connection: close): when the
        #: worker stops, and from the start of a --drain-delay, when it still serves
        self.closing = False
        # Bytes are parsed as soon as they are received, before any other connection can run,
        # so connections never use the buffer at the same time.
        self.buffer = bytearray(buffer_size)
        self.view = memoryview(self.buffer)  # one for all the connections' parsers


class Connection:
    """Serves the requests of one client connection, in order (pipelined ones included)."""

    __slots__ = ("sock", "settings", "handler", "state", "clock", "wait_readable", "tls",
                 "parser", "listener_environ", "remote_addr", "remote_port", "trusted_proxy",
                 "idle", "broken", "response_started", "request", "request_started", "deadline",
                 "task", "takeover", "evictable", "head_received", "waiting_since",
                 "proxy_protocol", "_timeout", "_head_deadline")

    def __init__(self, sock: socket.socket, settings: HTTPSettings, handler: RequestHandler,
                 state: ServerState, *, listener_environ: Dict[str, Any], remote_addr: str = "",
                 remote_port: str = "", trusted_proxy: bool = False,
                 wait_readable: Optional[Callable[[Any], None]] = None,
                 clock: Callable[[], float] = monotonic,
                 proxy_protocol: Optional[ProxyProtocol] = None) -> None:
        self.sock = sock
        self.settings, self.handler, self.state, self.clock = settings, handler, state, clock
        #: waits, through the event loop, until the socket is readable (gevent worker)
        self.wait_readable = wait_readable
        self.tls = False  # the socket is wrapped in TLS (no MSG_MORE, no sendfile)
        self.parser = RequestParser(settings.line_limit, settings.fields_limit,
                                    settings.field_size_limit, state.buffer, state.view)
        #: environ keys common to every request on this listener (shared, never modified)
        self.listener_environ = listener_environ
        self.remote_addr = remote_addr  # "" for a unix socket peer
        self.remote_port = remote_port
        #: the peer may set X-Forwarded-For / -Proto (--forwarded-allow-ips)
        self.trusted_proxy = trusted_proxy
        #: waiting for the next request with nothing received (a graceful stop closes these)
        self.idle = False
        #: a framing error was seen: the connection must not be reused
        self.broken = False
        #: the final response head of the current request has been sent
        self.response_started = False
        #: the request being served, and when it started (for the watchdog's report)
        self.request: Optional[Request] = None
        self.request_started = 0.0
        #: when the socket operation under way must be done (0: none under way)
        self.deadline = 0.0
        #: what the gevent worker interrupts when the deadline passes (its greenlet)
        self.task: Any = None
        #: 0, LENT or TAKEN: while the application holds (or may hold) the socket, the server
        #: neither reads nor writes it, its deadlines do not apply, and it is closed without
        #: lingering; once TAKEN, the connection ends with the application's call
        self.takeover = 0
        #: waiting for a request head (or the TLS handshake): may be closed to make room
        self.evictable = False
        #: bytes received towards the request head awaited, and since when it is awaited
        self.head_received = 0
        self.waiting_since = clock()
        #: the peer sends a PROXY protocol header first (--proxy-protocol)
        self.proxy_protocol = proxy_protocol
        self._timeout: Optional[float] = None
        self._head_deadline: Optional[float] = clock() + settings.header_timeout

    @property
    def reusable(self) -> bool:
        """Whether the connection may carry a request after the current one, as far as the
        server is concerned: keep-alive is on, the worker is not stopping or draining, no
        framing error."""
        return not self.broken and self.settings.keepalive > 0 and not self.state.closing

    # -- the request loop -------------------------------------------------------------------

    def run(self, tls_context: Any = None) -> None:
        try:
            if self.proxy_protocol is not None and not self._read_proxy_header():
                return
            if tls_context is None or self._start_tls(tls_context):
                self._serve()
        except ClientGone as exc:
            logs.error_log.debug("client went away: %s", exc)
        except Evicted as exc:
            logs.error_log.debug("connection closed: %s", exc)
        except (ConnectionError, _socket_timeout) as exc:
            logs.error_log.debug("connection ended: %s", exc)
        except OSError as exc:
            if exc.errno not in (errno.EBADF, errno.ENOTCONN):
                logs.error_log.debug("connection failed: %s", exc)
        except Interrupted:  # the watchdog's, outside the application: the request is cut
            logs.error_log.error("a request blocked the event loop for --timeout outside the "
                                 "application; its connection is closed")
        finally:
            self.close()

    def _serve(self) -> None:
        parser = self.parser
        ready = parser.ready
        handle = self.handler.handle
        clock = self.clock
        while True:
            while not ready:
                if parser.stopped:
                    if parser.error is not None:
                        self.send_error(parser.error)
                    return
                if not self._receive_head():
                    return
            request = ready.pop(0)
            if not request.complete:
                if parser.error is not None:
                    # The fault lies in this request's body: answer it without the application.
                    self.send_error(parser.error)
                    return
                if not request.expect_continue and not self._peek_body(request):
                    return
            self.request = request
            self.request_started = clock()
            self.response_started = False
            outcome = handle(self, request)
            self.request = None
            if outcome is not KEEP_ALIVE:
                self._end(outcome, request)
                return
            if not request.complete and not self._drain(request):
                self.broken = True  # body bytes may still come: linger before closing
                return
            if ready or parser.in_head:
                self._head_deadline = clock() + self.settings.header_timeout
            else:
                self._head_deadline = None
                self.head_received = 0
                self.waiting_since = self.request_started  # no clock read for it
            request = None  # an idle connection holds no request (0.5 KiB with its fields)

    def _end(self, outcome: Outcome, request: Request) -> None:
        """The connection carries no more requests after ``request``'s answer. CLOSE: close()
        closes it, lingering first if the client may still be sending (the rest of the body,
        pipelined requests), or a reset may eat the answer. TAKEN_OVER: the application has
        used the socket, so close() only closes it (what follows on it is not HTTP)."""
        if outcome is TAKEN_OVER:
            self.takeover = TAKEN
            return
        parser = self.parser
        if (not request.complete or parser.ready or parser.in_head
                or parser.input_ignored):
            self.broken = True

    def _read_proxy_header(self) -> bool:
        """The PROXY protocol header the peer must send first, under the head deadline; the
        client it names (not a LOCAL one) becomes the remote address. False: close."""
        peer = self.remote_addr or "a unix socket peer"
        self._arm(self.settings.header_timeout)
        try:
            header = read_proxy_header(self.sock.recv, self.proxy_protocol.versions)
        except _socket_timeout:
            logs.error_log.warning("closing the connection of %s: no PROXY protocol header "
                                   "within %gs", peer, self.settings.header_timeout)
            return False
        except ProxyHeaderError as exc:
            logs.error_log.warning("closing the connection of %s: %s", peer, exc)
            return False
        finally:
            self.deadline = 0.0
        if header.source is not None:
            self.remote_addr, self.remote_port = header.source
            self.trusted_proxy = self.proxy_protocol.forwarded.trusts(self.remote_addr)
        return True

    def _start_tls(self, context: Any) -> bool:
        """The TLS handshake, under the head deadline so that a silent client cannot hold on."""
        from ..tls import TLS_RECORD_HANDSHAKE

        header_timeout = self.settings.header_timeout
        self._arm(header_timeout)
        self.evictable = True
        try:
            first = self.sock.recv(1, socket.MSG_PEEK)
            if not first:
                return False
            if first[0] != TLS_RECORD_HANDSHAKE:
                if first.isalpha():  # a plain HTTP request line
                    self.send(error_response(BadRequest("this port speaks HTTPS, not plain "
                                                        "HTTP")))
                    self.broken = True
                return False
            self._arm(header_timeout)
            self.sock = context.wrap_socket(self.sock, server_side=True,
                                            do_handshake_on_connect=False)
            self.tls = True
            self._arm(header_timeout)
            self.sock.do_handshake()
        except _socket_timeout:
            logs.error_log.debug("TLS handshake timed out")
            return False
        except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
            logs.error_log.debug("TLS handshake failed: %s", exc)
            return False
        finally:
            self.deadline = 0.0
            self.evictable = False
        return True

    def _receive_head(self) -> bool:
        """Receive more of the next request head; False when the connection should end.

        A deadline never discards a request whose bytes have already arrived: they may be
        there unread when it passes (another request held the event loop meanwhile), and
        are taken then. A worker that stops waits for no new request, but answers one that
        is already here (with Connection: close).
        """
        settings = self.settings
        deadline = self._head_deadline
        if deadline is not None:
            wait = deadline - self.clock()
        else:
            wait = 0.0 if self.state.stopping else settings.keepalive
        if wait > 0:
            self._arm(wait)
            self.idle = deadline is None
            self.evictable = True
            try:
                if deadline is None and self.wait_readable is not None:
                    # Between keep-alive requests, go through the event loop even if the next
                    # request is already here: otherwise a fast client keeps this connection
                    # served while the others wait (and it saves a recv that would fail).
                    self.wait_readable(self.sock)
                received = self.sock.recv_into(self.state.buffer)
            except _socket_timeout:
                received = self._receive_now()
            finally:
                self.idle = self.evictable = False
                self.deadline = 0.0
        else:
            received = self._receive_now()
        if received:
            self.head_received += received
            if deadline is None:
                self._head_deadline = self.clock() + settings.header_timeout
            self.parser.feed(self.state.buffer, received)
            return True
        if received is None and deadline is not None:
            return self._head_timed_out()
        return False

    def _receive_now(self) -> Optional[int]:
        """Receive what is already there, without waiting: how many bytes (0 at the client's
        close or a failure), None when nothing is there (over TLS: no whole record)."""
        self._set_socket_timeout(0.0)
        try:
            return self.sock.recv_into(self.state.buffer)
        except (BlockingIOError, _socket_timeout, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None
        except OSError:
            return 0
        finally:
            if self.settings.sweeps_deadlines:
                self._set_socket_timeout(None)  # otherwise the next wait sets its own

    def _head_timed_out(self) -> bool:
        if self.parser.in_head:
            self.send_error(RequestTimeout(f"the request head did not arrive within "
                                           f"{self.settings.header_timeout:g} seconds"))
        return False

    def _peek_body(self, request: Request) -> bool:
        """Take in the body bytes already there; answer 400 if the client has already gone."""
        parser = self.parser
        while not request.complete and len(request.body) < PEEK_LIMIT:
            received = self._receive_now()
            if received is None:
                return True  # nothing more yet
            if not received:
                self.send_error(TruncatedBody("the client closed the connection before "
                                              "sending the whole body"))
                return False
            parser.feed(self.state.buffer, received)
            if parser.error is not None and not request.complete:
                self.send_error(parser.error)
                return False
        return True

    def fill_body(self, request: Request) -> None:
        """Receive more of ``request``'s body (for wsgi.input), or raise a BodyError. Bytes
        that came before the deadline are taken even if it has passed."""
        parser = self.parser
        if parser.error is not None:
            self.broken = True
            raise MalformedBody.from_fault(parser.error)
        if request.expect_continue:
            request.expect_continue = False
            if not self.response_started and not request.received:
                self.send(CONTINUE)
        timeout = self.settings.body_timeout
        self._arm(timeout)
        try:
            received = self.sock.recv_into(self.state.buffer)
        except _socket_timeout:
            received = self._receive_now()
        except OSError as exc:
            self.broken = True
            raise TruncatedBody(f"the connection failed while receiving the body: {exc}") from None
        finally:
            self.deadline = 0.0
        if received is None:
            self.broken = True
            raise BodyTimeout(f"the request body stalled for {timeout:g} seconds")
        if not received:
            self.broken = True
            raise TruncatedBody("the client closed the connection before sending the whole body")
        parser.feed(self.state.buffer, received)
        if parser.error is not None and not request.complete:
            self.broken = True
            raise MalformedBody.from_fault(parser.error)

    def body_is_here(self, request: Request) -> bool:
        """Whether the rest of ``request``'s body, which the application has not read (yet),
        is already there: what is there is taken in for it, up to PEEK_LIMIT bytes in all,
        without waiting. When it is not, the response says Connection: close."""
        return can_drain(request) and self._take_waiting(request, PEEK_LIMIT)

    def _drain(self, request: Request) -> bool:
        """Drop the unread rest of the body, if it is already there (up to UNREAD_BODY_LIMIT
        bytes): a body that never ends must not hold the connection. False to close it."""
        if self.broken or not can_drain(request):
            return False
        request.discard = True
        request.body.clear()
        return self._take_waiting(request, UNREAD_BODY_LIMIT)

    def _take_waiting(self, request: Request, limit: int) -> bool:
        """Take in the body bytes already there, without waiting, until the body is complete
        or ``limit`` more bytes came for it (kept, or dropped when ``request.discard``):
        whether it is complete."""
        parser = self.parser
        limit += request.received
        while not request.complete and request.received < limit and parser.error is None:
            received = self._receive_now()
            if not received:  # nothing there yet (None), or the client's close (0)
                break
            parser.feed(self.state.buffer, received)
        return request.complete

    # -- sending ----------------------------------------------------------------------------

    def send(self, data: bytes, more: bool = False) -> None:
        """Send all of ``data``; ClientGone if the client closed or stops reading for too long.

        ``more``: further bytes follow at once, so the kernel may hold these (MSG_MORE) to fill
        whole segments with both, instead of sending a small segment first.
        """
        sock = self.sock
        timeout = self.settings.body_timeout
        flags = _MSG_MORE if more and not self.tls else 0
        self._arm(timeout)
        try:
            sent = sock.send(data, flags)
            if sent < len(data):
                view = memoryview(data)
                while sent < len(view):
                    self._arm(timeout)  # the deadline is for a stall, not for the whole body
                    sent += sock.send(view[sent:], flags)
        except _socket_timeout:
            raise ClientGone(f"the client read nothing for {timeout:g} seconds") from None
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        finally:
            self.deadline = 0.0

    def send_framed(self, head: bytes, body: bytes, chunked: bool) -> None:
        """Send ``head`` then ``body`` (as one chunk when ``chunked``), copying a large body
        into no new buffer: small ones are joined, large ones follow with MSG_MORE."""
        if len(body) <= COPY_LIMIT:
            if chunked:
                self.send(b"%b%x\r\n%b\r\n" % (head, len(body), body))
            else:
                self.send(head + body)
        elif chunked:
            self.send(b"%b%x\r\n" % (head, len(body)), more=True)
            self.send(body, more=True)
            self.send(b"\r\n")
        else:
            if head:
                self.send(head, more=True)
            self.send(body)

    def sendfile(self, fd: int, offset: int, count: int) -> int:
        """Send ``count`` bytes of file ``fd`` from ``offset``, with os.sendfile when possible."""
        if not self.settings.sendfile:
            return self._send_file_by_copy(fd, offset, count)
        timeout = self.settings.body_timeout
        out = self.sock.fileno()
        sent = 0
        try:
            while sent < count:
                try:
                    n = os.sendfile(out, fd, offset + sent, min(count - sent, 1 << 30))
                except BlockingIOError:
                    # select.select is gevent's cooperative one in a gevent worker.
                    _, writable, _ = select.select([], [out], [], timeout)
                    if not writable:
                        raise ClientGone(f"the client read nothing for {timeout:g} "
                                         "seconds") from None
                    continue
                if n == 0:
                    break  # the file is shorter than expected
                sent += n
        except OSError as exc:
            raise ClientGone(str(exc)) from None
        return sent

    def _send_file_by_copy(self, fd: int, offset: int, count: int) -> int:
        sent = 0
        while sent < count:
            data = os.pread(fd, min(count - sent, FILE_COPY_SIZE), offset + sent)
            if not data:
                break
            self.send(data)
            sent += len(data)
        return sent

    def send_error(self, error: HTTPError) -> None:
        """Answer an error the server found itself; the connection is closed afterwards."""
        logs.error_log.debug("%d %s: %s", error.status, error.reason, error.detail)
        self.broken = True
        try:
            self.send(error_response(error, head=self.parser.method == "HEAD"))
        except ClientGone:
            return
        self.handler.log_error(self, error)

    # -- lifecycle --------------------------------------------------------------------------

    def _arm(self, seconds: float) -> None:
        """Give the next socket operation ``seconds`` to complete."""
        self.deadline = self.clock() + seconds
        if not self.settings.sweeps_deadlines:
            self._set_socket_timeout(seconds)

    def _set_socket_timeout(self, timeout: Optional[float]) -> None:
        if timeout != self._timeout:
            self.sock.settimeout(timeout)
            self._timeout = timeout

    def interrupt(self) -> None:
        """Called by the deadline sweep: make the blocked socket operation time out (never
        while the application holds the socket: what blocks then is its own)."""
        task = self.task
        if task is not None and not self.takeover:
            task.throw(_socket_timeout("timed out"))

    def lend(self) -> None:
        """The application is about to run a WebSocket request: it may take the socket over
        (see ``takeover``), and then no deadline of the server's may apply to it."""
        self.takeover = LENT
        self.deadline = 0.0
        if not self.settings.sweeps_deadlines:
            self._set_socket_timeout(None)  # the sync worker's deadlines are socket timeouts

    def evict(self) -> None:
        """Called from the event loop (as the deadline sweep is): close this connection, which
        waits for a request head, to make room for a new one."""
        task = self.task
        if task is not None and self.evictable:
            self.evictable = False
            task.throw(Evicted("closed to make room for a new connection"))

    def end_if_idle(self, grace: float) -> None:
        """For a graceful stop: end this connection within ``grace`` seconds if it waits for a
        request. A request already on its way (a proxy may have just picked this connection
        from its pool) is still answered, with Connection: close; closing at once would reset
        it, and a proxy does not retry a POST."""
        if self.idle:
            self.deadline = min(self.deadline, self.clock() + grace)

    def close(self) -> None:
        sock = self.sock
        if self.broken and not self.takeover:
            self._linger()
        self.parser.release()
        try:
            sock.close()
        except OSError:
            pass

    def _linger(self) -> None:
        """After an error response (or one that left the body unread), read and drop what the
        client still sends, for a moment.

        Closing with unread input makes the kernel reset the connection, and a reset can
        destroy the response before the client has read it: a client that sends its whole
        upload before it reads would see an error instead of the answer.
        """
        sock = self.sock
        buffer = self.state.buffer
        try:
            sock.shutdown(socket.SHUT_WR)
        except (OSError, ValueError):
            return
        clock = self.clock
        deadline = clock() + LINGER_SECONDS
        try:
            while True:
                remaining = deadline - clock()
                if remaining <= 0:
                    self._read_pending()
                    return
                wait = min(remaining, LINGER_QUIET)
                self._set_socket_timeout(wait)
                self._arm(wait)
                try:
                    if not sock.recv_into(buffer):
                        return
                except _socket_timeout:
                    # A process kept off the CPU wakes with the timer and the bytes that came
                    # meanwhile both due, and the timer may win: bytes there mean not quiet.
                    if not self._read_pending():
                        return
        except (OSError, ValueError):
            return
        finally:
            self.deadline = 0.0

    def _read_pending(self) -> Optional[int]:
        """Read and drop the input already there, without waiting: how many bytes (None at
        the client's close or a failure)."""
        self._set_socket_timeout(0.0)
        total = 0
        try:
            for _ in range(LINGER_LAST_READS):
                received = self.sock.recv_into(self.state.buffer)
                if not received:
                    return None
                total += received
        except (BlockingIOError, ssl.SSLWantReadError):
            pass
        except (OSError, ValueError):
            return None
        return total
