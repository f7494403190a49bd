"""A second opinion on every request of the corpus: h11 (a strict HTTP/1.1 parser by other
authors) reads each input as a server would, and its answer, accepted or refused, is set
beside geventserve's parser's. DISAGREEMENTS lists each input where the two differ, with the
reason geventserve's answer is the right one; a new disagreement fails until it is explained
here, and an entry that no longer disagrees fails until it is removed."""

import os
from typing import Dict, Iterator, Tuple

import h11
import pytest
import test_http_probe
import test_http_strict
from test_http_protocol import PIPELINED

from geventserve.http.parser import RequestParser
from geventserve.http.settings import HTTPSettings
from geventserve.settings import Config

SETTINGS = HTTPSettings.from_config(Config())
PARSER_LIMITS = (SETTINGS.line_limit, SETTINGS.fields_limit, SETTINGS.field_size_limit)
REGRESSIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fuzz_regressions")


def corpus() -> Iterator[Tuple[str, bytes]]:
    """(name, bytes) for every request input the tests hold."""
    from unit import test_parser_table

    for name, (data, _) in test_parser_table.CASES.items():
        yield f"parser: {name}", data
    for name, (data, _) in test_parser_table.SMALL_CASES.items():
        yield f"parser, small limits: {name}", data
    for name, (data, _) in test_http_strict.BAD_REQUESTS.items():
        yield f"strict: {name}", data
    yield "protocol: pipelined", PIPELINED
    for case in test_http_probe.CASES:
        yield f"probe: {case.id}", b"".join(case.steps)
    for name in sorted(os.listdir(REGRESSIONS)):
        if not name.startswith("."):
            with open(os.path.join(REGRESSIONS, name), "rb") as fh:
                yield f"fuzz: {name}", fh.read()


def geventserve_accepts(data: bytes) -> bool:
    """Whether geventserve's parser takes the input without refusing anything in it."""
    parser = RequestParser(*PARSER_LIMITS)
    parser.feed(data)
    return parser.error is None


def h11_accepts(data: bytes) -> bool:
    """Whether h11, as the server, takes the input: every request in it is read (each answered
    with an empty 200 so that the next may be read) without a protocol error."""
    conn = h11.Connection(our_role=h11.SERVER, max_incomplete_event_size=PARSER_LIMITS[0] + 16 * 1024)
    conn.receive_data(data)
    status = 200
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED and conn.their_state is h11.MUST_CLOSE:
                return True
            if isinstance(event, h11.Request):
                status = 501 if event.method == b"CONNECT" else 200  # a 2xx would be a tunnel
            if isinstance(event, h11.EndOfMessage):
                conn.send(h11.Response(status_code=status, headers=[("Content-Length", "0")]))
                conn.send(h11.EndOfMessage())
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return True  # the connection ends here: what follows is not read
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return True
    except h11.RemoteProtocolError:
        return False


# Why geventserve's answer is the right one, by kind of disagreement.
LEADING = ("accepted: an empty line before the request line is ignored (RFC 9112 2.2: a server "
           "SHOULD); h11 refuses it")
CHUNK_BWS = ("accepted: whitespace around ';' and '=' in a chunk extension is grammar (RFC 9112 "
             "7.1.1: BWS), which a recipient must take; h11's chunk line takes none")
METHOD = ("refused: a method this server does not know, or a lower-case one (methods are "
          "case-sensitive), gets 501 (RFC 9110 9.1); h11 takes any token and leaves methods to "
          "the application")
CONNECT = "refused: CONNECT asks for a tunnel, which an origin server does not make: 501"
LIMITS = ("refused: past --limit-request-line, -fields or -field-size (414, 431, or 400 for a "
          "method), at the same byte however the bytes come; h11 bounds only a whole head, "
          "more loosely")
TARGET_SAFETY = ("refused: a backslash or %00, %0D, %0A in the path would mean different paths "
                 "to different readers, or hand the application NUL, CR or LF (README); h11 does "
                 "not look inside the target")
