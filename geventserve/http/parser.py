"""Request heads and bodies from bytes: httptools (llhttp) parses, this module adds the rest.

llhttp parses in its strict mode; this module adds the size limits (trailer section included),
applies the RFC 9110/9112 rules llhttp leaves out (``rules``), and turns every failure into an
HTTPError carrying the status to answer with.

The parser is fed whatever the socket gave; complete request heads queue up in ``ready`` (that is
how pipelining works) and body bytes go to the request they belong to. The first fault stops the
parser and is kept in ``error``: the requests queued before it are still answered.

The answer never depends on how the bytes were split into reads. Two rules need bytes that
llhttp does not report (it gives no offsets): the protocol at the end of a request line, and the
whole method token when llhttp refuses a method at its first unknown byte. So the parser knows
where each request line starts. A read that starts between messages (the usual read) is fed
whole, and a message that follows another in it starts where the other ends: its head ends at
the first CRLFCRLF (strict mode: no bare LF, no CR in a value), its body after its
Content-Length. A read that continues a head is fed in pieces located beforehand (up to the
head's end); a read larger than the head limit too, one head at a time, so that the limit
applies at the same byte however the bytes came. Of a head that spans reads, a few bytes are
carried over. A chunked body is walked line by line (``ChunkedWalk``), which is how its end,
and the length and grammar of each chunk line, are known: llhttp is fed what lies between the
lines, and each line once it is whole. llhttp parses every byte but the chunk extensions; this
module only locates.
"""

from __future__ import annotations

from typing import Any, Callable, List, Optional, Tuple, Union

import httptools

from . import rules
from .chunks import ChunkedWalk, ChunkLineError
from .errors import (
    BadRequest,
    HeaderFieldsTooLarge,
    HTTPError,
    URITooLong,
    VersionNotSupported,
)

# Single bytes are looked up as integers: `b"_" in name` makes CPython try the operand as an
# integer first and build (then drop) a TypeError, several times slower.
_UNDERSCORE, _CR, _LF, _SP, _H = ord("_"), ord("\r"), ord("\n"), ord(" "), ord("H")
_HEAD_END = b"\r\n\r\n"  # also how a chunked body ends (last chunk or trailer, empty line)

# Where the bytes being fed stand: between messages, in a head, in a body of known length, in a
# chunked body.
_BOUNDARY, _HEAD, _LENGTH, _CHUNKED = range(4)
_NOT_YET = 1 << 62  # no piece ends there: the end of a piece while none is being fed
# Of a head that spans reads, its first bytes are carried over (llhttp refuses an unknown method
# within the first 14 bytes: a method error looks at them), and its last ones (the request line's
# protocol and CR, or a CRLFCRLF split between the reads).
_KEEP_FIRST, _KEEP_LAST = 16, 9
_UNRESOLVED = -2  # a message ended in this read, where is yet to be worked out


class _Resplit(Exception):
    """Raised from a callback: the piece being fed goes on where llhttp must not go yet, into
    a chunked body (which is walked first) from ``at``, or past the limit of a request line
    that begins at ``at`` (``cap``: where)."""

    def __init__(self, at: int, cap: int = -1) -> None:
        super().__init__(at, cap)
        self.at = at
        self.cap = cap


