"""The WSGI layer (PEP 3333): the environ, start_response, and the framing of the response.

A ``WSGIHandler`` is given the application and what surrounds it (trusted proxies, hooks, the
access log, a clock). Its ``handle(conn, request)`` runs the application, sends
the response (framed as ``framing.response_framing`` says) through one ``Exchange``, and returns
what becomes of the connection, an ``Outcome``.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass
from time import monotonic
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

import httptools

from .. import logs
from .body import EMPTY_INPUT, Input
from .connection import CLOSE, KEEP_ALIVE, TAKEN, TAKEN_OVER, Outcome
from .errors import ClientGone, HTTPError, Interrupted
from .framing import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, response_framing
from .hooks import HookRequest, HookResponse
from .parser import Request
from .proxy import TrustedProxies
from .response import (
    CONNECTION,
    CONTENT_LENGTH,
    DATE,
    HOP_BY_HOP,
    SERVER,
    SERVER_HEADER,
    TRANSFER_ENCODING,
    check_value,
    date_header,
    error_response,
    header_kind,
    internal_error_response,
    parse_content_length,
    status_line,
)
from .websocket import SWITCHING, asks_for_websocket

if TYPE_CHECKING:
    from .connection import Connection

_PROTOCOLS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
# Response header lines already validated and encoded, by (name, value).
_HEADER_LINES: Dict[Tuple[str, str], bytes] = {}
_HEADER_LINES_LIMIT = 4096
_ENVIRON_KEYS: Dict[bytes, str] = {}
_KEY_CACHE_LIMIT = 2048


def _environ_key(name: bytes) -> str:
    key = _ENVIRON_KEYS.get(name)
    if key is None:
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if len(_ENVIRON_KEYS) >= _KEY_CACHE_LIMIT:
            _ENVIRON_KEYS.clear()  # header names a client made up: start afresh
        _ENVIRON_KEYS[name] = key
    return key


class FileWrapper:
    """wsgi.file_wrapper: lets the server send a file with os.sendfile."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> FileWrapper:
        return self

    def __next__(self) -> bytes:
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


class ErrorStream:
    """wsgi.errors: writes go to the error log's stream."""

    def write(self, text: str) -> None:
        for handler in logs.error_log.handlers:
            stream = getattr(handler, "stream", None)
            if stream is not None:
                try:
                    stream.write(text)
                except (OSError, ValueError):
                    pass
                return
        sys.stderr.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        for handler in logs.error_log.handlers:
            try:
                handler.flush()
            except (OSError, ValueError):
                pass


def build_environ(conn: Connection, request: Request,
                  proxies: Optional[TrustedProxies] = None) -> Dict[str, Any]:
    """The PEP 3333 environ of one request; ``proxies``: whose forwarding headers to believe
    when the connection's peer is one of them."""
    environ = conn.listener_environ.copy()
    environ["REMOTE_ADDR"] = conn.remote_addr
    environ["gunicorn.socket"] = conn.sock  # for apps that take the connection over
    if conn.remote_port:
        environ["REMOTE_PORT"] = conn.remote_port
    target = request.target.decode("latin-1")
    path, _, query = target.partition("?")
    if path[:1] != "/" and path != "*":
        # absolute-form (the parser has checked it): the authority in the target replaces the
        # Host field (RFC 9112 3.2.2)
        url = httptools.parse_url(request.target)
        path = (url.path or b"/").decode("latin-1")
        query = (url.query or b"").decode("latin-1")
        host = url.host.decode("latin-1")
        if ":" in host:
            host = f"[{host}]"  # an IPv6 address, which llhttp gives without its brackets
        environ["HTTP_HOST"] = host if url.port is None else f"{host}:{url.port}"
    environ["REQUEST_METHOD"] = request.method
    environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1") if "%" in path else path
    environ["QUERY_STRING"] = query
    environ["RAW_URI"] = environ["REQUEST_URI"] = target
    environ["SERVER_PROTOCOL"] = _PROTOCOLS[request.version]
    if request.complete and not request.body:
        environ["wsgi.input"] = EMPTY_INPUT
    else:
        environ["wsgi.input"] = Input(conn.fill_body, request)
    for name, value in request.headers:
        key = _ENVIRON_KEYS.get(name) or _environ_key(name)
        text = value.decode("latin-1")
        if key in environ:
            if key.startswith("HTTP_") and key != "HTTP_HOST":
                environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + text
            continue
        environ[key] = text
    if conn.trusted_proxy:
        if proxies is not None:
            proxies.apply(environ)
        if request.script_name and request.script_name[:1] == b"/":
            environ["SCRIPT_NAME"] = request.script_name.rstrip(b"/").decode("latin-1")
    host = environ.get("HTTP_HOST")
    if host:
        scheme = environ["wsgi.url_scheme"]
        name_port = _HOSTS.get((host, scheme))
        if name_port is None:
            name_port = _split_host(host, scheme)
        if name_port[0]:
            environ["SERVER_NAME"], environ["SERVER_PORT"] = name_port
        else:  # "Host: :8000": the listener's name stays, SERVER_NAME is never empty
            environ["SERVER_PORT"] = name_port[1]
    script_name = environ["SCRIPT_NAME"]
    if script_name:
        path_info = environ["PATH_INFO"]
        if path_info == script_name or path_info.startswith(script_name + "/"):
            environ["PATH_INFO"] = path_info[len(script_name):]
    return environ