HOST = ("refused: RFC 9112 3.2 requires 400 for a Host with an invalid value (a space, a path, "
        "userinfo, several hosts, empty where the target takes its authority from it); h11 "
        "only counts the Host fields")
SINGLETON = ("refused: a second Content-Type (RFC 9110 5.3: one value only, and it decides how "
             "the body is read; gunicorn refuses it too); h11 leaves fields to the application")
VERSION = ("refused: an HTTP major version other than 1 gets 505 (RFC 9110 2.5), HTTP/0.9 "
           "included; h11 reads the syntax only")
CLTE = ("refused: Content-Length with Transfer-Encoding (RFC 9112 6.1: a server may refuse it, "
        "and 6.3: it ought to be handled as an error, the sign of a smuggling attempt); h11 "
        "lets Transfer-Encoding win and goes on")
TE10 = ("refused: Transfer-Encoding in HTTP/1.0 is faulty framing (RFC 9112 6.1); h11 takes "
        "it")
CL_LIST = ("refused: Content-Length as a list, even of one value repeated (RFC 9110 8.6 allows "
           "refusing it; llhttp's strict mode does); h11 merges it")
CL_OVERFLOW = ("refused: a Content-Length too large to count (RFC 9110 8.6: a recipient must "
               "guard against overflow); h11 waits for the body")
CHUNK = ("refused: a chunk line outside RFC 9112 7.1's grammar (whitespace after the size "
         "without ';', an extension name that is no token, a control character, a size that "
         "overflows) or longer than --limit-request-field-size; h11 ignores what follows the "
         "size")
OBS_FOLD = ("refused: obs-fold, which RFC 9112 5.2 lets a server refuse with 400 (this one "
            "does, as nothing ahead of it may read the field alike); h11 unfolds it")
CTL = ("refused: a control character (DEL, 0x01-0x1F but HTAB) in a field value is outside "
       "field-value's grammar (RFC 9110 5.5); h11 takes it")
LF = ("refused: bare LF line ends, which RFC 9112 2.2 only allows a recipient to take, are "
      "refused (a proxy ahead may read the lines otherwise); h11 takes them")
TARGET = ("refused: an invalid request-target (RFC 9112 3.2: a fragment, asterisk-form for "
          "another method than OPTIONS, authority-form, an absolute URL that is not "
          "http(s)://host, userinfo, a port over 65535); h11 does not look inside the target")
EXPECT = ("refused: an expectation other than 100-continue gets 417 (RFC 9110 10.1.1); h11 "
          "leaves it to the application")
UPGRADE_BODY = ("refused: a body with Upgrade, which this server (it answers upgrades as plain "
                "requests) does not take; h11 reads the body")
TRAILER_FRAMING = ("refused: a trailer field that frames the message (Content-Length, "
                   "Transfer-Encoding: RFC 9110 6.5.1, never in a trailer), or past the limits; "
                   "h11 takes it")

