"""The rules of RFC 9110 (HTTP semantics) and RFC 9112 (HTTP/1.1) that llhttp leaves to us.

Pure functions, by section: each takes what the parser read and returns what it means, or
raises the HTTPError to answer with. llhttp already enforces, in its strict mode: Content-Length
with Transfer-Encoding, a bad or repeated Content-Length, a Transfer-Encoding whose last coding
is not chunked, chunk sizes and extensions, chunk data without its CRLF, whitespace before a
colon, obs-fold, field names that are no tokens, control characters in values, bare LF line
ends, and the characters of the request-target.
"""

from __future__ import annotations

import re
from typing import Optional, Set, Tuple

import httptools

from .errors import (
    BadRequest,
    ExpectationFailed,
    HTTPError,
    MethodNotImplemented,
    VersionNotSupported,
)

# -- RFC 9110 5.6.2: tokens -------------------------------------------------------------------

TCHARS = r"!#$%&'*+\-.^_`|~0-9A-Za-z"
#: a whole token (response header field names, given as str)
TOKEN = re.compile(f"[{TCHARS}]+")
#: how far a run of token characters goes (``.match(data, start).end()``), in bytes
TOKEN_RUN = re.compile(f"[{TCHARS}]*".encode())

# -- RFC 9112 2.3, RFC 9110 2.5: the protocol version -----------------------------------------

VERSIONS = ("1.1", "1.0")


def check_version(version: str) -> str:
    """The version to process a request as: HTTP/1.1 and HTTP/1.0 as they are, a higher minor
    version of HTTP/1 as HTTP/1.1 (RFC 9110 2.5: the highest minor version this server
    conforms to); 505 for any other (HTTP/0.9, 2.0, 3.0, ...)."""
    if version in VERSIONS:
        return version
    if version[:2] == "1.":  # llhttp gives one digit each side of the dot
        return "1.1"
    raise VersionNotSupported(f"HTTP/{version} is not supported; this server speaks "
                              "HTTP/1.1 and HTTP/1.0")


def check_protocol(line: bytes, at: int) -> None:
    """RFC 9112 3: a request line ends with HTTP-version, but llhttp also accepts RTSP/x.y and
    ICE/x.y there (and reports them as HTTP): 505 for those. ``line[at:]`` begins with the
    protocol of a request line llhttp accepted."""
    if line.startswith(b"HTTP/", at):
        return
    protocol = bytes(line[at:at + 16]).partition(b"\r")[0].strip().decode("latin-1")
    raise VersionNotSupported(f"{protocol} is not HTTP; this server speaks HTTP/1.1 and "
                              "HTTP/1.0")


def check_line_spaces(line_length: int, method: str, target: bytes) -> None:
    """RFC 9112 3: request-line = method SP request-target SP HTTP-version, with one SP each;
    llhttp also takes runs of spaces there, which a recipient should not autocorrect (the
    invalid line may be crafted to slip past a filter): 400. ``line_length`` is the length of
    the line before its CRLF, and its HTTP-version is 8 bytes long."""
    if line_length != len(method) + len(target) + 10:
        raise BadRequest("more than one space between the parts of the request line")


# -- RFC 9110 9.1, 9.3.6: methods -------------------------------------------------------------

# The method, two spaces, a target of one byte and "HTTP/1.1": a request line holds this much
# besides its method.
_LINE_BESIDES_METHOD = 11


def method_error(line: bytes, line_limit: int) -> Optional[HTTPError]:
    """The answer to a request line whose method llhttp refused (it knows a fixed list), from
    the line's first bytes; None while they cannot tell, the method token still running.

    A method is a token: one that is no method this server knows (an unknown or lower-case
    one) is 501; anything else (no token, or a token the request line cannot hold under
    --limit-request-line) is 400.
    """
    end = TOKEN_RUN.match(line).end()  # type: ignore[union-attr]
    if end + _LINE_BESIDES_METHOD > line_limit:
        return BadRequest(f"the request method makes the request line longer than {line_limit} "
                          "bytes (--limit-request-line)")
    if end == len(line):
        return None
    if end and line[end] == 0x20:  # SP
        return MethodNotImplemented(f"method {line[:min(end, 32)].decode('latin-1')!r} is not "
                                    "supported by this server")
    return BadRequest("invalid request method")


def check_method(method: str) -> None:
    """CONNECT (9.3.6) asks for a tunnel: not something this server does."""
    if method == "CONNECT":
        raise MethodNotImplemented("CONNECT is not supported by this server")


# -- RFC 9112 3.2: the request-target ---------------------------------------------------------

_WEB_SCHEMES = (b"http", b"https")
# Bytes are looked up as ints: `b"#" in target` is several times slower.
_HASH, _SLASH, _BACKSLASH, _PERCENT = ord("#"), ord("/"), ord("\\"), ord("%")
# Percent-encoded NUL, CR and LF: decoded into PATH_INFO, they would hand the application a
# path that ends early in C code, or that splits a header line or a log line.
_ENCODED_CONTROLS = re.compile(rb"%0[0aAdD]")