_HOSTS: Dict[Tuple[str, str], Tuple[str, str]] = {}


def _split_host(host: str, scheme: str) -> Tuple[str, str]:
    """SERVER_NAME and SERVER_PORT from a Host value (remembered: clients repeat it)."""
    if host[-1:] != "]" and ":" in host:
        name, _, port = host.rpartition(":")
        result = (name, port or ("443" if scheme == "https" else "80"))
    else:
        result = (host, "443" if scheme == "https" else "80")
    if len(_HOSTS) >= 1024:
        _HOSTS.clear()
    _HOSTS[(host, scheme)] = result
    return result


class Exchange:
    """The response to one request: start_response, write, and the framing decisions."""

    __slots__ = ("conn", "request", "status", "code", "headers", "app_headers",
                 "content_length", "app_close", "has_date", "has_server", "head_sent", "chunked",
                 "close", "body_allowed", "sent", "to_send")

    def __init__(self, conn: Connection, request: Request) -> None:
        self.conn = conn
        self.request = request
        self.status: Optional[str] = None
        self.code = 0
        self.headers = b""
        self.app_headers: Any = ()
        self.content_length: Optional[int] = None
        self.app_close = False
        self.has_date = self.has_server = False
        self.head_sent = False
        self.chunked = False
        self.close = False
        self.body_allowed = True
        self.sent = 0  # body bytes sent
        self.to_send: Optional[int] = None  # body bytes still allowed by Content-Length

    # -- what the application calls -------------------------------------------------------

    def start_response(self, status: str, headers: List[Any],
                       exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info:
            try:
                if self.head_sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.status is not None:
            raise AssertionError("start_response was called a second time without exc_info")
        code, line = status_line(status)
        if not isinstance(headers, (list, tuple)):
            raise TypeError(f"response headers must be a list of (name, value) tuples, not "
                            f"{type(headers).__name__}")
        parts = [line]
        content_length = None
        app_close = has_date = has_server = False
        known_lines = _HEADER_LINES
        for item in headers:
            if isinstance(item, tuple):
                try:
                    cached = known_lines.get(item)
                except TypeError:  # an unhashable value: refused below
                    cached = None
                if cached is not None:
                    parts.append(cached)
                    continue
            elif not (isinstance(item, list) and len(item) == 2):
                raise TypeError(f"response header {item!r} is not a (name, value) tuple")
            try:
                name, value = item
            except ValueError:
                raise TypeError(f"response header {item!r} is not a (name, value) tuple") from None
            kind = header_kind(name)
            check_value(name, value)
            if kind:
                if kind == CONTENT_LENGTH:
                    length = parse_content_length(value.strip())
                    if content_length is not None and length != content_length:
                        raise ValueError("the response has two different Content-Length values")
                    content_length = length
                    continue  # written by send_head, which knows when it applies
                elif kind in (TRANSFER_ENCODING, HOP_BY_HOP):
                    continue  # hop-by-hop: the server frames the response itself
                elif kind == CONNECTION:
                    if "close" in value.lower():
                        app_close = True
                    continue
                elif kind == DATE:
                    has_date = True
                elif kind == SERVER:
                    has_server = True
            header_line = f"{name}: {value}\r\n".encode("latin-1")
            if not kind and isinstance(item, tuple) and name.lower() != "set-cookie":
                if len(known_lines) >= _HEADER_LINES_LIMIT:
                    known_lines.clear()  # values that vary per response: start afresh
                known_lines[item] = header_line  # validated: next time, no checks
            parts.append(header_line)
        self.status = status
        self.code = code
        self.headers = b"".join(parts)
        self.app_headers = headers
        self.content_length = content_length
        self.app_close = app_close
        self.has_date = has_date
        self.has_server = has_server
        return self.write

    def write(self, data: bytes) -> None:
        """The legacy write() callable, and the path of every body chunk."""
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"the application produced a {type(data).__name__}, not bytes")
            data = bytes(data)
        if not self.head_sent:
            self.send_head(data, final=False)
            return
        if not data or not self.body_allowed:
            return
        to_send = self.to_send
        if to_send is not None:
            if len(data) > to_send:
                data = data[:to_send]
                self.close = True
            self.to_send = to_send - len(data)
        self.conn.send_framed(b"", data, self.chunked)
        self.sent += len(data)

    # -- framing --------------------------------------------------------------------------

    def send_head(self, body: bytes, final: bool) -> None:
        """Send the head together with the first body bytes (all of them when ``final``)."""
        if self.status is None:
            raise RuntimeError("the application did not call start_response")
        request = self.request
        conn = self.conn
        if conn.takeover:
            if conn.takeover == TAKEN:
                return  # the application answered on the socket itself: nothing else goes out
            conn.takeover = 0  # it answers a WebSocket request over HTTP: the socket is ours
        kind, length = response_framing(self.code, request.method, request.version,
                                        self.content_length, len(body) if final else None)
        body_allowed = self.body_allowed = kind != NO_BODY
        close = not (request.keep_alive and conn.reusable) or self.app_close
        extra = []
        if length is not None:
            extra.append(b"Content-Length: %d\r\n" % length)
        elif kind == CHUNKED:
            self.chunked = True
            extra.append(b"Transfer-Encoding: chunked\r\n")
        elif kind == UNTIL_CLOSE:
            close = True
        if not close and not request.complete and not conn.body_is_here(request):
            close = True  # the rest of the body may never come: the connection cannot go on
        if close:
            extra.append(b"Connection: close\r\n")
        elif request.version == "1.0":
            extra.append(b"Connection: keep-alive\r\n")
        if not self.has_date:
            extra.append(date_header())
        if not self.has_server:
            extra.append(SERVER_HEADER)
        extra.append(b"\r\n")
        self.close = close
        self.head_sent = conn.response_started = True
        if not body_allowed or not body:
            if kind == LENGTH:
                self.to_send = length
            conn.send(self.headers + b"".join(extra))
            return
        if kind == LENGTH:
            if len(body) > length:  # type: ignore[operator]
                body = body[:length]
                self.close = True
            self.to_send = length - len(body)  # type: ignore[operator]
        conn.send_framed(self.headers + b"".join(extra), body, self.chunked)
        self.sent = len(body)

    def finish(self) -> None:
        """End the response after the application's iterable is exhausted."""
        if not self.head_sent:
            self.send_head(b"", final=True)
        if self.chunked:
            self.conn.send(b"0\r\n\r\n")
        elif self.to_send:
            logs.error_log.warning("%s %s: the application sent %d bytes fewer than its "
                                   "Content-Length; closing the connection",
                                   self.request.method, self.target_text(), self.to_send)
            self.close = True

    def target_text(self) -> str:
        return self.request.target.decode("latin-1")[:200]

    def send_file(self, wrapper: FileWrapper) -> bool:
        """Send a wsgi.file_wrapper over a real file with sendfile; False to iterate instead."""
        filelike = wrapper.filelike
        try:
            fd = filelike.fileno()
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return False
            offset = filelike.tell()
        except (AttributeError, OSError, ValueError):
            return False
        count = max(info.st_size - offset, 0)
        if self.content_length is not None:
            count = min(count, self.content_length)
        elif self.status is not None:
            self.content_length = count
        self.send_head(b"", final=False)
        if not self.body_allowed or self.to_send is None:
            return True
        sent = self.conn.sendfile(fd, offset, min(count, self.to_send))
        self.to_send -= sent
        self.sent += sent
        try:
            filelike.seek(offset + sent)
        except (OSError, ValueError):
            pass
        return True


