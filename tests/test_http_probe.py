"""The Http11Probe suite's raw-TCP cases, replayed against the real server (behind
tests/apps/probe_app.py) with the probe's own verdicts: pass, warn or fail.

Every scored case must pass, or give the warning listed for it in WARNINGS: each a deliberate
choice, said in the README ("HTTP behaviour"). The unscored ones are replayed too; their
verdicts are informational, but none may fail.
"""

from __future__ import annotations

import re
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import pytest

from helpers import Client, Response, Server

PASS, WARN, FAIL = "pass", "warn", "fail"
CLOSED, TIMED_OUT, OPEN = "closed", "timed out", "open"
READ_TIMEOUT = 3.0  # the probe's wait for an answer (the server's head timeout is longer)


class Step(NamedTuple):
    """What came back for one payload: the response (None if none), the connection's state,
    how many status lines came in all, whether the payload was sent at all."""

    response: Optional[Response]
    state: str
    status_lines: int = 1
    executed: bool = True


Verdict = Callable[[Sequence[Step]], str]


class Case(NamedTuple):
    id: str
    steps: Tuple[bytes, ...]
    verdict: Verdict
    scored: bool = True


H = "Host: localhost\r\n"


def req(text: str) -> bytes:
    return text.encode("latin-1")


def post_chunked(body: str) -> bytes:
    return req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n\r\n{body}")


# -- the probe's validators, as functions of the first step (most cases have one) -----------

def _status(steps: Sequence[Step]) -> Optional[int]:
    return steps[0].response.status if steps[0].response is not None else None


def exact(code: int, close_ok: bool = True) -> Verdict:
    """ExpectedStatus = Exact(code), with AllowConnectionClose as given."""
    def verdict(steps: Sequence[Step]) -> str:
        step = steps[0]
        if step.response is None:
            return PASS if close_ok and step.state == CLOSED else FAIL
        return PASS if step.response.status == code else FAIL
    return verdict


def ok_2xx(steps: Sequence[Step]) -> str:
    response = steps[0].response
    return PASS if response is not None and 200 <= response.status < 300 else FAIL


def echo(body: bytes) -> Verdict:
    def verdict(steps: Sequence[Step]) -> str:
        response = steps[0].response
        if response is None or not 200 <= response.status < 300:
            return FAIL
        return PASS if response.body in (body, b"OK") else FAIL
    return verdict


def reject_or(passes: Sequence[int] = (400,), on_2xx: str = WARN, no_response: str = "closed",
              other: str = FAIL) -> Verdict:
    """The probe's usual "400 or 2xx": ``passes`` pass, 2xx gives ``on_2xx``; no response
    passes when the connection was closed (``no_response`` "closed"), or also when it timed
    out ("closed or timed out"), and warns with "warn"."""
    def verdict(steps: Sequence[Step]) -> str:
        step = steps[0]
        if step.response is None:
            if no_response == "warn":
                return WARN if step.state == CLOSED else FAIL
            if step.state == CLOSED or (no_response == "closed or timed out"
                                        and step.state == TIMED_OUT):
                return PASS
            return FAIL
        code = step.response.status
        if code in passes:
            return PASS
        if 200 <= code < 300:
            return on_2xx
        return other
    return verdict


def only_400_or_silence(steps: Sequence[Step]) -> str:
    """A response must be 400; none (closed or timed out) passes."""
    step = steps[0]
    if step.response is not None:
        return PASS if step.response.status == 400 else FAIL
    return PASS if step.state in (CLOSED, TIMED_OUT) else FAIL


def silence_or_400(steps: Sequence[Step]) -> str:
    step = steps[0]
    if step.state in (CLOSED, TIMED_OUT) and step.response is None:
        return PASS
    return PASS if step.response is not None and step.response.status == 400 else FAIL


def not_101(steps: Sequence[Step]) -> str:
    step = steps[0]
    if step.response is None:
        return PASS if step.state == CLOSED else FAIL
    return FAIL if step.response.status == 101 else PASS


def ws_bad_version(steps: Sequence[Step]) -> str:
    step = steps[0]
    if step.response is None:
        return PASS if step.state == CLOSED else FAIL
    code = step.response.status
    if code == 101:
        return FAIL
    return WARN if 200 <= code < 300 else PASS


def closes_after_2xx(steps: Sequence[Step], missing: str = FAIL) -> str:
    step = steps[0]
    if step.response is None or not 200 <= step.response.status < 300:
        return FAIL
    return PASS if step.state == CLOSED else missing


def header_present(name: str, status: Optional[int] = None) -> Verdict:
    def verdict(steps: Sequence[Step]) -> str:
        response = steps[0].response
        if response is None:
            return FAIL
        if status is not None:
            if response.status != status:
                return WARN
            return PASS if response.header(name) is not None else FAIL
        if not 200 <= response.status < 300:
            return FAIL
        return PASS if response.header(name) is not None else WARN
    return verdict


def no_cl_in_204(steps: Sequence[Step]) -> str:
    response = steps[0].response
    if response is None:
        return FAIL
    if response.status != 204:
        return WARN
    return FAIL if response.header("content-length") is not None else PASS


def head_no_body(steps: Sequence[Step]) -> str:
    step = steps[0]
    if step.response is None or not 200 <= step.response.status < 300:
        return FAIL
    return PASS if not step.response.body else FAIL


def no_1xx(steps: Sequence[Step]) -> str:
    step = steps[0]
    if step.response is None:
        return PASS if step.state in (CLOSED, TIMED_OUT) else FAIL
    return FAIL if 100 <= step.response.status < 200 else PASS


def not_414(steps: Sequence[Step]) -> str:
    step = steps[0]
    if step.response is None:
        return WARN if step.state == CLOSED else FAIL
    return FAIL if step.response.status == 414 else PASS