def check_target(method: str, target: bytes) -> None:
    """origin-form ("/path?query") or absolute-form ("http://host/path"), asterisk-form ("*")
    for OPTIONS only; authority-form is CONNECT's, refused before. Never a fragment (4.1: the
    request-target has none; a "#" is the client's mistake), a backslash (no URI character:
    some servers and proxies read it as "/", so that a path could mean different things to
    them and to the application), nor %00, %0D or %0A in the path."""
    if _HASH in target:
        raise BadRequest("the request target contains a fragment (#)")
    if _BACKSLASH in target:
        raise BadRequest("the request target contains a backslash")
    if _PERCENT in target and _ENCODED_CONTROLS.search(target.partition(b"?")[0]):
        raise BadRequest("the request path contains an encoded NUL, CR or LF (%00, %0D, %0A)")
    if target[:1] == b"/":
        return
    if target == b"*":
        if method != "OPTIONS":
            raise BadRequest("the request target * is only for OPTIONS")
        return
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        url = None
    if (url is None or not url.schema or url.schema.lower() not in _WEB_SCHEMES
            or not url.host):
        raise BadRequest(f"invalid request target {target[:64].decode('latin-1')!r}: expected "
                         "a path, or an absolute http(s) URL")
    if url.userinfo is not None:  # RFC 9110 4.2.4: userinfo is deprecated, and refused
        raise BadRequest("the request target contains user information (user@)")


# -- RFC 9112 3.2, RFC 9110 7.2: Host ---------------------------------------------------------

_HOST = re.compile(rb"(\[[0-9A-Fa-f:.vV]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(:[0-9]*)?")
_VALID_HOSTS: Set[bytes] = set()  # Host values already checked (most clients send the same few)


def check_host(count: int, host: Optional[bytes], version: str, target: bytes = b"/") -> None:
    """Exactly one Host field in an HTTP/1.1 request, at most one in HTTP/1.0; its value is
    uri-host [":" port] (RFC 3986 3.2.2 and 3.2.3), and not empty when the target URI takes
    its authority from it (origin-form, asterisk-form: RFC 9110 4.2.1, an "http" URI with an
    empty host is invalid; an absolute-form target carries its own)."""
    if count == 1:
        if host in _VALID_HOSTS:
            return
        if not host:
            if target[:1] == b"/" or target == b"*":
                raise BadRequest("empty Host header")
            return
        if not _HOST.fullmatch(host):  # type: ignore[arg-type]
            raise BadRequest("invalid Host header")
        if len(_VALID_HOSTS) >= 1024:
            _VALID_HOSTS.clear()
        _VALID_HOSTS.add(host)  # type: ignore[arg-type]
    elif count > 1:
        raise BadRequest("more than one Host header")
    elif version == "1.1":
        raise BadRequest("an HTTP/1.1 request must have a Host header")


# -- RFC 9112 6.1: Transfer-Encoding ----------------------------------------------------------

_CHUNKED = b"chunked"


def is_chunked(transfer_encoding: Optional[bytes], version: str) -> bool:
    """Whether the body is chunked: Transfer-Encoding (its fields joined as one list, RFC 9110
    5.3) may only say "chunked", and only in HTTP/1.1 (6.1: a server ought to treat it in
    HTTP/1.0 as faulty framing)."""
    if transfer_encoding is None:
        return False
    if version == "1.0":
        raise BadRequest("Transfer-Encoding is not allowed in an HTTP/1.0 request")
    if transfer_encoding.strip().lower() != _CHUNKED:
        raise BadRequest("unsupported Transfer-Encoding "
                         f"{transfer_encoding.decode('latin-1')!r}: only chunked is accepted")
    return True


# -- RFC 9110 10.1.1: Expect ------------------------------------------------------------------

_CONTINUE = b"100-continue"


def expects_continue(expect: Optional[bytes], version: str) -> bool:
    """Whether the client waits for 100 Continue before it sends the body; 417 for any other
    expectation. HTTP/1.0 has no Expect: it is ignored there. The fields are one list, whose
    empty members are allowed (RFC 9110 5.6.1)."""
    if expect is None or version != "1.1":
        return False
    expects = False
    for member in expect.split(b","):
        member = member.strip()
        if not member:
            continue
        if member.lower() != _CONTINUE:
            raise ExpectationFailed(f"unsupported expectation {member[:64].decode('latin-1')!r}")
        expects = True
    return expects


# -- RFC 9112 3, 6: a request head, all of the above -------------------------------------------


def check_head(version: str, method: str, target: bytes, host_count: int,
               host: Optional[bytes], transfer_encoding: Optional[bytes],
               expect: Optional[bytes]) -> Tuple[bool, bool]:
    """Every rule above for one request head llhttp accepted (the protocol and the version
    aside: ``version`` is the one to process it as), in order: (whether the body is chunked,
    whether the client waits for 100 Continue). The usual head (HTTP/1.1, origin-form, a Host
    already seen, no Transfer-Encoding, no Expect) passes without another call."""
    if method == "CONNECT":
        check_method(method)
    if (target[0] != _SLASH or _HASH in target or _PERCENT in target  # never empty (llhttp)
            or _BACKSLASH in target):
        check_target(method, target)
    if host_count != 1 or host not in _VALID_HOSTS:
        check_host(host_count, host, version, target)
    if transfer_encoding is None and expect is None:
        return _PLAIN
    return (transfer_encoding is not None and is_chunked(transfer_encoding, version),
            expect is not None and expects_continue(expect, version))


_PLAIN = (False, False)


# -- RFC 9110 6.4.1, 8.6, RFC 9112 6.3: responses without content -------------------------------

#: 1xx, 204 (No Content) and 304 (Not Modified) responses end with their head,
NO_CONTENT_STATUSES = frozenset(range(100, 200)) | {204, 304}
#: and all but 304 never carry a Content-Length (a 304's says what a GET would get)
NO_LENGTH_STATUSES = NO_CONTENT_STATUSES - {304}
