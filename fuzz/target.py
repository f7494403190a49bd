"""The invariants the fuzzer checks on every input: ``check(data)`` raises AssertionError (or lets
another exception out) when one does not hold.

The input is what a client sends on one connection. The HTTP layer is run in-process on it:
the request parser, whole and in pieces; the framing function, on what the parser made of it;
and a Connection over a socketpair with a small application, whose response bytes a client
parser (h11) reads. What must hold:

- no exception but the HTTP errors comes out of the parser, and the connection ends without one;
- every input ends within a bound (LIMIT_SECONDS for the connection; the parser always returns);
- the outcome (the requests, the error status) is the same however the bytes are split;
- a request the parser accepted, written out again, parses to the same request;
- the responses are framed: h11, reading them as the client of those requests, finds whole
  responses and nothing else.
"""

from __future__ import annotations

import zlib
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple

import gevent
import h11
from gevent import socket as gsocket

from geventserve.http.errors import HTTPError
from geventserve.http.framing import CHUNKED, LENGTH, NO_BODY, UNTIL_CLOSE, response_framing
from geventserve.http.parser import RequestParser
from geventserve.http.service import Service
from geventserve.settings import Config

#: small limits, so that inputs of a few kilobytes reach them (line, fields, field line)
LIMITS = (256, 8, 128)  # a head may take 256 + 8 * 130 + 4 bytes: less than an input
#: how long one input may keep the connection going, in seconds
LIMIT_SECONDS = 5.0
# Inputs up to this size are also fed byte by byte.
BYTE_BY_BYTE_UP_TO = 300


class Req(NamedTuple):
    method: str
    target: bytes
    version: str
    headers: Tuple[Tuple[bytes, bytes], ...]
    body: bytes
    complete: bool
    chunked: bool


Outcome = Tuple[Tuple[Req, ...], Optional[int]]


def parse(reads: Sequence[bytes], limits: Sequence[int] = LIMITS) -> Tuple[Outcome, str]:
    """What the parser makes of ``reads`` (fed as the connection feeds them, through a reused
    buffer): (its requests and error status, the method of the request it stopped in)."""
    parser = RequestParser(*limits)
    buffer = bytearray(65536)
    requests = []
    for data in reads:
        try:
            if len(data) <= len(buffer):
                buffer[:len(data)] = data
                parser.feed(buffer, len(data))
            else:
                parser.feed(data)
        except HTTPError as exc:  # never expected: faults go to parser.error
            raise AssertionError(f"the parser raised {exc!r} instead of stopping") from exc
        requests.extend(parser.ready)
        parser.ready.clear()
    assert parser.error is None or isinstance(parser.error, HTTPError)
    produced = tuple(Req(r.method, r.target, r.version, tuple(r.headers), bytes(r.body),
                         r.complete, r.chunked) for r in requests)
    status = parser.error.status if parser.error is not None else None
    return (produced, status), parser.method


def splits(data: bytes) -> List[List[bytes]]:
    """Other ways the same bytes may come: byte by byte (short inputs), and cut in a few
    places chosen from the input itself (so that a failure replays)."""
    ways = []
    if 1 < len(data) <= BYTE_BY_BYTE_UP_TO:
        ways.append([data[i:i + 1] for i in range(len(data))])
    if len(data) > 1:
        seed = zlib.crc32(data)
        for count in (1, 3, 7):
            cuts = sorted({1 + (seed >> (4 * k) ^ k * 7919) % (len(data) - 1)
                           for k in range(count)})
            ways.append([data[i:j] for i, j in zip([0] + cuts, cuts + [len(data)])])
    return ways


def serialize(request: Req) -> bytes:
    """``request`` written out again: its line, its fields as received, and its body framed
    as its fields say (one chunk when chunked)."""
    lines = [b"%s %s HTTP/%s" % (request.method.encode("latin-1"), request.target,
                                 request.version.encode())]
    lines += [name + b": " + value for name, value in request.headers]
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if not request.chunked:
        return head + request.body
    if request.body:
        return head + b"%x\r\n%s\r\n0\r\n\r\n" % (len(request.body), request.body)
    return head + b"0\r\n\r\n"


def check_parser(data: bytes, limits: Sequence[int] = LIMITS) -> Tuple[Outcome, str]:
    outcome, method = parse([data], limits)
    for reads in splits(data):
        again, _ = parse(reads, limits)
        assert again == outcome, ("the outcome depends on the reads", [len(r) for r in reads],
                                  outcome, again)
    for request in outcome[0]:
        check_framing(request.method, request.version)
        if not request.complete:
            continue
        (produced, status), _ = parse([serialize(request)], limits)
        assert status is None and produced == (request,), (
            "a request written out again parses otherwise", request, produced, status)
    return outcome, method