def range_ignored_on_post(steps: Sequence[Step]) -> str:
    response = steps[0].response
    if response is None or response.status == 206:
        return FAIL
    return PASS if 200 <= response.status < 300 else FAIL


def echoed_header(standard: str, malformed: str, value: str, case_only: bool = False) -> Verdict:
    """The Normalization suite: a header with a malformed name, dropped or refused (pass),
    mapped onto the standard one (fail), or kept as sent (warn)."""
    def verdict(steps: Sequence[Step]) -> str:
        step = steps[0]
        if step.response is None:
            return PASS if step.state == CLOSED else FAIL
        if step.response.status >= 400:
            return PASS
        if not 200 <= step.response.status < 300:
            return FAIL
        for line in step.response.body.decode("latin-1").splitlines():
            name, _, got = line.partition(":")
            if got.strip().lower() != value.lower():
                continue
            if case_only:
                if name == malformed:
                    return WARN
                if name.lower() == standard.lower():
                    return FAIL
            elif name.lower() == standard.lower() and name.lower() != malformed.lower():
                return FAIL
            elif name.lower() == malformed.lower():
                return WARN
        return PASS
    return verdict


def ambiguous_then_close(steps: Sequence[Step]) -> str:
    """Sequences: an ambiguous request must get 400, or a close after its answer."""
    first = steps[0]
    if first.response is not None and first.response.status == 400:
        return PASS
    if not first.executed or first.state == CLOSED:
        return PASS
    return FAIL


def no_smuggled_response(steps: Sequence[Step]) -> str:
    first = steps[0]
    if first.status_lines >= 2:
        return FAIL
    return ambiguous_then_close(steps)


def follow_up(poisoned: str) -> Verdict:
    """Sequences whose follow-up GET shows an unread body: 400 or a close pass; a follow-up
    answered 2xx passes; one answered otherwise gives ``poisoned``."""
    def verdict(steps: Sequence[Step]) -> str:
        first, second = steps[0], steps[1]
        if first.response is not None and first.response.status in (400, 417):
            return PASS
        if not first.executed or first.state == CLOSED:
            return PASS
        if first.response is None or not 200 <= first.response.status < 300:
            return WARN
        if not second.executed:
            return PASS
        if second.status_lines >= 2:
            return WARN
        if second.response is not None and (200 <= second.response.status < 300
                                            or second.response.status == 400 and poisoned == PASS):
            return PASS
        return poisoned
    return verdict


def pipeline_safe(steps: Sequence[Step]) -> str:
    first, second = steps
    if first.response is None or not 200 <= first.response.status < 300:
        return FAIL
    if not second.executed:
        return WARN
    return PASS if second.response is not None and 200 <= second.response.status < 300 else WARN


def smuggled(body: str, headers: str, smuggled_request: str = "GET") -> bytes:
    inner = f"{smuggled_request} / HTTP/1.1\r\n{H}\r\n"
    payload = "0\r\n\r\n" + inner
    return req(f"POST / HTTP/1.1\r\n{H}{headers.format(cl=len(payload))}\r\n{payload}")


def _tecl_smuggled() -> bytes:
    inner = f"GET / HTTP/1.1\r\n{H}Content-Length: 7\r\n\r\n"
    size = f"{len(inner):x}"
    body = f"{size}\r\n{inner}\r\n0\r\n\r\n"
    return req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n"
               f"Content-Length: {len(size) + 2}\r\n\r\n{body}")


GET = req(f"GET / HTTP/1.1\r\n{H}\r\n")
BANANAS = "D\r\nhello-bananas\r\n0\r\n\r\n"
GARBAGE = bytes((n * 1103515245 + 12345) >> 16 & 0xFF for n in range(256))