@dataclass
class WSGIHandler:
    """Answers requests with a WSGI application: one ``Exchange`` per request, as uvicorn's
    RequestResponseCycle.

    An application may take the connection over (a WebSocket) through
    ``environ["gunicorn.socket"]``, ending its call with StopIteration as gunicorn's workers
    allow, or through ``environ["wsgi.websocket"]`` when ``websockets`` offers it. From the
    moment it is given a WebSocket request the connection is lent to it (``Connection.lend``):
    no deadline applies, and no way out of the call writes to the socket again unless the
    application answers over HTTP; a takeover ends the connection (Outcome TAKEN_OVER) with
    one access-log line, status 101, for the time it was held.
    """

    app: Callable[..., Any]
    #: the peers whose X-Forwarded-* headers are believed (--forwarded-allow-ips)
    proxies: Optional[TrustedProxies] = None
    #: access(environ, status, sent, duration, headers): one access-log line
    access: Optional[Callable[..., None]] = None
    #: tally((method, status, duration)) per answered request: the metrics (recorder)
    tally: Optional[Callable[[Tuple[str, Optional[str], float]], None]] = None
    #: gunicorn-style hooks: pre_request(req), post_request(req, environ, resp)
    pre_request: Optional[Callable[..., None]] = None
    post_request: Optional[Callable[..., None]] = None
    #: called once each request is answered (the worker counts them); a WebSocket request
    #: counts when the application is given it, since it may last for hours
    on_request_done: Optional[Callable[[], None]] = None
    #: offers environ["wsgi.websocket"] (``websocket.WebSocketOffer``), or None
    websockets: Any = None
    clock: Callable[[], float] = monotonic

    def handle(self, conn: Connection, request: Request) -> Outcome:
        """Run the application for ``request`` and send its response."""
        environ = build_environ(conn, request, self.proxies)
        exchange = Exchange(conn, request)
        websocket = "HTTP_UPGRADE" in environ and asks_for_websocket(environ)
        offered = self._lend(conn, environ) if websocket else None
        hook_request = None
        if self.pre_request is not None or self.post_request is not None:
            hook_request = HookRequest(request, environ)
            if self.pre_request is not None:
                self.pre_request(hook_request)
        result: Any = None
        try:
            result = self.app(environ, exchange.start_response)
            if conn.takeover == TAKEN:
                pass  # it answered on the socket itself (wsgi.websocket): nothing else goes out
            elif type(result) is list or type(result) is tuple:
                # The whole body is known: one send, with a Content-Length.
                if len(result) == 1 and type(result[0]) is bytes:
                    body = result[0]
                else:
                    for item in result:
                        if not isinstance(item, (bytes, bytearray, memoryview)):
                            raise TypeError("the application produced a "
                                            f"{type(item).__name__}, not bytes")
                    body = b"".join(result)
                if not exchange.head_sent:
                    exchange.send_head(body, final=True)
                else:
                    exchange.write(body)
                exchange.finish()
            elif (type(result) is FileWrapper and not exchange.head_sent
                  and exchange.send_file(result)):
                exchange.finish()
            else:
                write = exchange.write
                for chunk in result:
                    if chunk:
                        write(chunk)
                        if not exchange.body_allowed:
                            break  # HEAD, 204, 304: the head is out and no body follows
                exchange.finish()
        except StopIteration:
            # Raised by the application call (iterating a body swallows it): it took the
            # socket over and ends the call as gunicorn's workers let it. Nothing goes out.
            conn.takeover = TAKEN
        except ClientGone as exc:
            logs.error_log.debug("%s %s: client went away: %s", request.method,
                                 exchange.target_text(), exc)
            exchange.close = True
        except HTTPError as exc:
            # A request-body error the application let through (truncated, malformed, stalled).
            exchange.close = True
            if not exchange.head_sent and not conn.takeover:
                logs.error_log.debug("%d %s: %s", exc.status, exc.reason, exc.detail)
                exchange.status = f"{exc.status} {exc.reason}"
                _send_quietly(conn, error_response(exc, head=request.method == "HEAD"))
        except (Exception, Interrupted) as exc:
            exchange.close = True
            if isinstance(exc, Interrupted):  # by the watchdog, which logged the stack
                logs.error_log.error("%s %s: interrupted after blocking the event loop for "
                                     "--timeout", request.method, exchange.target_text())
            elif conn.takeover:
                logs.error_log.exception("Error handling request %s %s (the application may "
                                         "hold the connection: closed without an answer)",
                                         request.method, exchange.target_text())
            else:
                logs.error_log.exception("Error handling request %s %s", request.method,
                                         exchange.target_text())
            if not exchange.head_sent and not conn.takeover:
                exchange.status = "500 Internal Server Error"
                _send_quietly(conn, internal_error_response(head=request.method == "HEAD"))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    exchange.close = True
                    logs.error_log.exception("Error closing the response of %s %s",
                                             request.method, exchange.target_text())
            if offered is not None:
                self.websockets.finish(offered)
        outcome = CLOSE if exchange.close else KEEP_ALIVE
        if conn.takeover:
            outcome = TAKEN_OVER
            # LENT still: the application failed before it answered anything
            exchange.status = SWITCHING if websocket and conn.takeover == TAKEN else None
            exchange.app_headers = ()
        if not websocket and self.on_request_done is not None:
            self.on_request_done()
        tally, access = self.tally, self.access
        if tally is not None or access is not None:
            duration = self.clock() - conn.request_started
            if tally is not None:
                tally((request.method, exchange.status, duration))
            if access is not None:
                access(environ, exchange.status, exchange.sent, duration, exchange.app_headers)
        if self.post_request is not None:
            self.post_request(hook_request, environ,
                              HookResponse(exchange.status or "", list(exchange.app_headers),
                                           exchange.sent))
        return outcome

    def _lend(self, conn: Connection, environ: Dict[str, Any]) -> Any:
        """A WebSocket request: the application may take the socket over from now on. It
        counts as answered now; the lazy wsgi.websocket goes into ``environ`` if offered."""
        conn.lend()
        if self.on_request_done is not None:
            self.on_request_done()
        if self.websockets is not None:
            return self.websockets.offer(conn, environ)
        return None

    def log_error(self, conn: Connection, error: HTTPError) -> None:
        """Access-log an error the connection answered without the application."""
        if self.access is None and self.tally is None:
            return
        environ = dict(conn.listener_environ, REMOTE_ADDR=conn.remote_addr)
        environ.setdefault("REQUEST_METHOD", "-")
        environ.setdefault("RAW_URI", "-")
        environ.setdefault("SERVER_PROTOCOL", "-")
        status = f"{error.status} {error.reason}"
        if self.tally is not None:
            self.tally((environ["REQUEST_METHOD"], status, 0.0))
        if self.access is not None:
            self.access(environ, status, 0, 0.0, ())


def _send_quietly(conn: Connection, data: bytes) -> None:
    try:
        conn.send(data)
    except ClientGone:
        pass