def check_framing(method: str, version: str) -> None:
    """The framing function's answers for a request, over statuses and what the application
    gave: no body for HEAD, 1xx, 204 and 304; the application's length, else the whole
    body's; chunked on HTTP/1.1 only; never a Content-Length on 1xx and 204."""
    for status in (200, 101, 204, 304, 404):
        for app_length in (None, 0, 5):
            for whole_length in (None, 0, 7):
                kind, length = response_framing(status, method, version, app_length,
                                                whole_length)
                if method == "HEAD" or status in (101, 204, 304):
                    assert kind == NO_BODY, (status, method, kind)
                    if status in (101, 204):
                        assert length is None
                elif app_length is not None or whole_length is not None:
                    assert (kind, length) == (LENGTH, app_length if app_length is not None
                                              else whole_length)
                else:
                    assert kind == (CHUNKED if version == "1.1" else UNTIL_CLOSE)


# -- the connection ----------------------------------------------------------------------------

def app(environ: Any, start_response: Any) -> Any:
    """Echoes a POST's body with a Content-Length, streams PUT's (chunked on HTTP/1.1, until
    the close on HTTP/1.0), answers anything else with its path."""
    method = environ["REQUEST_METHOD"]
    if method == "POST":
        body = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]
    if method == "PUT":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return iter([environ["wsgi.input"].read(3), b"-", environ["wsgi.input"].read()])
    if environ["PATH_INFO"].startswith("/204"):
        start_response("204 No Content", [])
        return [b""]
    body = environ["PATH_INFO"].encode("latin-1")
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]


_SERVICE: Optional[Service] = None
_LISTENER: Any = None


def _service() -> Service:
    global _SERVICE, _LISTENER
    if _SERVICE is None:
        config = Config()
        config.set("limit_request_line", LIMITS[0], "fuzz")
        config.set("limit_request_fields", LIMITS[1], "fuzz")
        config.set("limit_request_field_size", LIMITS[2], "fuzz")
        _SERVICE = Service(app, config, multiprocess=False, multithread=True,
                           current_task=gevent.getcurrent)
        _LISTENER = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
        _SERVICE.add_listener(_LISTENER)
    return _SERVICE


def serve(*reads: bytes) -> bytes:
    """Send ``reads`` on a new connection, one after the other (each given time to be read by
    itself), then end the sending side; what the server sent back, to its close (within
    LIMIT_SECONDS)."""
    service = _service()
    server, client = gsocket.socketpair()
    task = gevent.spawn(service.serve, server, "", _LISTENER)
    received = []
    try:
        with gevent.Timeout(LIMIT_SECONDS, AssertionError("the connection did not end within "
                                                          f"{LIMIT_SECONDS} s")):
            writer = gevent.spawn(_send_all, client, reads)
            while True:
                chunk = client.recv(65536)
                if not chunk:
                    break
                received.append(chunk)
            writer.join()
            task.join()
    finally:
        client.close()
        task.kill(block=True, timeout=1)
    assert task.dead and task.successful(), f"the connection failed: {task.exception!r}"
    return b"".join(received)


def _send_all(sock: Any, reads: Sequence[bytes]) -> None:
    try:
        for number, data in enumerate(reads):
            if number:
                gevent.sleep(0.001)
            sock.sendall(data)
        sock.shutdown(gsocket.SHUT_WR)
    except OSError:  # the server closed first (after an error)
        pass


def check_responses(sent: bytes, methods: Sequence[str]) -> int:
    """Read ``sent`` as h11 does on the client side of requests with ``methods`` (in order):
    whole responses, one per request, and nothing else; how many."""
    try:
        return _read_responses(sent, methods)
    except h11.ProtocolError as exc:
        raise AssertionError(f"the responses are not framed: {exc}; {sent[:300]!r}") from exc


def _read_responses(sent: bytes, methods: Sequence[str]) -> int:
    conn = h11.Connection(our_role=h11.CLIENT)
    conn.receive_data(sent)
    conn.receive_data(b"")
    answered = 0
    for method in methods:
        if conn.our_state is h11.MUST_CLOSE or conn.trailing_data == (b"", True):
            break  # the server closes (or closed) between responses
        conn.send(h11.Request(method="HEAD" if method == "HEAD" else "GET", target="/",
                              headers=[("Host", "a")]))
        conn.send(h11.EndOfMessage())
        while True:
            event = conn.next_event()
            assert event is not h11.NEED_DATA, "a response is cut short"
            if isinstance(event, h11.ConnectionClosed):
                assert answered or not sent, "the connection closed before any response"
                return answered
            if isinstance(event, h11.EndOfMessage):
                answered += 1
                break
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
    event = conn.next_event()
    assert isinstance(event, h11.ConnectionClosed), f"bytes after the responses: {event!r}"
    return answered


def check(data: bytes) -> None:
    """Every invariant, on one input."""
    (requests, status), method = check_parser(data)
    sent = serve(data)
    methods = [request.method for request in requests] + [method or "GET"]
    answered = check_responses(sent, methods)
    assert answered <= len(requests) + (status is not None)