CASES: List[Case] = [
    # -- Compliance
    Case("COMP-BASELINE", (GET,), ok_2xx),
    Case("RFC9112-2.2-BARE-LF-REQUEST-LINE", (req(f"GET / HTTP/1.1\n{H}\r\n"),), reject_or()),
    Case("RFC9112-2.2-BARE-LF-HEADER", (req(f"GET / HTTP/1.1\r\n{H}".replace("\r\n", "\n", 2)[:-1]
                                          + "\nX-Test: value\r\n\r\n"),), reject_or()),
    Case("RFC9112-5.1-OBS-FOLD", (req(f"GET / HTTP/1.1\r\n{H}X-Test: value\r\n continued\r\n\r\n"),),
         exact(400, close_ok=False)),
    Case("RFC9110-5.6.2-SP-BEFORE-COLON", (req(f"GET / HTTP/1.1\r\n{H}X-Test : value\r\n\r\n"),),
         exact(400, close_ok=False)),
    Case("RFC9112-3-MULTI-SP-REQUEST-LINE", (req(f"GET  / HTTP/1.1\r\n{H}\r\n"),), reject_or()),
    Case("RFC9112-7.1-MISSING-HOST", (req("GET / HTTP/1.1\r\n\r\n"),), exact(400, close_ok=False)),
    Case("RFC9112-2.3-INVALID-VERSION", (req(f"GET / HTTP/9.9\r\n{H}\r\n"),),
         reject_or((400, 505), on_2xx=FAIL)),
    Case("RFC9112-5-EMPTY-HEADER-NAME", (req(f"GET / HTTP/1.1\r\n{H}: empty-name\r\n\r\n"),),
         exact(400)),
    Case("RFC9112-3-CR-ONLY-LINE-ENDING", (req(f"GET / HTTP/1.1\r{H}\r\n"),),
         exact(400, close_ok=False)),
    Case("RFC9112-3-MISSING-TARGET", (req(f"GET HTTP/1.1\r\n{H}\r\n"),), exact(400)),
    Case("RFC9112-3.2-FRAGMENT-IN-TARGET", (req(f"GET /path#frag HTTP/1.1\r\n{H}\r\n"),),
         reject_or()),
    Case("RFC9112-2.3-HTTP09-REQUEST", (req("GET /\r\n"),), only_400_or_silence),
    Case("RFC9112-5-INVALID-HEADER-NAME", (req(f"GET / HTTP/1.1\r\n{H}Bad[Name: value\r\n\r\n"),),
         exact(400)),
    Case("RFC9112-5-HEADER-NO-COLON", (req(f"GET / HTTP/1.1\r\n{H}NoColonHere\r\n\r\n"),),
         exact(400)),
    Case("RFC9110-5.4-DUPLICATE-HOST",
         (req(f"GET / HTTP/1.1\r\n{H}Host: other.example.com\r\n\r\n"),), exact(400, False)),
    Case("RFC9112-6.1-CL-NON-NUMERIC",
         (req(f"POST / HTTP/1.1\r\n{H}Content-Length: abc\r\n\r\n"),), exact(400)),
    Case("RFC9112-6.1-CL-PLUS-SIGN",
         (req(f"POST / HTTP/1.1\r\n{H}Content-Length: +5\r\n\r\nhello"),), exact(400)),
    Case("COMP-WHITESPACE-BEFORE-HEADERS", (req(f"GET / HTTP/1.1\r\n \r\n{H}\r\n"),), exact(400)),
    Case("COMP-DUPLICATE-HOST-SAME", (req(f"GET / HTTP/1.1\r\n{H}{H}\r\n"),), exact(400, False)),
    Case("COMP-HOST-WITH-USERINFO", (req("GET / HTTP/1.1\r\nHost: user@localhost\r\n\r\n"),),
         exact(400)),
    Case("COMP-HOST-WITH-PATH", (req("GET / HTTP/1.1\r\nHost: localhost/path\r\n\r\n"),),
         exact(400)),
    Case("COMP-ASTERISK-WITH-GET", (req(f"GET * HTTP/1.1\r\n{H}\r\n"),), exact(400)),
    Case("COMP-OPTIONS-STAR", (req(f"OPTIONS * HTTP/1.1\r\n{H}\r\n"),), ok_2xx),
    Case("COMP-UNKNOWN-TE-501", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: gzip\r\n\r\n"),),
         reject_or((400, 501), on_2xx=FAIL)),
    Case("COMP-LEADING-CRLF", (req(f"\r\n\r\nGET / HTTP/1.1\r\n{H}\r\n"),), reject_or()),
    Case("COMP-ABSOLUTE-FORM", (req(f"GET http://localhost/ HTTP/1.1\r\n{H}\r\n"),),
         reject_or((200,), no_response="warn"), scored=False),
    Case("COMP-METHOD-CASE", (req(f"get / HTTP/1.1\r\n{H}\r\n"),), reject_or((400, 405, 501))),
    Case("COMP-POST-CL-BODY", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),),
         echo(b"hello")),
    Case("COMP-POST-CL-ZERO", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 0\r\n\r\n"),), ok_2xx),
    Case("COMP-POST-NO-CL-NO-TE", (req(f"POST / HTTP/1.1\r\n{H}\r\n"),), ok_2xx),
    Case("COMP-POST-CL-UNDERSEND",
         (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 10\r\n\r\nhello"),), only_400_or_silence),
    Case("COMP-CHUNKED-BODY", (post_chunked("5\r\nhello\r\n0\r\n\r\n"),), echo(b"hello")),
    Case("COMP-CHUNKED-MULTI", (post_chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),),
         echo(b"hello world")),
    Case("COMP-CHUNKED-EMPTY", (post_chunked("0\r\n\r\n"),), ok_2xx),
    Case("COMP-CHUNKED-NO-FINAL", (post_chunked("5\r\nhello\r\n"),), only_400_or_silence),
    Case("COMP-UPGRADE-POST", (req(f"POST / HTTP/1.1\r\n{H}Connection: Upgrade\r\nUpgrade: websocket"
                                   "\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                   "Sec-WebSocket-Version: 13\r\n\r\n"),), not_101),
    Case("COMP-UPGRADE-MISSING-CONN", (req(f"GET / HTTP/1.1\r\n{H}Upgrade: websocket\r\n"
                                           "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                           "Sec-WebSocket-Version: 13\r\n\r\n"),), not_101),
    Case("COMP-UPGRADE-UNKNOWN", (req(f"GET / HTTP/1.1\r\n{H}Connection: Upgrade\r\n"
                                      "Upgrade: totally-made-up/1.0\r\n\r\n"),), not_101),
    Case("COMP-METHOD-CONNECT",
         (req("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),),
         reject_or((400, 405, 501), on_2xx=FAIL)),
    Case("COMP-EXPECT-UNKNOWN", (req(f"GET / HTTP/1.1\r\n{H}Expect: 200-ok\r\n\r\n"),),
         reject_or((417,))),
    Case("COMP-GET-WITH-CL-BODY", (req(f"GET / HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),),
         reject_or(on_2xx=WARN, other=WARN), scored=False),
    Case("COMP-CHUNKED-EXTENSION", (post_chunked("5;ext=value\r\nhello\r\n0\r\n\r\n"),),
         echo(b"hello")),
    Case("COMP-UPGRADE-INVALID-VER", (req(f"GET / HTTP/1.1\r\n{H}Connection: Upgrade\r\n"
                                          "Upgrade: websocket\r\nSec-WebSocket-Key: "
                                          "dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 99"
                                          "\r\n\r\n"),), ws_bad_version),
    Case("COMP-METHOD-TRACE", (req(f"TRACE / HTTP/1.1\r\n{H}\r\n"),),
         reject_or((405, 501)), scored=False),
    Case("COMP-HOST-EMPTY-VALUE", (req("GET / HTTP/1.1\r\nHost: \r\n\r\n"),), exact(400)),
    Case("COMP-REQUEST-LINE-TAB", (req(f"GET\t/ HTTP/1.1\r\n{H}\r\n"),), reject_or()),
    Case("COMP-VERSION-MISSING-MINOR", (req(f"GET / HTTP/1\r\n{H}\r\n"),), exact(400)),
    Case("COMP-VERSION-LEADING-ZEROS", (req(f"GET / HTTP/01.01\r\n{H}\r\n"),), exact(400)),
    Case("COMP-VERSION-WHITESPACE", (req(f"GET / HTTP/ 1.1\r\n{H}\r\n"),), exact(400)),
    Case("COMP-VERSION-CASE", (req(f"GET / http/1.1\r\n{H}\r\n"),), exact(400)),
    Case("COMP-CONNECTION-CLOSE", (req(f"GET / HTTP/1.1\r\n{H}Connection: close\r\n\r\n"),),
         closes_after_2xx),
    Case("COMP-HTTP10-DEFAULT-CLOSE", (req(f"GET / HTTP/1.0\r\n{H}\r\n"),),
         lambda steps: closes_after_2xx(steps, missing=WARN)),
    Case("COMP-HTTP10-NO-HOST", (req("GET / HTTP/1.0\r\n\r\n"),), reject_or(), scored=False),
    Case("COMP-HTTP12-VERSION", (req(f"GET / HTTP/1.2\r\n{H}\r\n"),),
         reject_or((), on_2xx=WARN, other=WARN), scored=False),
    Case("COMP-TRACE-WITH-BODY", (req(f"TRACE / HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),),
         reject_or((400, 405, 501)), scored=False),
    Case("COMP-CHUNKED-TRAILER-VALID", (post_chunked("5\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n"),),
         echo(b"hello")),
    Case("COMP-CHUNKED-HEX-UPPERCASE", (post_chunked("A\r\nhelloworld\r\n0\r\n\r\n"),),
         echo(b"helloworld")),
    Case("COMP-RANGE-POST", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nRange: bytes=0-10"
                                 "\r\n\r\nhello"),), range_ignored_on_post),
    Case("COMP-UPGRADE-HTTP10", (req(f"GET / HTTP/1.0\r\n{H}Connection: Upgrade\r\nUpgrade: "
                                     "websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                     "Sec-WebSocket-Version: 13\r\n\r\n"),), not_101),
    Case("COMP-HEAD-NO-BODY", (req(f"HEAD / HTTP/1.1\r\n{H}\r\n"),), head_no_body),
    Case("COMP-UNKNOWN-METHOD", (req(f"FOOBAR / HTTP/1.1\r\n{H}\r\n"),),
         reject_or((501, 405, 400))),
    Case("COMP-405-ALLOW", (req(f"DELETE / HTTP/1.1\r\n{H}\r\n"),), header_present("allow", 405)),
    Case("COMP-DATE-HEADER", (GET,), header_present("date")),
    Case("COMP-NO-1XX-HTTP10", (req(f"POST / HTTP/1.0\r\n{H}Expect: 100-continue\r\n"
                                    "Content-Length: 5\r\n\r\nhello"),), no_1xx),
    Case("COMP-NO-CL-IN-204", (req(f"OPTIONS / HTTP/1.1\r\n{H}\r\n"),), no_cl_in_204),
    Case("COMP-OPTIONS-ALLOW", (req(f"OPTIONS / HTTP/1.1\r\n{H}\r\n"),), header_present("allow")),
    Case("COMP-CONTENT-TYPE", (GET,), header_present("content-type")),
    Case("COMP-LONG-URL-OK", (req(f"GET /{'a' * 7900} HTTP/1.1\r\n{H}\r\n"),), not_414),
    Case("COMP-SPACE-IN-TARGET", (req(f"GET /pa th HTTP/1.1\r\n{H}\r\n"),), exact(400)),
    Case("COMP-DUPLICATE-CT", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\nContent-Type: "
                                   "text/plain\r\nContent-Type: text/html\r\n\r\nhello"),),
         reject_or()),
    # -- Smuggling
    Case("SMUG-CL-TE-BOTH", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: {len(BANANAS)}\r\n"
                                 f"Transfer-Encoding: chunked\r\n\r\n{BANANAS}"),), reject_or()),
    Case("SMUG-DUPLICATE-CL", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\n"
                                   "Content-Length: 10\r\n\r\nhelloworld"),), exact(400)),
    Case("SMUG-CL-LEADING-ZEROS", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 005\r\n\r\nhello"),),
         reject_or()),
    Case("SMUG-TE-XCHUNKED", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: xchunked\r\n"
                                  "Content-Length: 5\r\n\r\nhello"),),
         reject_or((400, 501), on_2xx=FAIL)),
    Case("SMUG-TE-TRAILING-SPACE", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked \r\n"
                                        "Content-Length: 5\r\n\r\nhello"),),
         reject_or((400, 501), on_2xx=FAIL)),
    Case("SMUG-TE-SP-BEFORE-COLON", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding : chunked\r\n"
                                         "Content-Length: 5\r\n\r\nhello"),), exact(400)),
    Case("SMUG-CL-NEGATIVE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: -1\r\n\r\n"),),
         exact(400)),
    Case("SMUG-CLTE-PIPELINE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 4\r\n"
                                    "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),),
         ambiguous_then_close),
    Case("SMUG-TECL-PIPELINE", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n"
                                    "Content-Length: 30\r\n\r\n0\r\n\r\n"),), ambiguous_then_close),
    Case("SMUG-CL-TRAILING-SPACE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5 \r\n\r\nhello"),),
         reject_or()),
    Case("SMUG-TE-DOUBLE-CHUNKED", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, "
                                        "chunked\r\nContent-Length: 5\r\n\r\nhello"),), reject_or()),
    Case("SMUG-CL-EXTRA-LEADING-SP", (req(f"POST / HTTP/1.1\r\n{H}Content-Length:  5\r\n\r\n"
                                          "hello"),), reject_or()),
    Case("SMUG-TE-CASE-MISMATCH", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: Chunked\r\n"
                                       "Content-Length: 5\r\n\r\nhello"),), reject_or()),
    Case("SMUG-CL-COMMA-DIFFERENT", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5, 10\r\n\r\n"
                                         "hello"),), exact(400)),
    Case("SMUG-TE-NOT-FINAL-CHUNKED", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked, "
                                           "gzip\r\n\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-TE-HTTP10", (req(f"POST / HTTP/1.0\r\n{H}Transfer-Encoding: chunked\r\n"
                                "Content-Length: 5\r\n\r\nhello"),), exact(400)),
    Case("SMUG-CHUNK-BARE-SEMICOLON", (post_chunked("5;\r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-EXT-INVALID-TOKEN", (post_chunked("5;bad[=x\r\nhello\r\n0\r\n\r\n"),),
         exact(400)),
    Case("SMUG-BARE-CR-HEADER-VALUE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\n"
                                           "X-Test: val\rue\r\n\r\nhello"),), exact(400)),
    Case("SMUG-CL-OCTAL", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 0o5\r\n\r\nhello"),),
         exact(400)),
    Case("SMUG-CHUNK-UNDERSCORE", (post_chunked("1_0\r\nhello world!!!!!\r\n0\r\n\r\n"),),
         exact(400)),
    Case("SMUG-TE-EMPTY-VALUE", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: \r\n"
                                     "Content-Length: 5\r\n\r\nhello"),), exact(400)),
    Case("SMUG-TE-LEADING-COMMA", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: , chunked\r\n"
                                       "Content-Length: 5\r\n\r\nhello"),), reject_or()),
    Case("SMUG-TE-DUPLICATE-HEADERS", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n"
                                           "Transfer-Encoding: identity\r\nContent-Length: 5\r\n"
                                           "\r\nhello"),), exact(400)),
    Case("SMUG-CHUNK-HEX-PREFIX", (post_chunked("0x5\r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-SIZE-PLUS", (post_chunked("+5\r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-SIZE-TRAILING-OWS", (post_chunked("5 \r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-CL-HEX-PREFIX", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 0x5\r\n\r\nhello"),),
         exact(400)),
    Case("SMUG-CL-INTERNAL-SPACE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 1 0\r\n\r\n"
                                        "hello12345"),), exact(400)),
    Case("SMUG-CHUNK-LEADING-SP", (post_chunked(" 5\r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-MISSING-TRAILING-CRLF", (post_chunked("5\r\nhello0\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-EXT-LF", (post_chunked("5;\nhello\r\n0\r\n\r\n"),), reject_or()),
    Case("SMUG-CHUNK-SPILL", (post_chunked("5\r\nhello!!\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-LF-TERM", (post_chunked("5\r\nhello\n0\r\n\r\n"),), reject_or()),
    Case("SMUG-CHUNK-EXT-CTRL", (post_chunked("5;\x00ext\r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-EXT-CR", (post_chunked("5;a\rX\r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-TE-VTAB", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: \x0bchunked\r\n"
                              "Content-Length: 5\r\n\r\nhello"),), exact(400)),
    Case("SMUG-TE-FORMFEED", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: \x0cchunked\r\n"
                                  "Content-Length: 5\r\n\r\nhello"),), exact(400)),
    Case("SMUG-TE-NULL", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\x00\r\n"
                              "Content-Length: 5\r\n\r\nhello"),), exact(400)),
    Case("SMUG-CHUNK-LF-TRAILER", (post_chunked("5\r\nhello\r\n0\r\n\n"),), reject_or()),
    Case("SMUG-TE-IDENTITY", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: identity\r\n"
                                  "Content-Length: 5\r\n\r\nhello"),),
         reject_or((400, 501), on_2xx=FAIL)),
    Case("SMUG-CHUNK-NEGATIVE", (post_chunked("-1\r\nhello\r\n0\r\n\r\n"),), exact(400)),
    Case("SMUG-TRANSFER_ENCODING", (req(f"POST / HTTP/1.1\r\n{H}Transfer_Encoding: chunked\r\n"
                                        "Content-Length: 5\r\n\r\nhello"),), reject_or(),
         scored=False),
    Case("SMUG-CL-COMMA-SAME", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5, 5\r\n\r\nhello"),),
         reject_or(), scored=False),
    Case("SMUG-CL-COMMA-TRIPLE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5, 5, 5\r\n\r\n"
                                      "hello"),), reject_or(), scored=False),
    Case("SMUG-CHUNKED-WITH-PARAMS", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked;"
                                          "ext=val\r\nContent-Length: 5\r\n\r\nhello"),),
         reject_or(), scored=False),
    Case("SMUG-EXPECT-100-CL", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\n"
                                    "Expect: 100-continue\r\n\r\nhello"),), reject_or(),
         scored=False),
    Case("SMUG-TRAILER-CL", (post_chunked("5\r\nhello\r\n0\r\nContent-Length: 50\r\n\r\n"),),
         reject_or(), scored=False),
    Case("SMUG-TRAILER-TE", (post_chunked("5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"),),
         reject_or(), scored=False),
    Case("SMUG-TRAILER-HOST", (post_chunked("5\r\nhello\r\n0\r\nHost: evil.example.com\r\n\r\n"),),
         reject_or(), scored=False),
    Case("SMUG-TRAILER-AUTH", (post_chunked("5\r\nhello\r\n0\r\nAuthorization: Bearer evil\r\n\r\n"),),
         reject_or(), scored=False),
    Case("SMUG-TRAILER-CONTENT-TYPE", (post_chunked("5\r\nhello\r\n0\r\nContent-Type: text/evil"
                                                    "\r\n\r\n"),), reject_or(), scored=False),
    Case("SMUG-HEAD-CL-BODY", (req(f"HEAD / HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),),
         reject_or(), scored=False),
    Case("SMUG-OPTIONS-CL-BODY", (req(f"OPTIONS / HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),),
         reject_or(), scored=False),
    Case("SMUG-CL-UNDERSCORE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 1_0\r\n\r\n"
                                    "helloworld"),), exact(400)),
    Case("SMUG-CL-NEGATIVE-ZERO", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: -0\r\n\r\n"),),
         exact(400)),
    Case("SMUG-CL-DOUBLE-ZERO", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 00\r\n\r\n"),),
         reject_or()),
    Case("SMUG-CL-LEADING-ZEROS-OCTAL", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 0200\r\n\r\n"
                                             + "A" * 200),), reject_or()),
    Case("SMUG-TE-OBS-FOLD", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked\r\n"
                                  "Content-Length: 5\r\n\r\nhello"),),
         lambda steps: PASS if _status(steps) == 400 or (_status(steps) is None
                                                          and steps[0].state == CLOSED)
         else (WARN if steps[0].state == CLOSED else FAIL)),
    Case("SMUG-TE-TRAILING-COMMA", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked,\r\n"
                                        "Content-Length: 5\r\n\r\nhello"),), reject_or()),
    Case("SMUG-TE-TAB-BEFORE-VALUE", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding:\tchunked\r\n"
                                          "Content-Length: 5\r\n\r\nhello"),), reject_or(),
         scored=False),
    Case("SMUG-ABSOLUTE-URI-HOST-MISMATCH", (req(f"GET http://other.example.com/ HTTP/1.1\r\n{H}"
                                                 "\r\n"),), reject_or(), scored=False),
    Case("SMUG-MULTIPLE-HOST-COMMA", (req("GET / HTTP/1.1\r\nHost: localhost, other.example.com"
                                          "\r\n\r\n"),), exact(400)),
    Case("SMUG-CHUNK-BARE-CR-TERM", (post_chunked("5\rhello\r\n0\r\n\r\n"),), exact(400)),
    # sequences
    Case("SMUG-CLTE-CONN-CLOSE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\n"
                                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"), GET),
         ambiguous_then_close),
    Case("SMUG-TECL-CONN-CLOSE", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n"
                                      "Content-Length: 5\r\n\r\n0\r\n\r\n"), GET),
         ambiguous_then_close),
    Case("SMUG-CLTE-DESYNC", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 6\r\n"
                                  "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nX"), GET),
         ambiguous_then_close),
    Case("SMUG-CLTE-SMUGGLED-GET",
         (smuggled("", "Content-Length: {cl}\r\nTransfer-Encoding: chunked\r\n"),),
         no_smuggled_response),
    Case("SMUG-CLTE-SMUGGLED-GET-CL-PLUS",
         (smuggled("", "Content-Length: +{cl}\r\nTransfer-Encoding: chunked\r\n"),),
         no_smuggled_response),
    Case("SMUG-CLTE-SMUGGLED-GET-CL-NON-NUMERIC",
         (smuggled("", "Content-Length: {cl}x\r\nTransfer-Encoding: chunked\r\n"),),
         no_smuggled_response),
    Case("SMUG-CLTE-SMUGGLED-GET-TE-OBS-FOLD",
         (smuggled("", "Transfer-Encoding:\r\n chunked\r\nContent-Length: {cl}\r\n"),),
         no_smuggled_response),
    Case("SMUG-CLTE-SMUGGLED-HEAD",
         (smuggled("", "Content-Length: {cl}\r\nTransfer-Encoding: chunked\r\n", "HEAD"),),
         no_smuggled_response),
    Case("SMUG-CLTE-SMUGGLED-GET-TE-TRAILING-SPACE",
         (smuggled("", "Content-Length: {cl}\r\nTransfer-Encoding: chunked \r\n"),),
         no_smuggled_response),
    Case("SMUG-CLTE-SMUGGLED-GET-TE-LEADING-COMMA",
         (smuggled("", "Content-Length: {cl}\r\nTransfer-Encoding: , chunked\r\n"),),
         no_smuggled_response),
    Case("SMUG-CLTE-SMUGGLED-GET-TE-CASE-MISMATCH",
         (smuggled("", "Content-Length: {cl}\r\nTransfer-Encoding: Chunked\r\n"),),
         no_smuggled_response),
    Case("SMUG-TE-DUPLICATE-HEADERS-SMUGGLED-GET",
         (smuggled("", "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n"
                       "Content-Length: {cl}\r\n"),), no_smuggled_response),
    Case("SMUG-TECL-SMUGGLED-GET", (_tecl_smuggled(),), no_smuggled_response),
    Case("SMUG-DUPLICATE-CL-SMUGGLED-GET",
         (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 4\r\nContent-Length: "
              f"{4 + len(GET)}\r\n\r\nPING") + GET,), no_smuggled_response),
    Case("SMUG-GET-CL-PREFIX-DESYNC",
         (req(f"GET / HTTP/1.1\r\n{H}Content-Length: {len(GET) - 2}\r\n\r\n") + GET[:-2],
          b"\r\n" + GET), follow_up(WARN), scored=False),
    Case("SMUG-TECL-DESYNC", (req(f"POST / HTTP/1.1\r\n{H}Transfer-Encoding: chunked\r\n"
                                  "Content-Length: 30\r\n\r\n0\r\n\r\nX"), GET),
         ambiguous_then_close),
    Case("SMUG-CL0-BODY-POISON", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 0\r\n\r\nX"), GET),
         follow_up(WARN), scored=False),
    Case("SMUG-GET-CL-BODY-DESYNC", (req(f"GET / HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\nhello"),
                                     GET), follow_up(WARN), scored=False),
    Case("SMUG-OPTIONS-CL-BODY-DESYNC", (req(f"OPTIONS / HTTP/1.1\r\n{H}Content-Length: 5\r\n\r\n"
                                             "hello"), GET), follow_up(WARN), scored=False),
    Case("SMUG-EXPECT-100-CL-DESYNC", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 5\r\n"
                                           "Expect: 100-continue\r\n\r\nhello"), GET),
         follow_up(WARN), scored=False),
    Case("SMUG-OPTIONS-TE-OBS-FOLD", (req(f"OPTIONS / HTTP/1.1\r\n{H}Transfer-Encoding:\r\n chunked"
                                          "\r\nContent-Length: 5\r\n\r\nhello"), GET),
         ambiguous_then_close),
    Case("SMUG-CHUNK-INVALID-SIZE-DESYNC", (post_chunked("+0\r\n\r\nX"), GET),
         ambiguous_then_close),
    Case("SMUG-PIPELINE-SAFE", (GET, GET), pipeline_safe, scored=False),
    # -- Malformed input
    Case("MAL-BINARY-GARBAGE", (GARBAGE,), silence_or_400),
    Case("MAL-LONG-URL", (req(f"GET /{'A' * 100_000} HTTP/1.1\r\n{H}\r\n"),),
         reject_or((400, 414, 431), on_2xx=FAIL)),
    Case("MAL-LONG-HEADER-VALUE", (req(f"GET / HTTP/1.1\r\n{H}X-Big: {'B' * 100_000}\r\n\r\n"),),
         reject_or((400, 431), on_2xx=FAIL)),
    Case("MAL-MANY-HEADERS", (req(f"GET / HTTP/1.1\r\n{H}"
                                  + "".join(f"X-H-{i}: value\r\n" for i in range(10_000))
                                  + "\r\n"),), reject_or((400, 431), on_2xx=FAIL)),
    Case("MAL-NUL-IN-URL", (req(f"GET /\x00test HTTP/1.1\r\n{H}\r\n"),), exact(400)),
    Case("MAL-CONTROL-CHARS-HEADER", (req(f"GET / HTTP/1.1\r\n{H}X-Test: abc\x07\x08\x0bdef\r\n"
                                          "\r\n"),), exact(400)),
    Case("MAL-INCOMPLETE-REQUEST", (req(f"GET / HTTP/1.1\r\n{H}X-Test: value"),), silence_or_400),
    Case("MAL-EMPTY-REQUEST", (b"",), silence_or_400),
    Case("MAL-LONG-HEADER-NAME", (req(f"GET / HTTP/1.1\r\n{H}{'A' * 100_000}: val\r\n\r\n"),),
         reject_or((400, 431), on_2xx=FAIL)),
    Case("MAL-LONG-METHOD", (req(f"{'A' * 100_000} / HTTP/1.1\r\n{H}\r\n"),),
         reject_or((400,), on_2xx=FAIL)),
    Case("MAL-NON-ASCII-HEADER-NAME", (b"GET / HTTP/1.1\r\n" + H.encode() + b"X-T\xc3\xabst: value"
                                       b"\r\n\r\n",), exact(400)),
    Case("MAL-NON-ASCII-URL", (b"GET /caf\xc3\xa9 HTTP/1.1\r\n" + H.encode() + b"\r\n",),
         exact(400)),
    Case("MAL-CL-OVERFLOW", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 99999999999999999999"
                                 "\r\n\r\n"),), exact(400)),
    Case("MAL-WHITESPACE-ONLY-LINE", (b"   \r\n\r\n",), silence_or_400),
    Case("MAL-H2-PREFACE", (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",),
         lambda steps: PASS if steps[0].response is None or steps[0].response.status in (400, 505)
         else FAIL),
    Case("MAL-NUL-IN-HEADER-VALUE", (req(f"GET / HTTP/1.1\r\n{H}X-Test: a\x00b\r\n\r\n"),),
         exact(400)),
    Case("MAL-CHUNK-SIZE-OVERFLOW", (post_chunked("ffffffffffffffffff\r\nhello\r\n0\r\n\r\n"),),
         exact(400)),
    Case("MAL-CL-EMPTY", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: \r\n\r\n"),), exact(400)),
    Case("MAL-URL-OVERLONG-UTF8", (b"GET /\xc0\xaf HTTP/1.1\r\n" + H.encode() + b"\r\n",),
         exact(400)),
    Case("MAL-CL-TAB-BEFORE-VALUE", (req(f"POST / HTTP/1.1\r\n{H}Content-Length:\t5\r\n\r\nhello"),),
         reject_or()),
    Case("MAL-POST-CL-HUGE-NO-BODY", (req(f"POST / HTTP/1.1\r\n{H}Content-Length: 999999999\r\n"
                                          "\r\n"),), reject_or((400, 413), on_2xx=FAIL,
                                                               no_response="closed or timed out")),
    Case("MAL-URL-BACKSLASH", (req(f"GET /path\\file HTTP/1.1\r\n{H}\r\n"),),
         reject_or(other=WARN), scored=False),
    Case("MAL-URL-PERCENT-NULL", (req(f"GET /path%00.html HTTP/1.1\r\n{H}\r\n"),),
         reject_or(other=WARN)),
    Case("MAL-URL-PERCENT-CRLF", (req(f"GET /path%0d%0aX-Injected:%20true HTTP/1.1\r\n{H}\r\n"),),
         reject_or(other=WARN)),
    Case("MAL-CHUNK-EXT-64K", (post_chunked(f"5;ext={'x' * 65536}\r\nhello\r\n0\r\n\r\n"),),
         reject_or((400, 431), on_2xx=FAIL)),
    Case("MAL-RANGE-OVERLAPPING", (req(f"GET / HTTP/1.1\r\n{H}Range: bytes=0-10,5-15,10-20\r\n"
                                       "\r\n"),), reject_or((200, 206, 400, 416)), scored=False),
    # -- Normalization
    Case("NORM-UNDERSCORE-CL", (req(f"POST /echo HTTP/1.1\r\n{H}Content-Length: 11\r\n"
                                    "Content_Length: 99\r\n\r\nhello world"),),
         echoed_header("Content-Length", "Content_Length", "99")),
    Case("NORM-SP-BEFORE-COLON-CL", (req(f"POST /echo HTTP/1.1\r\n{H}Content-Length: 11\r\n"
                                         "Content-Length : 5\r\n\r\nhello world"),),
         echoed_header("Content-Length", "Content-Length ", "5")),
    Case("NORM-TAB-IN-NAME", (req(f"POST /echo HTTP/1.1\r\n{H}Content-Length: 11\r\n"
                                  "Content\tLength: 99\r\n\r\nhello world"),),
         echoed_header("Content-Length", "Content\tLength", "99")),
    Case("NORM-CASE-TE", (req(f"POST /echo HTTP/1.1\r\n{H}TRANSFER-ENCODING: chunked\r\n\r\n"
                              "B\r\nhello world\r\n0\r\n\r\n"),),
         echoed_header("Transfer-Encoding", "TRANSFER-ENCODING", "chunked", case_only=True),
         scored=False),
    Case("NORM-UNDERSCORE-TE", (req(f"POST /echo HTTP/1.1\r\n{H}Transfer_Encoding: chunked\r\n"
                                    "\r\nB\r\nhello world\r\n0\r\n\r\n"),),
         echoed_header("Transfer-Encoding", "Transfer_Encoding", "chunked")),
]

# The scored cases that warn, each a deliberate choice said in the README ("HTTP behaviour").
WARNINGS = {
    "COMP-LEADING-CRLF": "an empty line before a request is ignored (RFC 9112 2.2: should be)",
    "SMUG-CL-LEADING-ZEROS": "Content-Length with leading zeros is valid (1*DIGIT), read as "
                             "decimal",
    "SMUG-CL-DOUBLE-ZERO": "the same: 00 is 0",
    "SMUG-CL-LEADING-ZEROS-OCTAL": "the same: 0200 is 200, never octal",
    "SMUG-CL-TRAILING-SPACE": "whitespace around a field value is OWS (RFC 9110 5.5)",
    "SMUG-CL-EXTRA-LEADING-SP": "the same",
    "MAL-CL-TAB-BEFORE-VALUE": "the same (a tab is OWS)",
    "COMP-UPGRADE-INVALID-VER": "Upgrade is the application's business: a request naming a "
                                "WebSocket version the application does not take reaches it "
                                "like any other",
}
# Unscored cases that fail by construction of WSGI, not of the server.
UNSCORED_FAILS = {
    "NORM-CASE-TE": "a WSGI environ keeps no header name's case (PEP 3333: HTTP_ keys), so an "
                    "application's echo of the fields cannot show the name as it was sent",
}


def exchange(port: int, steps: Sequence[bytes]) -> List[Step]:
    """Send each payload on one connection, as the probe does: the next one only if the
    connection is still open after the answer to the one before."""
    done: List[Step] = []
    with Client(port, timeout=READ_TIMEOUT) as client:
        for number, payload in enumerate(steps):
            if done and done[-1].state != OPEN:
                done.append(Step(None, done[-1].state, 0, executed=False))
                continue
            try:
                if payload:
                    client.send(payload)
            except OSError:
                done.append(Step(None, CLOSED, 0))
                continue
            done.append(_answer(client, payload, last=number == len(steps) - 1))
    return done


def _answer(client: Client, payload: bytes, last: bool) -> Step:
    method = "HEAD" if payload.startswith(b"HEAD ") else "GET"
    try:
        response = client.read_response(method)
        while 100 <= response.status < 200:
            response = client.read_response(method)
    except (socket.timeout, TimeoutError):
        return Step(None, TIMED_OUT, 0)
    except (EOFError, ConnectionError):
        return Step(None, CLOSED, 0)
    closed = client.closed_by_server(timeout=0.5 if last else 0.3)
    lines = 1 + len(re.findall(rb"HTTP/\d\.\d \d\d\d", client.buffer))
    return Step(response, CLOSED if closed else OPEN, lines)


@pytest.fixture(scope="module")
def verdicts():
    """Every case against one gevent worker, several at once (some wait for a timeout)."""
    args = ["-k", "gevent", "-w", "1", "--header-timeout", "20", "--body-timeout", "20"]
    with Server(args, app="probe_app:app") as srv, ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda case: exchange(srv.port, case.steps), CASES))
    return {case.id: case.verdict(steps) for case, steps in zip(CASES, results)}


def test_cases_are_distinct():
    assert len({case.id for case in CASES}) == len(CASES)
    assert set(WARNINGS) <= {case.id for case in CASES if case.scored}
    assert set(UNSCORED_FAILS) <= {case.id for case in CASES if not case.scored}


@pytest.mark.parametrize("case", [c for c in CASES if c.scored], ids=lambda c: c.id)
def test_scored_case(verdicts, case):
    expected = WARN if case.id in WARNINGS else PASS
    assert verdicts[case.id] == expected


@pytest.mark.parametrize("case", [c for c in CASES if not c.scored], ids=lambda c: c.id)
def test_unscored_case_does_not_fail(verdicts, case):
    assert verdicts[case.id] in ((FAIL,) if case.id in UNSCORED_FAILS else (PASS, WARN))
