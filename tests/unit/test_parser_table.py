"""The request parser, table-driven (h11's style): every case is fed whole, byte by byte, split in
two at every byte, and pipelined behind a request with a body (in one read and byte by byte),
and must give its ONE expected outcome each way: the requests produced, or the error status."""

import random
from dataclasses import replace
from typing import Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

import pytest
from test_http_protocol import PIPELINED
from test_http_strict import BAD_REQUESTS, CL_TE

from geventserve.http.parser import RequestParser
from geventserve.http.settings import HTTPSettings
from geventserve.settings import Config

SETTINGS = HTTPSettings.from_config(Config())
LIMITS = (SETTINGS.line_limit, SETTINGS.fields_limit, SETTINGS.field_size_limit)


class Req(NamedTuple):
    method: str
    target: bytes
    headers: Tuple[Tuple[bytes, bytes], ...] = ((b"Host", b"a"),)
    body: bytes = b""
    complete: bool = True


Outcome = Tuple[Tuple[Req, ...], Optional[int]]  # the requests, then the error status if any


def outcome(reads: Iterable[bytes], limits: Sequence[int] = LIMITS) -> Outcome:
    """What the parser makes of ``reads``: the requests whose head it produced (with the body
    received so far), and the status of the fault that stopped it."""
    parser = RequestParser(*limits)
    buffer = bytearray(65536)
    requests = []
    for data in reads:
        if len(data) <= len(buffer):  # as the connection feeds it: a reused buffer and a size
            buffer[:len(data)] = data
            parser.feed(buffer, len(data))
        else:
            parser.feed(data)
        while parser.ready:
            requests.append(parser.ready.pop(0))
    produced = tuple(Req(r.method, r.target, tuple(r.headers), bytes(r.body), r.complete)
                     for r in requests)
    return produced, (parser.error.status if parser.error is not None else None)


def whole(data: bytes) -> List[bytes]:
    return [data]


