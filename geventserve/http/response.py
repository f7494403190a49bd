"""Response heads: the checks on what the application passes to start_response, and the bytes.

An invalid status or header is refused here (ValueError or TypeError), so it is never written.
"""

from __future__ import annotations

import re
import time
from email.utils import formatdate
from typing import Dict, Tuple

from .errors import HTTPError
from .rules import TOKEN

# Field values may hold VCHAR, obs-text, SP and HTAB: no other control character.
_BAD_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")

# What a response header field means to the server (its "kind").
PLAIN, CONTENT_LENGTH, TRANSFER_ENCODING, CONNECTION, HOP_BY_HOP, DATE, SERVER = range(7)
_SPECIAL_KINDS = {
    "content-length": CONTENT_LENGTH,
    "transfer-encoding": TRANSFER_ENCODING,
    "connection": CONNECTION,
    "keep-alive": HOP_BY_HOP,
    "date": DATE,
    "server": SERVER,
}
_NAME_KINDS: Dict[str, int] = {}
_STATUS_LINES: Dict[str, Tuple[int, bytes]] = {}
_CACHE_LIMIT = 2048

SERVER_HEADER = b"Server: geventserve\r\n"
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def header_kind(name: object) -> int:
    """The kind of a response header field name; ValueError/TypeError if it is not a token."""
    kind = _NAME_KINDS.get(name)  # type: ignore[arg-type]
    if kind is not None:
        return kind
    if not isinstance(name, str):
        raise TypeError(f"header name {name!r} is a {type(name).__name__}, not a str")
    if not TOKEN.fullmatch(name):
        raise ValueError(f"header name {name!r} is not a valid token")
    kind = _SPECIAL_KINDS.get(name.lower(), PLAIN)
    if len(_NAME_KINDS) >= _CACHE_LIMIT:
        _NAME_KINDS.clear()
    _NAME_KINDS[name] = kind
    return kind


def check_value(name: str, value: object) -> None:
    """Refuse a header value that is not a latin-1 str without control characters."""
    if not isinstance(value, str):
        raise TypeError(f"value of header {name!r} is a {type(value).__name__}, not a str")
    if value.isascii() and value.isprintable():
        return
    if _BAD_VALUE.search(value):
        raise ValueError(f"value of header {name!r} contains a control character (CR, LF or "
                         f"another): {value[:80]!r}")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"value of header {name!r} has characters outside latin-1: "
                         f"{value[:80]!r}") from None


def status_line(status: object) -> Tuple[int, bytes]:
    """(code, b'HTTP/1.1 <status>\\r\\n') for a WSGI status string such as '200 OK'."""
    cached = _STATUS_LINES.get(status)  # type: ignore[arg-type]
    if cached is not None:
        return cached
    if type(status) is not str:
        raise TypeError(f"status {status!r} is a {type(status).__name__}, not a str")
    if not (len(status) >= 3 and status[:3].isdigit() and "1" <= status[0] <= "5"
            and (len(status) == 3 or status[3] == " ")):
        raise ValueError(f"status {status!r} is not of the form '200 OK' with a code from 100 "
                         "to 599")
    check_value("status", status)
    if status[0] == "1":
        raise ValueError(f"status {status!r}: a 1xx status cannot be the response (the server "
                         "sends 100 Continue itself)")
    line = status if len(status) > 3 else status + " "
    result = (int(status[:3]), b"HTTP/1.1 " + line.encode("latin-1") + b"\r\n")
    if len(_STATUS_LINES) >= _CACHE_LIMIT:
        _STATUS_LINES.clear()
    _STATUS_LINES[status] = result
    return result


_date_second = 0
_date_header = b""


def date_header() -> bytes:
    """b'Date: <IMF-fixdate>\\r\\n', formatted at most once a second."""
    global _date_second, _date_header
    now = int(time.time())
    if now != _date_second:
        _date_second = now
        _date_header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
    return _date_header


def error_response(error: HTTPError, head: bool = False) -> bytes:
    """A complete plain-text response for an error the server answers by itself; the
    connection is closed after it. ``head``: the answer to a HEAD request, without its body."""
    return _plain_response(error.status, error.reason,
                           f"{error.status} {error.reason}: {error.detail}\n".encode("utf-8",
                                                                                   "replace"),
                           head)


def internal_error_response(head: bool = False) -> bytes:
    return _plain_response(500, "Internal Server Error",
                           b"500 Internal Server Error: the application failed; see the "
                           b"server's error log.\n", head)


def _plain_response(status: int, reason: str, body: bytes, head: bool) -> bytes:
    lines = [b"HTTP/1.1 %d %s\r\n" % (status, reason.encode()),
             b"Content-Type: text/plain; charset=utf-8\r\n",
             b"Content-Length: %d\r\n" % len(body),
             b"Connection: close\r\n",
             date_header(), SERVER_HEADER, b"\r\n"]
    return b"".join(lines) if head else b"".join(lines) + body


def parse_content_length(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise ValueError(f"Content-Length {value!r} is not a number of bytes")
    return int(value)

