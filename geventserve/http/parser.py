"""Request heads and bodies from bytes: httptools (llhttp) parses, this module adds the rest.

llhttp parses in its strict mode; this module adds the size limits (trailer section included),
applies the RFC 9110/9112 rules llhttp leaves out (``rules``), and turns every failure into an
HTTPError carrying the status to answer with.

The parser is fed whatever the socket gave; complete request heads queue up in ``ready`` (that is
how pipelining works) and body bytes go to the request they belong to. The first fault stops the
parser and is kept in ``error``: the requests queued before it are still answered.
"""

from __future__ import annotations

from collections import deque
from typing import Deque, List, Optional, Tuple

import httptools

from . import rules
from .errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPError,
    MethodNotImplemented,
    URITooLong,
    VersionNotSupported,
)

# Single bytes are looked up as integers: `b"_" in name` makes CPython try the operand as an
# integer first and build (then drop) a TypeError, several times slower.
_UNDERSCORE, _H, _LF = ord("_"), ord("H"), ord("\n")

# Field names that the parser itself acts upon, lower-cased.
_HOST_NAME, _TE_NAME = b"host", b"transfer-encoding"
_CL_NAME, _EXPECT_NAME = b"content-length", b"expect"
_SPECIAL_LENGTHS = frozenset(len(n) for n in (_HOST_NAME, _TE_NAME, _CL_NAME, _EXPECT_NAME))