def byte_by_byte(data: bytes) -> List[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


POST = b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
POSTED = Req("POST", b"/echo", ((b"Host", b"a"), (b"Content-Length", b"5")), b"hello")


def feedings(data: bytes, expected: Outcome):
    """(how, reads, expected outcome) for every way a case is fed."""
    yield "whole", whole(data), expected
    yield "byte by byte", byte_by_byte(data), expected
    behind = ((POSTED,) + expected[0], expected[1])
    yield "behind a body, one read", whole(POST + data), behind
    yield "behind a body, byte by byte", byte_by_byte(POST + data), behind


def get(target: bytes = b"/pid", headers=((b"Host", b"a"),), **kw) -> Req:
    return Req("GET", target, tuple(headers), **kw)


def chunked(body: bytes) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body


CHUNKED_HEADERS = ((b"Host", b"a"), (b"Transfer-Encoding", b"chunked"))
GET_PID = b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n"
R: Union[Tuple[()], Tuple[Req, ...]] = ()

# name -> (bytes, outcome). Valid requests first, then what is refused.
CASES = {
    # -- valid, from test_http_protocol and test_http_strict
    "simple GET": (GET_PID, ((get(),), None)),
    "leading empty line": (b"\r\n" + GET_PID, ((get(),), None)),
    "leading CR and LF in any order": (b"\n\r\r\n" + GET_PID, ((get(),), None)),
    "several spaces in the request line": (b"GET  /pid   HTTP/1.1\r\nHost: a\r\n\r\n",
                                           ((get(),), None)),
    "HTTP/1.0 without Host": (b"GET /pid HTTP/1.0\r\n\r\n", ((get(headers=()),), None)),
    "trailing whitespace removed from values": (
        b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Pad: value \t \r\n\r\n",
        ((get(headers=((b"Host", b"a"), (b"X-Pad", b"value"))),), None)),
    "underscore field dropped": (
        b"GET /pid HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n", ((get(),), None)),
    "content-length body": (POST, ((POSTED,), None)),
    "chunked body with extension and trailer": (
        chunked(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer-Field: x\r\n\r\n"),
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"abcde"),), None)),
    "chunked body holding CRLFCRLF and a request line": (
        chunked(b"17\r\n\r\n\r\nGET /x RTSP/1.0\r\n\r\n\r\n0\r\n\r\n") + GET_PID,
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"\r\n\r\nGET /x RTSP/1.0\r\n\r\n"), get()),
         None)),
    "chunked body ending in CRLFCRLFCRLF": (
        chunked(b"2\r\n\r\n\r\n0\r\n\r\n") + GET_PID,
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"\r\n"), get()), None)),
    "pipelined requests": (
        GET_PID + POST + GET_PID, ((get(), POSTED, get()), None)),
    "pipelined, from test_http_protocol": (PIPELINED, ((
        get(b"/sleep?0.3"), POSTED._replace(body=b"first"), get(),
        Req("POST", b"/echo", CHUNKED_HEADERS, b"second"), Req("HEAD", b"/"),
        get(b"/stream")), None)),
    "absolute-form": (b"GET http://other.example:8081/environ?q=1 HTTP/1.1\r\nHost: x\r\n\r\n",
                      ((get(b"http://other.example:8081/environ?q=1", ((b"Host", b"x"),)),),
                       None)),
    "absolute-form, IPv6": (b"GET HTTP://[::1]:8081/pid HTTP/1.1\r\nHost: a\r\n\r\n",
                            ((get(b"HTTP://[::1]:8081/pid"),), None)),
    "asterisk-form with OPTIONS": (b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
                                   ((Req("OPTIONS", b"*"),), None)),
    "a method llhttp knows": (b"PROPFIND /pid HTTP/1.1\r\nHost: a\r\n\r\n",
                              ((Req("PROPFIND", b"/pid"),), None)),
    "Expect: 100-continue": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
        ((Req("POST", b"/echo", ((b"Host", b"a"), (b"Content-Length", b"2"),
                                 (b"Expect", b"100-continue")), complete=False),), None)),
    "empty Expect": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect:\r\n\r\nhi",
        ((Req("POST", b"/echo", ((b"Host", b"a"), (b"Content-Length", b"2"), (b"Expect", b"")),
              b"hi"),), None)),
    "Upgrade without a body": (
        b"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
        + GET_PID,
        ((get(b"/ws", ((b"Host", b"a"), (b"Connection", b"Upgrade"),
                       (b"Upgrade", b"websocket"))), get()), None)),
    "Connection: close, then more": (
        b"GET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET_PID,
        ((get(headers=((b"Host", b"a"), (b"Connection", b"close"))),), None)),
    "a head in one field at the size limit": (
        b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * (8190 - 7) + b"\r\n\r\n",
        ((get(headers=((b"Host", b"a"), (b"X-Big", b"v" * (8190 - 7)))),), None)),
    "request line at the limit": (
        b"GET /pid?" + b"a" * (4094 - len("GET  HTTP/1.1") - 5) + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        ((get(b"/pid?" + b"a" * (4094 - len("GET  HTTP/1.1") - 5)),), None)),
    # -- refused (Fix A: these used to depend on how the bytes came)
    "unknown method token": (b"FOO /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 501)),
    "lower-case method": (b"get /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 501)),
    "unknown method, a prefix of a known one": (b"GETS /pid HTTP/1.1\r\nHost: a\r\n\r\n",
                                                (R, 501)),
    "invalid method token": (b"G(T /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "method ended by CRLF": (b"FOO\r\nHost: a\r\n\r\n", (R, 400)),
    "method longer than the request line": (b"FOO" + b"O" * 5000 + b" / HTTP/1.1\r\n\r\n",
                                            (R, 400)),
    "space before the method": (b" GET /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "RTSP/1.0 request line": (b"GET /pid RTSP/1.0\r\nHost: a\r\n\r\n", (R, 505)),
    "ICE/1.0 request line": (b"SOURCE /pid ICE/1.0\r\nHost: a\r\n\r\n", (R, 505)),
    "RTSP after pipelined requests": (GET_PID * 3 + b"GET /pid RTSP/1.0\r\nHost: a\r\n\r\n",
                                      ((get(), get(), get()), 505)),
    "RTSP after a chunked body": (
        chunked(b"3\r\nabc\r\n0\r\n\r\n") + b"GET /pid RTSP/1.0\r\nHost: a\r\n\r\n",
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"abc"),), 505)),
    "unknown method after a chunked body with trailers": (
        chunked(b"3\r\nabc\r\n0\r\nX: y\r\n\r\n") + b"FOO /pid HTTP/1.1\r\nHost: a\r\n\r\n",
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"abc"),), 501)),
    # -- refused, others
    "missing Host": (b"GET /pid HTTP/1.1\r\n\r\n", (R, 400)),
    "request line over the limit": (b"GET /" + b"a" * 4100 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
                                    (R, 414)),
    "101 fields": (GET_PID[:-2] + b"X-F: v\r\n" * 100 + b"\r\n", (R, 431)),
    "field over the size limit": (GET_PID[:-2] + b"X-Big: " + b"v" * 8190 + b"\r\n\r\n",
                                  (R, 431)),
    "error after a good request": (GET_PID + b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Bad : 1\r\n\r\n",
                                   ((get(),), 400)),
    "content-length with transfer-encoding": (CL_TE, (R, 400)),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (R, 505)),
    "bad chunk after good chunks": (chunked(b"3\r\nabc\r\nzz\r\n"),
                                    ((Req("POST", b"/echo", CHUNKED_HEADERS, b"abc", False),),
                                     400)),
}