# Field names that the parser itself acts upon, lower-cased.
_HOST_NAME, _TE_NAME = b"host", b"transfer-encoding"
_CL_NAME, _EXPECT_NAME = b"content-length", b"expect"
# Of the fields that decide how a request is read (its framing, its target, the format of its
# body), those whose grammar allows one value only (RFC 9110 5.3) must come once: a second one
# makes the request mean different things to different readers, and so is refused (gunicorn
# does the same). Content-Length: llhttp refuses a second one; Host: rules.check_host;
# Content-Type (how the application reads the body: form, multipart boundary, charset): here.
# Transfer-Encoding, Expect, Connection and Upgrade are lists, whose fields combine into one.
_CT_NAME = b"content-type"
_SPECIAL_LENGTHS = frozenset(len(n) for n in (_HOST_NAME, _TE_NAME, _CL_NAME, _EXPECT_NAME,
                                              _CT_NAME))

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

    __slots__ = ("_parser", "ready", "error", "_line_limit", "_fields_limit", "_field_size_limit",
                 "_head_limit", "_request", "in_head", "_head_bytes", "_url_parts", "_fields",
                 "_hosts", "_te", "_cl", "_expect", "_content_types", "_fault", "_stopped",
                 "stopped", "_data", "_size", "_phase", "_next_at", "_head_at", "_end_at",
                 "_piece_end", "_last", "_line_end", "_line_length", "_head_first", "_tail",
                 "_method_line", "_walk", "_buffer", "_buffer_view", "_trailers",
                 "input_ignored")

    def __init__(self, line_limit: int, fields_limit: int, field_size_limit: int,
                 receive_buffer: Optional[bytearray] = None,
                 receive_view: Optional[memoryview] = None) -> None:
        self._parser = self._new_parser()
        #: requests whose head is complete, oldest first, not yet handed out (a list: rarely
        #: more than one, and a deque takes 700 bytes more, per connection)
        self.ready: List[Request] = []
        #: the fault that stopped the parser, answered after the requests in ``ready``
        self.error: Optional[HTTPError] = None
        self._line_limit = line_limit
        self._fields_limit = fields_limit
        self._field_size_limit = field_size_limit
        # Bytes a head may take: the request line, every field at its largest, their CRLFs.
        self._head_limit = line_limit + fields_limit * (field_size_limit + 2) + 4
        self._request: Optional[Request] = None  # the request being parsed
        #: part of a request head has arrived, but not all of it
        self.in_head = False
        self._head_bytes = 0
        self._url_parts: List[bytes] = []
        self._fields = 0
        self._hosts = 0
        self._te: Optional[bytes] = None
        self._cl: Optional[bytes] = None
        self._expect: Optional[bytes] = None
        self._content_types = 0
        self._fault: Optional[HTTPError] = None  # found in a field, raised at the head's end
        self._stopped = False  # a request that ends the connection was parsed
        #: no more requests will come out of this parser (that, or a fault)
        self.stopped = False
        # Bytes came after a request that ends the connection, and were dropped: more may be
        # on their way, so the connection should not be closed abruptly.
        self.input_ignored = False
        self._trailers = 0
        # -- where the bytes stand (see the module docstring)
        self._data: Any = None  # the read being fed, while it is, and its size
        self._size = 0
        self._phase = _BOUNDARY
        # Offsets in the read: where the next message begins, where the current one begins (-1:
        # in an earlier read; it may begin with CR and LF llhttp skips), where it ends if that is
        # known beforehand; _UNRESOLVED: a message ended in this read, where is to be worked out.
        self._next_at = 0
        self._head_at = -1
        self._end_at = _UNRESOLVED
        self._piece_end = _NOT_YET  # where the piece being fed ends
        self._last: Optional[Request] = None  # the last message completed
        self._line_end = b""  # the end of a request line in an earlier read (CR last)
        self._line_length = 0  # and the length of that line, without its CRLF
        self._head_first = b""  # a head that spans reads: its first bytes,
        self._tail = b""  # and its last ones
        # llhttp refused the method while its token still ran: the request line so far
        self._method_line: Optional[bytearray] = None
        self._walk: Optional[ChunkedWalk] = None  # the chunked body being fed
        # the receive buffer last fed with a size, and a view of it (the worker's shared ones
        # when given: a view per connection would cost each idle connection 0.3 KiB)
        self._buffer: Any = receive_buffer
        self._buffer_view: Optional[memoryview] = receive_view

    def _new_parser(self) -> httptools.HttpRequestParser:
        parser = httptools.HttpRequestParser(self)
        # RFC 9110 2.5: HTTP/1.2 (a higher minor version) is processed as HTTP/1.1, which
        # llhttp would refuse; rules.check_version decides on every version instead. Nothing
        # else in llhttp's parsing changes with this leniency.
        parser.set_dangerous_leniencies(lenient_version=True)
        return parser

    def release(self) -> None:
        """Drop llhttp's parser: its callbacks refer back to this object, and without this the
        pair would wait for the cyclic garbage collector (whose passes, with thousands of
        connections coming and going, hold up the event loop)."""
        self._parser = None  # type: ignore[assignment]
        self.stopped = True

    @property
    def method(self) -> str:
        """The method of the request being parsed ("" before it is known)."""
        request = self._request
        return "" if request is None else request.method

    def feed(self, data: Union[bytes, bytearray], size: Optional[int] = None) -> None:
        """Parse ``data``, or its first ``size`` bytes (a receive buffer the caller reuses and
        never resizes): complete heads go to ``ready``, body bytes to their request."""
        if self.stopped:
            if (len(data) if size is None else size) and self.error is None:
                self.input_ignored = True
            return
        if size is None:
            size = len(data)
            view = memoryview(data)
        elif data is self._buffer:
            view = self._buffer_view  # type: ignore[assignment]
        else:
            view = self._buffer_view = memoryview(data)
            self._buffer = data
        if self._method_line is not None:
            self._refuse_method(data[:min(size, self._line_limit + 1)])
            return
        self._data = data
        self._size = size
        feed_data = self._parser.feed_data
        try:
            pos = 0
            while pos < size:
                phase = self._phase
                self._end_at = _UNRESOLVED
                if phase == _BOUNDARY:
                    self._next_at = pos
                    if size - pos <= self._head_limit:
                        end = size  # no head here can pass the limit: the usual read, whole
                    else:
                        end = self._locate_head(data, pos, size)
                    # (a head past its limit, -1 - where, is past the line's limit first)
                    cap = self._line_cap(data, pos, end if end >= 0 else -1 - end, 0)
                    if cap >= 0:
                        self._refuse_long_line(view, pos, cap)
                        return
                elif phase == _LENGTH:
                    end = pos + self._request.content_length - self._request.received  # type: ignore
                    if end > size:
                        end = size
                elif phase == _HEAD:
                    if not self._line_end:  # the request line goes on from an earlier read
                        cap = self._line_cap(data, pos, size, self._head_bytes)
                        if cap >= 0:
                            self._refuse_long_line(view, pos, cap)
                            return
                    end = self._locate_head_rest(data, pos, size)
                else:
                    pos = self._feed_chunked(data, view, pos, size)
                    if pos < 0:
                        return
                    if self._stopped and pos < size:
                        self.input_ignored = True
                        return
                    continue
                if end < 0:  # the head passes the limits: -1 - where they end
                    self._refuse_large_head(view, pos, -1 - end)
                    return
                self._piece_end = end
                try:
                    feed_data(view[pos:end])
                except Exception as exc:
                    pos = self._after_error(exc, view, pos)
                    if pos < 0:
                        return
                    feed_data = self._parser.feed_data  # it may be a new one (_resplit)
                else:
                    pos = end
                if self._stopped and pos < size:
                    self.input_ignored = True  # bytes after a request that ends the connection
                    return
            if self._phase == _HEAD:
                self._carry(data, size)
        finally:
            self._data = None
            self._last = None  # needed within a read only; an idle connection keeps nothing

    def _after_error(self, exc: Exception, view: memoryview, start: int) -> int:
        """llhttp raised ``exc`` in the piece fed from ``start``: where to go on (after the
        head of an upgrade), or -1 once the parser stops."""
        if isinstance(exc, httptools.HttpParserUpgrade):
            # llhttp stops after the head of a request with "Connection: upgrade" and an
            # Upgrade field (httptools has already resumed it). The upgrade itself is ignored:
            # the request is answered like any other, so it must not carry a body llhttp skipped.
            request = self.ready[-1] if self.ready else None
            if request is not None and request.has_body:
                self.ready.pop()
                self._fail(BadRequest("a request body together with Upgrade is not supported"))
                return -1
            return start + exc.args[0]
        if isinstance(exc, httptools.HttpParserCallbackError):
            fault = exc.__context__  # what the callback raised
            if isinstance(fault, _Resplit):
                if fault.cap >= 0:
                    self._parser = self._new_parser()
                    self._next_at = fault.at
                    self._refuse_long_line(view, fault.at, fault.cap)
                    return -1
                return self._resplit(view, fault.at)
            self._fail(fault if isinstance(fault, HTTPError) else BadRequest("malformed request"))
        elif isinstance(exc, httptools.HttpParserInvalidMethodError):
            at = self._head_at
            if at < 0:
                line = self._head_first + bytes(view[:self._size])
            else:
                at = self._line_start(at)
                line = bytes(view[at:self._size])
            self._refuse_method(line)
        elif isinstance(exc, httptools.HttpParserError):
            if self._stopped:
                self.input_ignored = True  # bytes after a request that ends the connection
            else:
                self._fail(_llhttp_error(str(exc), self._request is not None
                                         and not self.in_head))
        else:
            raise exc
        return -1

    # -- where messages begin and end -------------------------------------------------------

    def _line_start(self, at: int) -> int:
        """Where the request line of a message that begins at ``at`` in the read starts: after
        the CR and LF that llhttp skips (RFC 9112 2.2)."""
        data = self._data
        while data[at] == _CR or data[at] == _LF:
            at += 1
        return at

    def _end_of_last(self) -> int:
        """Where the last message completed in this read ends (it began in this read, and has
        no chunked body: that is fed apart, and its end known)."""
        last = self._last
        assert last is not None
        return self._body_at(self._head_at) + (last.content_length or 0)

    def _body_at(self, head_at: int) -> int:
        """Where the body of the message whose head begins at ``head_at`` in the read begins
        (the end of its head: the first CRLFCRLF after the empty lines llhttp skips)."""
        return self._data.find(_HEAD_END, self._line_start(head_at), self._size) + 4

    def _resplit(self, view: memoryview, body_at: int) -> int:
        """The head that begins at ``_head_at`` in the read, of a request with a chunked body
        that follows it in the piece llhttp was fed: feed a new llhttp parser the head alone
        (the body is walked first, see _feed_chunked); where to go on, or -1."""
        head_at = self._head_at
        self._parser = self._new_parser()
        self._next_at = head_at
        self._piece_end = body_at
        try:
            self._parser.feed_data(view[head_at:body_at])
        except Exception as exc:
            return self._after_error(exc, view, head_at)
        return body_at

    def _feed_chunked(self, data: Any, view: memoryview, pos: int, size: int) -> int:
        """Feed the chunked body that goes on from ``pos`` in the read, up to its end or the
        read's: llhttp is fed the bytes between chunk lines as they are, and each chunk line
        once it is whole (as the walk gives it: without its extensions if it had any, which
        llhttp's grammar for them is stricter than RFC 9112's); where to go on, or -1 once
        the parser stops."""
        walk = self._walk
        assert walk is not None
        feed_data = self._parser.feed_data
        start = pos  # the bytes from here up to pos are fed as they are
        try:
            while pos < size:
                line_at = pos
                try:
                    pos, line = walk.advance(data, pos, size)
                except ChunkLineError as fault:  # llhttp's errors before it come first
                    at = line_at if fault.at < 0 else fault.at
                    if at > start:
                        feed_data(view[start:at])
                    if not self.stopped:
                        self._fail(fault.error)
                    return -1
                if line is not None:  # a chunk line, given apart
                    if line_at > start:
                        feed_data(view[start:line_at])
                    feed_data(line)
                    start = pos
                elif walk.ended:  # the body ends at pos (the message completes there)
                    self._end_at = self._piece_end = pos
                    feed_data(view[start:pos])
                    return pos
            if pos > start:
                feed_data(view[start:pos])
        except Exception as exc:
            return self._after_error(exc, view, start)
        return pos

    def _locate_head(self, data: Any, pos: int, size: int) -> int:
        """Between messages, in a read larger than the head limit: the end of the piece that
        holds the next head; -1 when the head passes the limit."""
        start = pos
        while data[start] == _CR or data[start] == _LF:
            start += 1
            if start == size:
                return size
        found = data.find(_HEAD_END, start, size)
        end = size if found < 0 else found + 4
        self._head_bytes = end - start
        return end if end - start <= self._head_limit else -1 - (start + self._head_limit)

    def _locate_head_rest(self, data: Any, pos: int, size: int) -> int:
        """In a head that goes on: where it ends. It began in an earlier read (``pos`` is 0),
        or it goes on past a CRLFCRLF (llhttp takes the HTTP/2 preface's "SM" line too)."""
        tail = self._tail
        if pos == 0:
            last = tail[-3:]
            found = (last + bytes(data[:min(3, size)])).find(_HEAD_END)  # split by the reads
            if found >= 0:
                end = found + 4 - len(last)
            else:
                found = data.find(_HEAD_END, 0, size)
                end = size if found < 0 else found + 4
            if not self._line_end:  # the request line's end is still to come
                lf = data.find(b"\n", 0, end)
                if lf >= 0:
                    self._line_end = (tail + bytes(data[max(0, lf - _KEEP_LAST):lf]))[
                        -_KEEP_LAST:]
                    self._line_length = self._head_bytes + lf - 1
        else:
            found = data.find(_HEAD_END, pos - 3, size)
            end = size if found < 0 else found + 4
        room = self._head_limit - self._head_bytes  # of this read, what the head may take
        self._head_bytes += end - pos
        return end if end - pos <= room else -1 - (pos + room)

    def _carry(self, data: Any, size: int) -> None:
        """At the end of a read within a head: keep what the next read needs (see _KEEP_FIRST
        and _KEEP_LAST)."""
        at = self._head_at
        if at >= 0:  # the head began in this read
            at = self._line_start(at)
            self._head_bytes = size - at
            self._head_first = bytes(data[at:min(size, at + _KEEP_FIRST)])
            self._tail = bytes(data[max(at, size - _KEEP_LAST):size])
            lf = data.find(b"\n", at, size)  # the request line may have ended in this read
            self._line_end = bytes(data[max(at, lf - _KEEP_LAST):lf]) if lf >= 0 else b""
            self._line_length = lf - 1 - at
            self._head_at = -1
        else:
            if len(self._head_first) < _KEEP_FIRST:
                self._head_first += bytes(data[:min(size, _KEEP_FIRST - len(self._head_first))])
            self._tail = (self._tail + bytes(data[max(0, size - _KEEP_LAST):size]))[-_KEEP_LAST:]

    def _line_cap(self, data: Any, pos: int, end: int, seen: int) -> int:
        """Where the request line that begins (or goes on, ``seen`` bytes of it having come)
        at ``pos`` in the read passes --limit-request-line, if it does before ``end``: -1 if
        not. llhttp is fed up to there and no further, so that an error it finds in the line
        before that point is the answer, and the limit otherwise, however the bytes came."""
        start = pos
        if not seen:
            while data[start] == _CR or data[start] == _LF:  # empty lines before the request
                start += 1
                if start == end:
                    return -1
        room = self._line_limit + 2 - seen  # the line and its CRLF
        if end - start < room or data.find(b"\n", start, start + room) >= 0:
            return -1
        return start + room

    def _refuse_long_line(self, view: memoryview, pos: int, cap: int) -> None:
        """The request line passes the limit at ``cap`` in the read: 414."""
        self._refuse_past(view, pos, cap, lambda: URITooLong(
            f"the request line is longer than {self._line_limit} bytes (--limit-request-line)"))

    def _refuse_large_head(self, view: memoryview, pos: int, limit: int) -> None:
        """The head passes the limits at ``limit`` in the read: 431."""
        self._refuse_past(view, pos, limit, lambda: HeaderFieldsTooLarge(
            "the request head is larger than the limits allow (--limit-request-fields and "
            "--limit-request-field-size)"))

    def _refuse_past(self, view: memoryview, pos: int, cap: int,
                     refusal: Callable[[], HTTPError]) -> None:
        """Feed the read up to ``cap`` (an error before it, a method refused or a field too
        long, has its own answer), then refuse the request with ``refusal()``."""
        self._piece_end = cap
        try:
            self._parser.feed_data(view[pos:cap])
        except Exception as exc:
            self._after_error(exc, view, pos)
        if self.error is None and self._method_line is None:
            self._fail(refusal())

    # -- llhttp callbacks -------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._request = Request()
        self.in_head = True
        self._phase = _HEAD
        at = self._next_at
        if at == _UNRESOLVED:  # a message follows another in this read (pipelining)
            at = self._end_of_last()
            cap = self._line_cap(self._data, at, self._piece_end, 0)
            if cap >= 0:  # its request line passes the limit within the piece: not so far
                self._head_at = at
                raise _Resplit(at, cap)
        self._head_at = at
        self._url_parts = []
        self._fields = self._hosts = self._content_types = 0
        self._te = self._cl = self._expect = self._fault = None

    def on_url(self, part: bytes) -> None:
        # The request line's length is bounded by what llhttp is fed (_line_cap).
        if not self._url_parts:  # the first part of the target: the method is known
            raw_method = self._parser.get_method()
            self._request.method = (  # type: ignore[union-attr]
                _METHOD_NAMES.get(raw_method) or raw_method.decode("latin-1"))
        self._url_parts.append(part)

    def on_header(self, name: bytes, value: bytes) -> None:
        # httptools calls this when the next field's name has come, which depends on how the
        # bytes came: what is wrong with a field is noted, and raised once the head (or the
        # trailer section) is complete, so that an error llhttp finds further on in it is the
        # answer however the bytes came. The field line's length is counted as gunicorn does:
        # name, colon, value and CRLF, and the space usual before the value (llhttp drops the
        # whitespace there without saying how much: more than a byte of it is bounded by the
        # head's limit).
        if not self.in_head:  # a trailer field after a chunked body: checked, not passed on
            self._trailers += 1
            if self._fault is None and (self._trailers > self._fields_limit
                                        or len(name) + len(value) + 4 > self._field_size_limit):
                self._fault = HeaderFieldsTooLarge(
                    f"the trailer section has more than {self._fields_limit} fields or a field "
                    f"longer than {self._field_size_limit} bytes (--limit-request-fields, "
                    "--limit-request-field-size)")
            return
        self._fields += 1
        if self._fault is None and (self._fields > self._fields_limit
                                    or len(name) + len(value) + 4 > self._field_size_limit):
            self._fault = self._field_over_limit(name)
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
            elif lname == _CT_NAME:
                self._content_types += 1
                if self._content_types == 2 and self._fault is None:
                    self._fault = BadRequest("more than one Content-Type header")
        self._request.headers.append((name, value))  # type: ignore[union-attr]

    def _field_over_limit(self, name: bytes) -> HTTPError:
        if self._fields > self._fields_limit:
            return HeaderFieldsTooLarge(f"more than {self._fields_limit} header fields "
                                        "(--limit-request-fields)")
        return HeaderFieldsTooLarge(f"header field {name[:64].decode('latin-1')!r} is longer "
                                    f"than {self._field_size_limit} bytes "
                                    "(--limit-request-field-size)")

    def on_headers_complete(self) -> None:
        if self._fault is not None:
            raise self._fault
        request = self._request
        assert request is not None
        self.in_head = False
        self._head_bytes = self._trailers = 0
        parser = self._parser
        version = parser.get_http_version()
        method = request.method
        target = b"".join(self._url_parts)
        if version == "0.9":  # no HTTP-version in the line (or HTTP/0.9 in it): 505, first
            rules.check_target(method, target)  # unless the target is no target (400)
            rules.check_version(version)
        at = self._head_at
        if at >= 0:  # the request line is in this read
            data = self._data
            end = at + len(method)
            if not (data[end] == _SP and data[end + 1] != _SP
                    and data[end + len(target) + 2] == _H):
                # not the usual line (single spaces, "H" where HTTP-version begins): where
                # its protocol is, exactly, then how many spaces there were
                at = self._line_start(at) + len(method)
                first = at
                while data[at] == _SP:
                    at += 1
                spaces = at - first
                at += len(target)
                second = at
                while data[at] == _SP:
                    at += 1
                rules.check_protocol(data, at)
                if spaces > 1 or at - second > 1:
                    rules.check_line_spaces(at + 8 - first + len(method), method, target)
        elif self._line_end:
            rules.check_protocol(self._line_end, 0)
            rules.check_line_spaces(self._line_length, method, target)
        if version != "1.1":
            version = rules.check_version(version)
        request.version = version
        request.target = target
        request.chunked, request.expect_continue = rules.check_head(
            version, method, target, self._hosts, request.host, self._te, self._expect)
        if request.chunked:
            at = self._head_at
            if at >= 0:
                body_at = self._body_at(at)
                if body_at < self._piece_end:  # llhttp would go on into the body: not yet
                    raise _Resplit(body_at)
            self._phase = _CHUNKED
            self._walk = ChunkedWalk(self._field_size_limit, self._head_limit)
        elif self._cl is not None:
            request.content_length = int(self._cl)  # llhttp has checked it is 1*DIGIT
            self._phase = _LENGTH
        request.keep_alive = parser.should_keep_alive()
        request.complete = not (request.chunked or request.content_length)
        self.ready.append(request)

    def on_body(self, data: bytes) -> None:
        request = self._request
        request.received += len(data)  # type: ignore[union-attr]
        if not request.discard:  # type: ignore[union-attr]
            request.body += data  # type: ignore[union-attr]

    def on_message_complete(self) -> None:
        if self._fault is not None:  # in the trailer section
            raise self._fault
        request = self._request
        assert request is not None
        request.complete = True
        self._request = None
        self._last = request
        self._phase = _BOUNDARY
        self._walk = None
        self._next_at = self._end_at
        if not request.keep_alive:
            self._stopped = self.stopped = True

    # -- faults -----------------------------------------------------------------------------

    def _fail(self, error: HTTPError) -> None:
        self.error = error
        self.stopped = True

    def _refuse_method(self, more: Union[bytes, bytearray]) -> None:
        """llhttp refused the method: answer once the method token has ended (see
        rules.method_error), with what came of the request line so far and ``more``."""
        line = self._method_line
        if line is None:
            line = bytearray()
        line += more[:self._line_limit + 1 - len(line)]
        error = rules.method_error(bytes(line), self._line_limit)
        if error is None:
            self._method_line = line  # the token still runs: wait for more of it
        else:
            self._method_line = None
            self._fail(error)


def _llhttp_error(reason: str, in_body: bool) -> HTTPError:
    """Map one of llhttp's error reasons to the status to answer with."""
    if reason == "Invalid HTTP version" or reason == "Pause on PRI/Upgrade":
        # The latter is the HTTP/2 connection preface ("PRI * HTTP/2.0").
        return VersionNotSupported("unsupported HTTP version; this server speaks HTTP/1.1 and "
                                   "HTTP/1.0")
    if in_body:
        return BadRequest(f"malformed request body: {reason}")
    return BadRequest(f"malformed request: {reason}")
