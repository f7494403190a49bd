"""Properties of the HTTP layer, over inputs hypothesis makes up: any chunking of a body
decodes to the same bytes; any split of pipelined requests gives the same responses; any
order of the header fields gives the same environ."""

import re
import socket

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import target
from geventserve.http.connection import Connection, ServerState
from geventserve.http.parser import RequestParser
from geventserve.http.settings import HTTPSettings
from geventserve.http.wsgi import WSGIHandler, build_environ
from geventserve.settings import Config

SETTINGS = HTTPSettings.from_config(Config())
LIMITS = (SETTINGS.line_limit, SETTINGS.fields_limit, SETTINGS.field_size_limit)
PROPERTIES = settings(max_examples=150, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])


def pieces(data: bytes, cuts):
    """``data`` cut at the (sorted, distinct) positions ``cuts`` draws from."""
    points = sorted({cut % (len(data) + 1) for cut in cuts})
    return [data[i:j] for i, j in zip([0] + points, points + [len(data)]) if j > i]


# -- any chunking of a body decodes to the same bytes ----------------------------------------

_TOKEN = st.text("abcXYZ019!#$%&'*+-.^_`|~", min_size=1, max_size=6)
_BWS = st.sampled_from(["", " ", "\t", " \t "])
_EXTENSION = st.builds(lambda ws1, name, ws2, value: f"{ws1};{ws2}{name}{value}",
                       _BWS, _TOKEN, _BWS,
                       st.one_of(st.just(""), _TOKEN.map(lambda v: "=" + v),
                                 st.just('="quoted; value"')))


@st.composite
def chunked_bodies(draw):
    body = draw(st.binary(max_size=3000))
    sizes = draw(st.lists(st.integers(1, 700), max_size=12))
    parts, at = [], 0
    for size in sizes:
        if at >= len(body):
            break
        parts.append(body[at:at + size])
        at += size
    if at < len(body):
        parts.append(body[at:])
    lines = []
    for part in parts:
        extensions = "".join(draw(st.lists(_EXTENSION, max_size=2)))
        hex_size = draw(st.sampled_from(["%x", "%X", "0%x"])) % len(part)
        lines.append(f"{hex_size}{extensions}\r\n".encode() + part + b"\r\n")
    trailer = draw(st.sampled_from([b"", b"X-Sum: 1\r\n", b"A: b\r\nC-D: e f\r\n"]))
    return body, b"".join(lines) + b"0\r\n" + trailer + b"\r\n"


@PROPERTIES
@given(chunked_bodies(), st.lists(st.integers(0, 10_000), max_size=8))
def test_any_chunking_of_a_body_decodes_to_the_same_bytes(body_and_chunks, cuts):
    body, chunks = body_and_chunks
    data = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks
            + b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
    for reads in ([data], pieces(data, cuts)):
        parser = RequestParser(*LIMITS)
        for read in reads:
            parser.feed(read)
        assert parser.error is None
        posted, following = list(parser.ready)
        assert posted.complete and bytes(posted.body) == body
        assert following.target == b"/next"


# -- any split of pipelined requests gives the same responses ---------------------------------

_REQUESTS = st.sampled_from([
    b"GET /one HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD /two HTTP/1.1\r\nHost: a\r\n\r\n",
    b"POST /three HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /four HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"PUT /five HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nwxyz",
    b"GET /204 HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET /six HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
])
_DATE = re.compile(rb"Date: [^\r]*\r\n")


def serve_in_pieces(reads) -> bytes:
    """The responses to ``reads``, sent one after the other on one connection (each given
    time to be read by itself), up to the server's close; without their Date fields."""
    return _DATE.sub(b"", target.serve(*reads))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_REQUESTS, min_size=1, max_size=6), st.lists(st.integers(0, 10_000),
                                                             max_size=10))
def test_any_split_of_pipelined_requests_gives_the_same_responses(requests, cuts):
    data = b"".join(requests)
    assert serve_in_pieces(pieces(data, cuts)) == serve_in_pieces([data])


# -- any order of the header fields gives the same environ -----------------------------------

_NAMES = st.lists(st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=10)
                  .filter(lambda n: n[0] != "-" and n.lower() not in (
                      "host", "content-length", "transfer-encoding", "expect", "connection",
                      "upgrade", "content-type")),
                  min_size=1, max_size=8, unique_by=str.lower)


def environ_of(head: bytes) -> dict:
    parser = RequestParser(*LIMITS)
    parser.feed(head)
    assert parser.error is None
    (request,) = parser.ready
    sock, other = socket.socketpair()
    try:
        conn = Connection(sock, SETTINGS, WSGIHandler(app=None), ServerState(),
                          listener_environ={"wsgi.url_scheme": "http", "SCRIPT_NAME": "",
                                            "SERVER_NAME": "localhost", "SERVER_PORT": "80"},
                          remote_addr="127.0.0.1", remote_port="5000")
        environ = build_environ(conn, request)
    finally:
        sock.close()
        other.close()
    environ.pop("wsgi.input")
    environ.pop("gunicorn.socket")  # the connection's own socket
    return environ


@PROPERTIES
@given(_NAMES, st.randoms(use_true_random=False), st.booleans())
def test_any_order_of_the_fields_gives_the_same_environ(names, chance, with_type):
    fields = [(name, f"value of {name}") for name in names] + [("Host", "example.com:8080")]
    if with_type:
        fields.append(("Content-Type", "text/plain; charset=utf-8"))
    shuffled = fields[:]
    chance.shuffle(shuffled)

    def head(order) -> bytes:
        return (b"GET /path?q=1 HTTP/1.1\r\n"
                + b"".join(f"{n}: {v}\r\n".encode() for n, v in order) + b"\r\n")

    assert environ_of(head(shuffled)) == environ_of(head(fields))