@pytest.mark.parametrize("name", list(CASES))
def test_case(name):
    data, expected = CASES[name]
    for how, reads, want in feedings(data, expected):
        assert outcome(reads) == want, how


@pytest.mark.parametrize("name", [n for n in CASES if len(CASES[n][0]) <= 600])
def test_case_split_in_two_anywhere(name):
    data, expected = CASES[name]
    for i in range(1, len(data)):
        assert outcome([data[:i], data[i:]]) == expected, f"split at {i}: {data[:i]!r}"


@pytest.mark.parametrize("name", list(CASES))
def test_case_in_random_pieces(name):
    data, expected = CASES[name]
    chance = random.Random(name)
    for _ in range(20):
        cuts = sorted(chance.sample(range(1, len(data)), min(len(data) - 1, chance.randint(2, 9))))
        reads = [data[i:j] for i, j in zip([0] + cuts, cuts + [len(data)])]
        assert outcome(reads) == expected, [len(r) for r in reads]


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_suite_bad_request(name):
    """The functional suite's malformed requests: the same status every way they come, and
    the same requests (heads whose body then proved bad) before it."""
    data, status = BAD_REQUESTS[name]
    first = outcome(whole(data))
    assert first[1] == status
    for how, reads, want in list(feedings(data, first))[1:]:
        assert outcome(reads) == want, how


# -- limits smaller than one read: counted the same whole and byte by byte -------------------

SMALL = (4094, 5, 100)  # the head may take 4094 + 5 * 102 + 4 bytes
SMALL_CASES = {
    "head padded with whitespace past the head limit": (
        b"GET /pid HTTP/1.1\r\nHost:" + b" " * 5000 + b"a\r\n\r\n", (R, 431)),
    "body far larger than the head limit": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10000\r\n\r\n" + b"x" * 10000,
        ((Req("POST", b"/echo", ((b"Host", b"a"), (b"Content-Length", b"10000")),
              b"x" * 10000),), None)),
    "many requests, each under the head limit": (GET_PID * 300, ((get(),) * 300, None)),
}


@pytest.mark.parametrize("name", list(SMALL_CASES))
def test_small_limits(name):
    data, expected = SMALL_CASES[name]
    assert outcome(whole(data), SMALL) == expected
    assert outcome(byte_by_byte(data), SMALL) == expected


def test_a_method_still_running_waits_for_more():
    """An unknown method refused at its first byte is answered only once its token ends."""
    parser = RequestParser(*LIMITS)
    parser.feed(b"FO")
    assert parser.error is None and parser.in_head and not parser.stopped
    parser.feed(b"O")
    assert parser.error is None
    parser.feed(b" /x HTTP/1.1\r\n\r\n")
    assert parser.error is not None and parser.error.status == 501
    assert "FOO" in parser.error.detail


def test_input_after_a_closing_request_is_noted():
    parser = RequestParser(*LIMITS)
    parser.feed(b"GET /pid HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET")
    assert parser.stopped and parser.error is None and parser.input_ignored


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        SETTINGS.keepalive = 1.0  # type: ignore[misc]
    assert replace(SETTINGS, keepalive=1.0).keepalive == 1.0
