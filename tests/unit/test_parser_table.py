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
    version: str = "1.1"  # the version the request is processed as


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
        if parser.error is not None:
            break  # it reads nothing after a fault (a 100 KB method need not go on byte by byte)
    produced = tuple(Req(r.method, r.target, tuple(r.headers), bytes(r.body), r.complete,
                         r.version) for r in requests)
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
    "HTTP/1.0 without Host": (b"GET /pid HTTP/1.0\r\n\r\n",
                              ((get(headers=(), version="1.0"),), None)),
    # RFC 9110 2.5: a higher minor version is processed as the highest one supported
    "HTTP/1.2 processed as HTTP/1.1": (b"GET /pid HTTP/1.2\r\nHost: a\r\n\r\n", ((get(),), None)),
    "HTTP/1.9 processed as HTTP/1.1": (b"GET /pid HTTP/1.9\r\nHost: a\r\n\r\n", ((get(),), None)),
    "trailing whitespace removed from values": (
        b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Pad: value \t \r\n\r\n",
        ((get(headers=((b"Host", b"a"), (b"X-Pad", b"value"))),), None)),
    "underscore field dropped": (
        b"GET /pid HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n", ((get(),), None)),
    "content-length body": (POST, ((POSTED,), None)),
    "chunked body with extension and trailer": (
        chunked(b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer-Field: x\r\n\r\n"),
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"abcde"),), None)),
    # RFC 9112 7.1.1: chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): a recipient
    # must take the whitespace
    "whitespace before ; in a chunk extension": (
        chunked(b"5 ;name=v\r\nhello\r\n0\r\n\r\n") + GET_PID,
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"hello"), get()), None)),
    "whitespace around ; and = in chunk extensions": (
        chunked(b"5\t; a = b ;c\r\nhello\r\n1 ; d=\"x; y\"\r\n!\r\n0 ;e\r\n\r\n") + GET_PID,
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"hello!"), get()), None)),
    "chunk line at the field-size limit": (
        chunked(b"5;e=" + b"v" * (8190 - 6) + b"\r\nhello\r\n0\r\n\r\n") + GET_PID,
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"hello"), get()), None)),
    "trailer section right after the last chunk line's CR": (
        chunked(b"0\r\nA: b\r\n\r\n") + GET_PID,
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b""), get()), None)),
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
    # --limit-request-field-size counts the whole field line, CRLF included, as gunicorn does
    "a head in one field line at the size limit": (
        b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * (8190 - 9) + b"\r\n\r\n",
        ((get(headers=((b"Host", b"a"), (b"X-Big", b"v" * (8190 - 9)))),), None)),
    "request line at the limit": (
        b"GET /pid?" + b"a" * (8190 - len("GET  HTTP/1.1") - 5) + b" HTTP/1.1\r\nHost: a\r\n\r\n",
        ((get(b"/pid?" + b"a" * (8190 - len("GET  HTTP/1.1") - 5)),), None)),
    # RFC 9112 3: at least 8 000 octets should be supported (the default limit is 8190)
    "request line of 8000 octets": (
        b"GET /" + b"a" * 7986 + b" HTTP/1.1\r\nHost: a\r\n\r\n", ((get(b"/" + b"a" * 7986),), None)),
    "empty Host with an absolute-form target": (
        b"GET http://a/pid HTTP/1.1\r\nHost:\r\n\r\n",
        ((get(b"http://a/pid", ((b"Host", b""),)),), None)),
    "%0A in the query, not the path": (b"GET /pid?q=%0A HTTP/1.1\r\nHost: a\r\n\r\n",
                                       ((get(b"/pid?q=%0A"),), None)),
    "other percent-encodings in the path": (b"GET /a%20b%2F%0Ex HTTP/1.1\r\nHost: a\r\n\r\n",
                                            ((get(b"/a%20b%2F%0Ex"),), None)),
    # -- refused (Fix A: these used to depend on how the bytes came)
    "unknown method token": (b"FOO /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 501)),
    "lower-case method": (b"get /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 501)),
    "unknown method, a prefix of a known one": (b"GETS /pid HTTP/1.1\r\nHost: a\r\n\r\n",
                                                (R, 501)),
    "invalid method token": (b"G(T /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "method ended by CRLF": (b"FOO\r\nHost: a\r\n\r\n", (R, 400)),
    "method longer than the request line": (b"FOO" + b"O" * 9000 + b" / HTTP/1.1\r\n\r\n",
                                            (R, 400)),
    "method of 100 KB": (b"A" * 100_000 + b" / HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
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
    "request line over the limit": (b"GET /" + b"a" * 8180 + b" HTTP/1.1\r\nHost: a\r\n\r\n",
                                    (R, 414)),
    "field line over the size limit by its CRLF": (
        GET_PID[:-2] + b"X-Big: " + b"v" * (8190 - 8) + b"\r\n\r\n", (R, 431)),
    # RFC 9112 3: one SP between the parts of the request line; an invalid line is not to be
    # autocorrected
    "two spaces after the method": (b"GET  /pid HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "two spaces before the version": (b"GET /pid  HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "several spaces in the request line": (b"GET  /pid   HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "several spaces, the protocol RTSP": (b"GET  /pid  RTSP/1.0\r\nHost: a\r\n\r\n", (R, 505)),
    "backslash in the target": (b"GET /a\\b HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "%00 in the path": (b"GET /a%00.txt HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "%0D%0A in the path": (b"GET /a%0D%0aSet-Cookie:x HTTP/1.1\r\nHost: a\r\n\r\n", (R, 400)),
    "%0a in an absolute-form path": (b"GET http://a/b%0ac HTTP/1.1\r\nHost: a\r\n\r\n",
                                     (R, 400)),
    "empty Host": (b"GET /pid HTTP/1.1\r\nHost: \r\n\r\n", (R, 400)),
    "empty Host, asterisk-form": (b"OPTIONS * HTTP/1.1\r\nHost:\r\n\r\n", (R, 400)),
    "repeated Content-Type": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\n"
        b"Content-Type: text/html\r\nContent-Length: 2\r\n\r\nhi", (R, 400)),
    "repeated Content-Type, same value": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\ncontent-type: a/b\r\nContent-Type: a/b\r\n"
        b"Content-Length: 2\r\n\r\nhi", (R, 400)),
    "HTTP/3.0": (b"GET /pid HTTP/3.0\r\nHost: a\r\n\r\n", (R, 505)),
    "HTTP/0.9 given as a version": (b"GET /pid HTTP/0.9\r\nHost: a\r\n\r\n", (R, 505)),
    # a chunk line (size and extensions) is bounded like a field line
    "chunk extension longer than the field-size limit": (
        chunked(b"5;e=" + b"v" * (8190 - 5) + b"\r\nhello\r\n0\r\n\r\n"),
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"", False),), 400)),
    "chunk extension of 64 KB after a chunk": (
        chunked(b"1\r\na\r\n5;e=" + b"v" * 65536 + b"\r\nhello\r\n0\r\n\r\n"),
        ((Req("POST", b"/echo", CHUNKED_HEADERS, b"a", False),), 400)),
    "chunk size followed by whitespace alone": (chunked(b"5 \r\nhello\r\n0\r\n\r\n"),
                                                ((Req("POST", b"/echo", CHUNKED_HEADERS, b"",
                                                      False),), 400)),
    "empty chunk extension name": (chunked(b"5; =v\r\nhello\r\n0\r\n\r\n"),
                                   ((Req("POST", b"/echo", CHUNKED_HEADERS, b"", False),), 400)),
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