# name -> why geventserve's answer is the right one
DISAGREEMENTS: Dict[str, str] = {
    'parser: leading empty line': LEADING,
    'parser: leading CR and LF in any order': LEADING,
    'parser: whitespace before ; in a chunk extension': CHUNK_BWS,
    'parser: whitespace around ; and = in chunk extensions': CHUNK_BWS,
    'parser: unknown method token': METHOD,
    'parser: lower-case method': METHOD,
    'parser: unknown method, a prefix of a known one': METHOD,
    'parser: method of 100 KB': LIMITS,
    'parser: unknown method after a chunked body with trailers': METHOD,
    'parser: request line over the limit': LIMITS,
    'parser: field line over the size limit by its CRLF': LIMITS,
    'parser: backslash in the target': TARGET_SAFETY,
    'parser: %00 in the path': TARGET_SAFETY,
    'parser: %0D%0A in the path': TARGET_SAFETY,
    'parser: %0a in an absolute-form path': TARGET_SAFETY,
    'parser: empty Host': HOST,
    'parser: empty Host, asterisk-form': HOST,
    'parser: repeated Content-Type': SINGLETON,
    'parser: repeated Content-Type, same value': SINGLETON,
    'parser: HTTP/3.0': VERSION,
    'parser: HTTP/0.9 given as a version': VERSION,
    'parser: chunk extension longer than the field-size limit': CHUNK,
    'parser: chunk extension of 64 KB after a chunk': CHUNK,
    'parser: chunk size followed by whitespace alone': CHUNK,
    'parser: empty chunk extension name': CHUNK,
    'parser: 101 fields': LIMITS,
    'parser: field over the size limit': LIMITS,
    'parser: content-length with transfer-encoding': CLTE,
    'strict: content-length with transfer-encoding': CLTE,
    'strict: content-length as a list': CL_LIST,
    'strict: transfer-encoding on HTTP/1.0': TE10,
    'strict: chunk size with a trailing space': CHUNK,
    'strict: chunk size overflow': CHUNK,
    'strict: chunk extension with a control character': CHUNK,
    'strict: chunk extension with a space in the name': CHUNK,
    'strict: chunk size followed by whitespace alone': CHUNK,
    'strict: chunk extension longer than the field-size limit': CHUNK,
    'strict: obs-fold': OBS_FOLD,
    'strict: control character in a value': CTL,
    'strict: DEL in a value': CTL,
    'strict: bare LF line ends': LF,
    'strict: empty Host': HOST,
    'strict: two Content-Type fields': SINGLETON,
    'strict: Host with a space': HOST,
    'strict: Host with a slash': HOST,
    'strict: backslash in the target': TARGET_SAFETY,
    'strict: %00 in the path': TARGET_SAFETY,
    'strict: %0D%0A in the path': TARGET_SAFETY,
    'strict: method of 100 KB': LIMITS,
    'strict: fragment in the target': TARGET,
    'strict: asterisk-form with GET': TARGET,
    'strict: absolute-form with another scheme': TARGET,
    'strict: absolute-form with user information': TARGET,
    'strict: absolute-form with a port over 65535': TARGET,
    'strict: absolute-form without a host': TARGET,
    'strict: authority-form with GET': TARGET,
    'strict: too many trailer fields': LIMITS,
    'strict: trailer field over the size limit': LIMITS,
    'strict: HTTP/2.0': VERSION,
    'strict: HTTP/3.0': VERSION,
    'strict: unknown method token': METHOD,
    'strict: lower-case method': METHOD,
    'strict: CONNECT': CONNECT,
    'strict: unknown expectation': EXPECT,
    'strict: Upgrade with a body': UPGRADE_BODY,
    'probe: RFC9112-2.2-BARE-LF-REQUEST-LINE': LF,
    'probe: RFC9112-2.2-BARE-LF-HEADER': LF,
    'probe: RFC9112-5.1-OBS-FOLD': OBS_FOLD,
    'probe: RFC9112-2.3-INVALID-VERSION': VERSION,
    'probe: RFC9112-3.2-FRAGMENT-IN-TARGET': TARGET,
    'probe: COMP-HOST-WITH-USERINFO': HOST,
    'probe: COMP-HOST-WITH-PATH': HOST,
    'probe: COMP-ASTERISK-WITH-GET': TARGET,
    'probe: COMP-LEADING-CRLF': LEADING,
    'probe: COMP-METHOD-CASE': METHOD,
    'probe: COMP-METHOD-CONNECT': CONNECT,
    'probe: COMP-EXPECT-UNKNOWN': EXPECT,
    'probe: COMP-HOST-EMPTY-VALUE': HOST,
    'probe: COMP-UNKNOWN-METHOD': METHOD,
    'probe: COMP-DUPLICATE-CT': SINGLETON,
    'probe: SMUG-CL-TE-BOTH': CLTE,
    'probe: SMUG-TE-TRAILING-SPACE': CLTE,
    'probe: SMUG-CLTE-PIPELINE': CLTE,
    'probe: SMUG-TECL-PIPELINE': CLTE,
    'probe: SMUG-TE-CASE-MISMATCH': CLTE,
    'probe: SMUG-TE-HTTP10': TE10,
    'probe: SMUG-CHUNK-BARE-SEMICOLON': CHUNK,
    'probe: SMUG-CHUNK-EXT-INVALID-TOKEN': CHUNK,
    'probe: SMUG-CHUNK-SIZE-TRAILING-OWS': CHUNK,
    'probe: SMUG-CHUNK-EXT-CTRL': CHUNK,
    'probe: SMUG-CHUNK-EXT-CR': CHUNK,
    'probe: SMUG-CHUNK-LF-TRAILER': CHUNK,
    'probe: SMUG-CL-COMMA-SAME': CL_LIST,
    'probe: SMUG-CL-COMMA-TRIPLE': CL_LIST,
    'probe: SMUG-TRAILER-CL': TRAILER_FRAMING,
    'probe: SMUG-TRAILER-TE': TRAILER_FRAMING,
    'probe: SMUG-TE-OBS-FOLD': OBS_FOLD,
    'probe: SMUG-TE-TAB-BEFORE-VALUE': CLTE,
    'probe: SMUG-MULTIPLE-HOST-COMMA': HOST,
    'probe: SMUG-CLTE-CONN-CLOSE': CLTE,
    'probe: SMUG-TECL-CONN-CLOSE': CLTE,
    'probe: SMUG-CLTE-DESYNC': CLTE,
    'probe: SMUG-CLTE-SMUGGLED-GET': CLTE,
    'probe: SMUG-CLTE-SMUGGLED-GET-TE-OBS-FOLD': CLTE,
    'probe: SMUG-CLTE-SMUGGLED-HEAD': CLTE,
    'probe: SMUG-CLTE-SMUGGLED-GET-TE-TRAILING-SPACE': CLTE,
    'probe: SMUG-CLTE-SMUGGLED-GET-TE-CASE-MISMATCH': CLTE,
    'probe: SMUG-TECL-SMUGGLED-GET': CLTE,
    'probe: SMUG-GET-CL-PREFIX-DESYNC': LEADING,
    'probe: SMUG-TECL-DESYNC': CLTE,
    'probe: SMUG-CL0-BODY-POISON': METHOD,
    'probe: MAL-LONG-URL': LIMITS,
    'probe: MAL-LONG-HEADER-VALUE': LIMITS,
    'probe: MAL-MANY-HEADERS': LIMITS,
    'probe: MAL-LONG-HEADER-NAME': LIMITS,
    'probe: MAL-LONG-METHOD': LIMITS,
    'probe: MAL-CL-OVERFLOW': CL_OVERFLOW,
    'probe: MAL-CHUNK-SIZE-OVERFLOW': CHUNK,
    'probe: MAL-URL-BACKSLASH': TARGET_SAFETY,
    'probe: MAL-URL-PERCENT-NULL': TARGET_SAFETY,
    'probe: MAL-URL-PERCENT-CRLF': TARGET_SAFETY,
    'probe: MAL-CHUNK-EXT-64K': CHUNK,
}


def disagreements() -> Dict[str, Tuple[bool, bool]]:
    found = {}
    for name, data in corpus():
        ours, theirs = geventserve_accepts(data), h11_accepts(data)
        if ours != theirs:
            found[name] = (ours, theirs)
    return found


def test_every_disagreement_with_h11_is_explained():
    found = disagreements()
    unexplained = {name: ("geventserve accepts" if ours else "geventserve refuses")
                   + (", h11 accepts" if theirs else ", h11 refuses")
                   for name, (ours, theirs) in found.items() if name not in DISAGREEMENTS}
    assert not unexplained, unexplained
    stale = sorted(set(DISAGREEMENTS) - set(found))
    assert not stale, f"no longer a disagreement: {stale}"


@pytest.mark.parametrize("data, ours, theirs", [
    (b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", True, True),
    (b"GET / HTTP/1.1\r\n\r\n", False, False),
])
def test_both_opinions_are_read(data, ours, theirs):
    assert (geventserve_accepts(data), h11_accepts(data)) == (ours, theirs)