_METHOD_NAMES = {m.encode(): m for m in (
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT")}


class Request:
    """One request: its head as received and its body as it arrives."""

    __slots__ = ("method", "target", "version", "headers", "host", "keep_alive", "chunked",
                 "content_length", "expect_continue", "body", "complete", "discard", "received",
                 "script_name")

    def __init__(self) -> None:
        self.method = ""
        self.target = b""
        self.version = "1.1"
        #: (name, value) pairs as received; names containing "_" are already dropped.
        self.headers: List[Tuple[bytes, bytes]] = []
        self.host: Optional[bytes] = None
        self.keep_alive = False
        self.chunked = False
        self.content_length: Optional[int] = None
        self.expect_continue = False
        #: body bytes received and not yet read by the application
        self.body = bytearray()
        #: the whole body has been received
        self.complete = False
        #: drop body bytes instead of keeping them (draining an unread body)
        self.discard = False
        #: body bytes received so far
        self.received = 0
        #: a SCRIPT_NAME header (underscored, so not among ``headers``): believed only from a
        #: trusted proxy, as gunicorn does
        self.script_name: Optional[bytes] = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)


class RequestParser:
    """Feeds bytes to llhttp; see the module docstring for what comes out."""

    __slots__ = ("_parser", "ready", "error", "_line_limit", "_fields_limit",
                 "_field_size_limit", "_head_limit", "_request", "_in_head", "_head_bytes",
                 "_url_parts", "_url_budget", "_fields", "_hosts", "_te", "_cl", "_expect",
                 "_fault", "_completed", "_stopped", "_data", "_raw", "_foreign", "_line_first",
                 "_scan_from",
                 "_bodiless_bytes", "_trailers", "input_ignored")

    def __init__(self, line_limit: int = 4094, fields_limit: int = 100,
                 field_size_limit: int = 8190) -> None:
        self._parser = httptools.HttpRequestParser(self)
        #: requests whose head is complete, oldest first, not yet handed out
        self.ready: Deque[Request] = deque()
        #: the fault that stopped the parser, answered after the requests in ``ready``
        self.error: Optional[HTTPError] = None
        self._line_limit = line_limit
        self._fields_limit = fields_limit
        self._field_size_limit = field_size_limit
        # Bytes a head may take: the request line, every field at its largest, their CRLFs.
        self._head_limit = line_limit + fields_limit * (field_size_limit + 2) + 4
        self._request: Optional[Request] = None  # the request being parsed
        self._in_head = False
        self._head_bytes = 0
        self._url_parts: List[bytes] = []
        self._url_budget = 0
        self._fields = 0
        self._hosts = 0
        self._te: Optional[bytes] = None
        self._cl: Optional[bytes] = None
        self._expect: Optional[bytes] = None
        self._fault: Optional[HTTPError] = None
        self._completed = 0
        self._stopped = False  # a request that ends the connection was parsed
        self._data: object = None  # what feed() is parsing, while it does
        self._line_first = False  # the request line being parsed opens self._data
        self._scan_from = 0  # in self._data: where the next request line may be
        self._raw: Optional[bytes] = None  # the same as bytes, made when needed
        self._foreign: Optional[bool] = None  # whether it holds "TSP/" or "ICE/", when asked
        # Bytes came after a request that ends the connection, and were dropped: more may be
        # on their way, so the connection should not be closed abruptly.
        self.input_ignored = False
        self._bodiless_bytes = 0  # in reads within a body that carry no body data
        self._trailers = 0

    @property
    def in_head(self) -> bool:
        """Part of a request head has arrived, but not all of it."""
        return self._in_head

    @property
    def method(self) -> str:
        """The method of the request being parsed ("" before it is known)."""
        request = self._request
        return "" if request is None else request.method

    @property
    def stopped(self) -> bool:
        """No more requests will come out of this parser (fault, close or upgrade)."""
        return self._stopped or self.error is not None

    def feed(self, data: bytes) -> None:
        """Parse ``data``: complete heads go to ``ready``, body bytes to their request."""
        if self._stopped or self.error is not None:
            if data and self.error is None:
                self.input_ignored = True
            return
        request = self._request
        at_boundary = request is None
        body_before = -1  # body bytes received so far, when a body is being read
        if self._in_head:  # a head spread over several reads: bounded in total
            room = self._head_limit - self._head_bytes
            if len(data) > room:
                # Only what the head may still take counts against it; what follows it in
                # the same read (a body, pipelined requests) is fed once the head is complete.
                self.feed(data[:room])
                if self._request is request and self._in_head and not self.stopped:
                    self._fail(HeaderFieldsTooLarge("the request head is larger than the limits "
                                                    "allow (--limit-request-fields and "
                                                    "--limit-request-field-size)"))
                    return
                self.feed(data[room:])
                return
            self._head_bytes += len(data)
        elif request is not None:
            body_before = request.received
        completed_before = self._completed
        self._data = data
        self._line_first = at_boundary
        self._scan_from = 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self._upgrade(data, exc.args[0])
        except httptools.HttpParserCallbackError as exc:
            fault = exc.__context__  # what the callback raised
            self._fail(fault if isinstance(fault, HTTPError) else BadRequest("malformed request"))
        except httptools.HttpParserInvalidMethodError:
            starts_here = at_boundary and self._completed == completed_before
            self._fail(self._method_error(data if starts_here else None))
        except httptools.HttpParserError as exc:
            if self._stopped:
                self.input_ignored = True  # bytes after a request that closes the connection
                return
            self._fail(_llhttp_error(str(exc), self._request is not None and not self._in_head))
        else:
            if body_before >= 0 and self._request is request:
                self._count_bodiless(request, body_before, len(data))  # type: ignore[arg-type]
        finally:
            self._data = self._raw = self._foreign = None

    def _count_bodiless(self, request: Request, body_before: int, fed: int) -> None:
        """Bound the reads within a body that carry no body data (chunk headers, extensions,
        the trailer section), which llhttp (and httptools) would otherwise take in unbounded.

        A read that carries body data resets the count, so only a run of reads without any
        is counted; a read is at most one receive buffer, so the bound holds within that.
        """
        if request.received != body_before:
            self._bodiless_bytes = 0
            return
        self._bodiless_bytes += fed
        if self._bodiless_bytes > self._head_limit:
            self._fail(HeaderFieldsTooLarge("the chunk headers or the trailer section are larger "
                                            "than the limits allow (--limit-request-fields and "
                                            "--limit-request-field-size)"))

    # -- llhttp callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._request = Request()
        self._in_head = True
        self._head_bytes = 0
        self._url_parts = []
        self._url_budget = -1
        self._fields = self._hosts = 0
        self._te = self._cl = self._expect = None

    def on_url(self, part: bytes) -> None:
        if self._url_budget < 0:  # the first part of the target: the method is known
            raw_method = self._parser.get_method()
            self._request.method = (  # type: ignore[union-attr]
                _METHOD_NAMES.get(raw_method) or raw_method.decode("latin-1"))
            # The line also holds the method, two spaces and "HTTP/1.1".
            self._url_budget = self._line_limit - len(raw_method) - 10
        self._url_budget -= len(part)
        if self._url_budget < 0:
            self._raise(URITooLong(f"the request line is longer than {self._line_limit} bytes "
                                   "(--limit-request-line)"))
        self._url_parts.append(part)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._in_head:  # a trailer field after a chunked body: checked, not passed on
            self._trailers += 1
            if (self._trailers > self._fields_limit
                    or len(name) + len(value) + 2 > self._field_size_limit):
                self._raise(HeaderFieldsTooLarge(
                    f"the trailer section has more than {self._fields_limit} fields or a field "
                    f"longer than {self._field_size_limit} bytes (--limit-request-fields, "
                    "--limit-request-field-size)"))
            return
        self._fields += 1
        if (self._fields > self._fields_limit
                or len(name) + len(value) + 2 > self._field_size_limit):
            self._field_over_limit(name)
        if _UNDERSCORE in name:  # so that X_Forwarded_For can never pose as X-Forwarded-For
            if name.lower() == b"script_name":
                self._request.script_name = value.strip()  # type: ignore[union-attr]
            return
        value = value.rstrip(b" \t")  # llhttp strips the OWS before a value, not after it
        if len(name) in _SPECIAL_LENGTHS:  # spares lower() for most fields
            lname = name.lower()
            if lname == _HOST_NAME:
                self._hosts += 1
                self._request.host = value  # type: ignore[union-attr]
            elif lname == _TE_NAME:  # several fields are one list (RFC 9110 5.3)
                self._te = value if self._te is None else self._te + b"," + value
            elif lname == _CL_NAME:
                self._cl = value
            elif lname == _EXPECT_NAME:
                self._expect = value if self._expect is None else self._expect + b"," + value
        self._request.headers.append((name, value))  # type: ignore[union-attr]

    def _field_over_limit(self, name: bytes) -> None:
        if self._fields > self._fields_limit:
            self._raise(HeaderFieldsTooLarge(f"more than {self._fields_limit} header fields "
                                             "(--limit-request-fields)"))
        self._raise(HeaderFieldsTooLarge(
            f"header field {name[:64].decode('latin-1')!r} is longer than "
            f"{self._field_size_limit} bytes (--limit-request-field-size)"))

    def on_headers_complete(self) -> None:
        request = self._request
        assert request is not None
        self._in_head = False
        self._head_bytes = self._bodiless_bytes = self._trailers = 0
        parser = self._parser
        version = parser.get_http_version()
        rules.check_version(version)
        target = b"".join(self._url_parts)
        data = self._data
        if data is not None:
            at = len(request.method) + len(target) + 2  # where the protocol name starts
            if self._line_first and at < len(data) and data[at] == _H:  # type: ignore
                self._scan_from = at  # the usual case: the request line opens the read
            else:
                self._check_protocol(data, request.method, target)
        request.version = version
        rules.check_method(request.method)
        rules.check_target(request.method, target)
        request.target = target
        rules.check_host(self._hosts, request.host, version)
        request.chunked = rules.is_chunked(self._te, version)
        if not request.chunked and self._cl is not None:
            request.content_length = int(self._cl)  # llhttp has checked it is 1*DIGIT
        request.expect_continue = rules.expects_continue(self._expect, version)
        request.keep_alive = parser.should_keep_alive()
        request.complete = not (request.chunked or request.content_length)
        self.ready.append(request)

    def _check_protocol(self, data: object, method: str, target: bytes) -> None:
        """505 for the RTSP and ICE request lines llhttp parses as if they were HTTP.

        llhttp does not say which protocol it read, so the line is looked for in the bytes
        being parsed, from where the previous request line of the same read was found: the
        first line that starts with this method and target is taken as this request's (a
        body that holds such a line could mislead it). A request line split over two reads
        goes unchecked; it is then answered as HTTP, harmlessly.
        """
        foreign = self._foreign
        if foreign is None:  # once per read, not once per pipelined request in it
            raw = self._raw = bytes(data)  # type: ignore[call-overload]
            foreign = self._foreign = b"TSP/" in raw or b"ICE/" in raw
        if not foreign:
            return
        raw = self._raw
        assert raw is not None
        line = method.encode("latin-1") + b" " + target + b" "
        at = raw.find(line, self._scan_from)
        while at > 0 and raw[at - 1] != _LF:  # not at the start of a line
            at = raw.find(line, at + 1)
        if at < 0:
            return
        self._scan_from = at = at + len(line)
        protocol = rules.foreign_protocol(raw[at:at + 8])
        if protocol is not None:
            self._raise(rules.foreign_protocol_error(protocol))

    def on_body(self, data: bytes) -> None:
        request = self._request
        request.received += len(data)  # type: ignore[union-attr]
        if not request.discard:  # type: ignore[union-attr]
            request.body += data  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        request = self._request
        assert request is not None
        request.complete = True
        self._request = None
        self._line_first = False
        self._completed += 1
        if not request.keep_alive:
            self._stopped = True

    # -- faults -----------------------------------------------------------------------------

    def _raise(self, error: HTTPError) -> None:
        self._fault = error
        raise error

    def _fail(self, error: HTTPError) -> None:
        self.error = error
        self._fault = None

    def _method_error(self, data: Optional[bytes]) -> HTTPError:
        if data is not None:
            method, space, _ = bytes(data).lstrip(b"\r\n").partition(b" ")
            if rules.TOKEN_RUN.fullmatch(method) and method:
                return MethodNotImplemented(f"method {method[:32].decode('latin-1')!r} is not "
                                            "supported by this server")
        return BadRequest("invalid request method")

    def _upgrade(self, data: bytes, offset: int) -> None:
        # llhttp stops after the head of a request with "Connection: upgrade" and an Upgrade
        # field (httptools has already resumed it). The upgrade itself is ignored: the request
        # is answered like any other, so it must not carry a body that llhttp skipped.
        request = self.ready[-1] if self.ready else None
        if request is not None and request.has_body:
            self.ready.pop()
            self._fail(BadRequest("a request body together with Upgrade is not supported"))
            return
        rest = memoryview(data)[offset:]
        if rest:
            self.feed(rest)


def _llhttp_error(reason: str, in_body: bool) -> HTTPError:
    """Map one of llhttp's error reasons to the status to answer with."""
    if reason == "Invalid HTTP version" or reason == "Pause on PRI/Upgrade":
        # The latter is the HTTP/2 connection preface ("PRI * HTTP/2.0").
        return VersionNotSupported("unsupported HTTP version; this server speaks HTTP/1.1 and "
                                   "HTTP/1.0")
    if in_body:
        return BadRequest(f"malformed request body: {reason}")
    return BadRequest(f"malformed request: {reason}")
