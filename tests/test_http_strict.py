"""Strict, bounded input (RFC 9110, RFC 9112): bad requests get 4xx/5xx and a closed connection,
the application is never called, and the same worker process answers the next request."""

import socket
import time

import pytest

from helpers import Client, request

CL_TE = (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"0\r\n\r\n")


def chunked(body: bytes) -> bytes:
    return b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + body


def get_with(header_lines: bytes) -> bytes:
    return b"GET /pid HTTP/1.1\r\nHost: a\r\n" + header_lines + b"\r\n"


BAD_REQUESTS = {
    # framing
    "content-length with transfer-encoding": (CL_TE, 400),
    "content-length with a sign": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc", 400),
    "content-length not digits": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3a\r\n\r\nabc", 400),
    "content-length as a list": (b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\n\r\nabc", 400),
    "content-length repeated, other value": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    "content-length overflow": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400),
    "transfer-encoding last coding not chunked": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n", 400),
    "transfer-encoding unknown coding": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n", 400),
    "transfer-encoding gzip then chunked, in two fields": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "transfer-encoding gzip alone": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\nabc", 400),
    "transfer-encoding on HTTP/1.0": (
        b"POST /echo HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 400),
    "chunk size with a plus sign": (chunked(b"+3\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size with a minus sign": (chunked(b"-3\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size with 0x": (chunked(b"0x3\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size with a trailing space": (chunked(b"3 \r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size with a leading space": (chunked(b" 3\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk size with underscore": (chunked(b"1_0\r\n0123456789abcdef\r\n0\r\n\r\n"), 400),
    "chunk size overflow": (chunked(b"fffffffffffffffffff\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk extension with a control character": (chunked(b"3;\x01\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk extension with a space in the name": (chunked(b"3;a b\r\nabc\r\n0\r\n\r\n"), 400),
    "chunk data not followed by CRLF": (chunked(b"3\r\nabcX\r\n0\r\n\r\n"), 400),
    "chunk data followed by bare LF": (chunked(b"3\r\nabc\n0\r\n\r\n"), 400),
    "chunk size followed by whitespace alone": (chunked(b"5\t\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk extension longer than the field-size limit": (
        chunked(b"5;e=" + b"v" * 8200 + b"\r\nhello\r\n0\r\n\r\n"), 400),
    # field syntax
    "whitespace before the colon": (get_with(b"X-Test : 1\r\n"), 400),
    "obs-fold": (get_with(b"X-Test: a\r\n b\r\n"), 400),
    "empty field name": (get_with(b": value\r\n"), 400),
    "non-token field name": (get_with(b"X(Test): 1\r\n"), 400),
    "CR in a value": (get_with(b"X-Test: a\rb\r\n"), 400),
    "NUL in a value": (get_with(b"X-Test: a\x00b\r\n"), 400),
    "control character in a value": (get_with(b"X-Test: a\x07b\r\n"), 400),
    "DEL in a value": (get_with(b"X-Test: a\x7fb\r\n"), 400),
    "bare LF line ends": (b"GET /pid HTTP/1.1\nHost: a\n\n", 400),
    # Host
    "missing Host on HTTP/1.1": (b"GET /pid HTTP/1.1\r\n\r\n", 400),
    "two Host fields": (get_with(b"Host: b\r\n"), 400),
    "empty Host": (b"GET /pid HTTP/1.1\r\nHost:\r\n\r\n", 400),
    # fields that decide how a request is read, and allow one value (RFC 9110 5.3)
    "two Content-Type fields": (
        b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n"
        b"Content-Type: text/html\r\n\r\nhello", 400),
    "Host with a space": (b"GET /pid HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "Host with a slash": (b"GET /pid HTTP/1.1\r\nHost: a/b\r\n\r\n", 400),
    # request line
    "space in the target": (b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "two spaces after the method": (b"GET  /pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "two spaces before the version": (b"GET /pid  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "backslash in the target": (b"GET /a\\..\\pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "%00 in the path": (b"GET /pid%00.html HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "%0D%0A in the path": (b"GET /pid%0d%0AX:%20y HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "method of 100 KB": (b"A" * 100_000 + b" / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "fragment in the target": (b"GET /pid#frag HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "control character in the target": (b"GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "tab in the target": (b"GET /a\tb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "DEL in the target": (b"GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "invalid method token": (b"G(T /pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "method with a slash": (b"GE/T /pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "malformed version": (b"GET /pid HTTP/1.x\r\nHost: a\r\n\r\n", 400),
    "lower-case version": (b"GET /pid http/1.1\r\nHost: a\r\n\r\n", 400),
    "two-digit minor version": (b"GET /pid HTTP/1.10\r\nHost: a\r\n\r\n", 400),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    # request-target forms (RFC 9112 3.2)
    "asterisk-form with GET": (b"GET * HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "absolute-form with another scheme": (b"GET ftp://a/pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "absolute-form with user information": (
        b"GET http://user:pw@a/pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "absolute-form with a port over 65535": (
        b"GET http://a:65536/pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "absolute-form without a host": (b"GET http:///pid HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    "authority-form with GET": (b"GET a:80 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    # protocols llhttp also parses
    "RTSP/1.0 request line": (b"GET /pid RTSP/1.0\r\nHost: a\r\n\r\n", 505),
    "RTSP/1.1 request line": (b"OPTIONS /pid RTSP/1.1\r\nHost: a\r\n\r\n", 505),
    "ICE/1.0 request line": (b"SOURCE /pid ICE/1.0\r\nHost: a\r\n\r\n", 505),
    # trailer section
    "too many trailer fields": (chunked(b"3\r\nabc\r\n0\r\n" + b"X-T: 1\r\n" * 101 + b"\r\n"), 431),
    "trailer field over the size limit": (
        chunked(b"3\r\nabc\r\n0\r\nX-T: " + b"v" * 8200 + b"\r\n\r\n"), 431),
    # versions, methods, expectations
    "HTTP/2.0": (b"GET /pid HTTP/2.0\r\nHost: a\r\n\r\n", 505),
    "HTTP/3.0": (b"GET /pid HTTP/3.0\r\nHost: a\r\n\r\n", 505),
    "HTTP/0.9 request": (b"GET /pid\r\n\r\n", 505),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "unknown method token": (b"FOO /pid HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    "lower-case method": (b"get /pid HTTP/1.1\r\nHost: a\r\n\r\n", 501),
    "CONNECT": (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", 501),
    "unknown expectation": (get_with(b"Expect: something-else\r\n"), 417),
    "Upgrade with a body": (b"POST /echo HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
                            b"Upgrade: websocket\r\nContent-Length: 3\r\n\r\nabc", 400),
}


@pytest.mark.parametrize("name", sorted(BAD_REQUESTS))
def test_bad_request_is_refused_and_closed(server, name):
    data, status = BAD_REQUESTS[name]
    pid = request(server.port, "GET", "/pid").text
    calls = request(server.port, "GET", "/calls").text
    with Client(server.port) as client:
        client.send(data)
        response = client.read_response()
        assert response.status == status, response.text
        assert response.header("connection") == "close"
        assert response.header("content-length") == str(len(response.body))
        assert client.closed_by_server(), "connection left open after a framing error"
    # the app was never called, and the same worker still answers
    assert request(server.port, "GET", "/calls").text == calls
    after = request(server.port, "GET", "/pid")
    assert after.status == 200 and after.text == pid


def test_error_body_says_why(server):
    response = request(server.port, "GET", "/pid", host=None)
    assert response.status == 400
    assert "Host" in response.text


def test_request_line_over_limit_is_414(server):
    pid = request(server.port, "GET", "/pid").text
    response = request(server.port, "GET", "/" + "a" * 8190)
    assert response.status == 414
    assert request(server.port, "GET", "/pid").text == pid


def test_request_line_at_limit_is_accepted(server):
    # 8190 bytes by default (RFC 9112 3 recommends at least 8000): "GET " + target + " HTTP/1.1"
    target = "/pid?" + "a" * (8190 - len("GET  HTTP/1.1") - len("/pid?"))
    assert len(f"GET {target} HTTP/1.1") == 8190
    assert request(server.port, "GET", target).status == 200


def test_http_1_2_is_processed_as_1_1(server):
    """RFC 9110 2.5: a higher minor version is processed as the highest one supported."""
    with Client(server.port) as client:
        client.send(b"GET /environ HTTP/1.2\r\nHost: a\r\n\r\n")
        response = client.read_response()
        assert response.status == 200
        assert '"SERVER_PROTOCOL": "HTTP/1.1"' in response.text


def test_too_many_fields_is_431(server):
    headers = [(f"X-F{i}", "v") for i in range(100)]
    assert request(server.port, "GET", "/pid", headers=headers).status == 431
    assert request(server.port, "GET", "/pid", headers=headers[:99]).status == 200


def test_field_over_size_limit_is_431(server):
    assert request(server.port, "GET", "/pid", headers=[("X-Big", "v" * 8190)]).status == 431
    # the whole field line counts, as gunicorn counts it: "X-Big: " + value + CRLF = 8190
    assert request(server.port, "GET", "/pid", headers=[("X-Big", "v" * (8190 - 9))]).status == 200
    assert request(server.port, "GET", "/pid", headers=[("X-Big", "v" * (8190 - 8))]).status == 431


def test_head_limit_counts_only_the_head():
    """A body or pipelined requests that arrive with a small head do not count as head."""
    from helpers import Server

    with Server(["-w", "1", "--limit-request-fields", "5", "--limit-request-field-size", "100"]) as srv:
        response = request(srv.port, "POST", "/echo", body=b"x" * 10_000)
        assert response.status == 200 and len(response.body) == 10_000
        # bodies far larger than the head limit, in reads far larger than it
        response = request(srv.port, "POST", "/echo", body=b"x" * 300_000)
        assert response.status == 200 and len(response.body) == 300_000
        with Client(srv.port, timeout=10) as client:
            client.send(chunked(b""))
            for _ in range(20):
                client.send(b"4000\r\n" + b"y" * 0x4000 + b"\r\n")
            client.send(b"0\r\n\r\n")
            response = client.read_response()
            assert response.status == 200 and len(response.body) == 20 * 0x4000
        # a head split over two reads, the second also carrying a body or many requests
        with Client(srv.port, timeout=10) as client:
            client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\n")
            time.sleep(0.2)
            client.send(b"Content-Length: 10000\r\n\r\n" + b"x" * 10_000)
            response = client.read_response()
            assert response.status == 200 and len(response.body) == 10_000
        with Client(srv.port, timeout=10) as client:
            client.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n")
            time.sleep(0.2)
            client.send(b"\r\n" + b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n" * 2000)
            assert all(client.read_response().status == 200 for _ in range(2001))
        with Client(srv.port) as client:
            client.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n" * 300)
            assert all(client.read_response().status == 200 for _ in range(300))


def test_endless_header_is_cut(server):
    """A header that never ends is refused once it passes the limits, not buffered forever."""
    with Client(server.port, timeout=10) as client:
        client.send(b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Endless: ")
        try:
            for _ in range(2000):
                client.send(b"x" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = client.read_response()
        assert response.status == 431


def test_endless_trailer_is_cut(server):
    """A trailer field that never ends is refused like an endless header, and the worker
    answers the next request."""
    pid = request(server.port, "GET", "/pid").text
    with Client(server.port, timeout=10) as client:
        client.send(chunked(b"3\r\nabc\r\n0\r\nX-Endless: "))
        try:
            for _ in range(2000):
                client.send(b"x" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = client.read_response()
        assert response.status == 431, response.text
    assert request(server.port, "GET", "/pid").text == pid


def test_endless_chunk_extension_is_cut(server):
    """A chunk line is bounded like a field line (--limit-request-field-size): 400."""
    with Client(server.port, timeout=10) as client:
        client.send(chunked(b"3;ext="))
        try:
            for _ in range(2000):
                client.send(b"x" * 1024)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert client.read_response().status == 400


def test_error_answer_to_head_has_no_body(server):
    """A HEAD request that the server refuses is answered with a head only (RFC 9110 9.3.2)."""
    with Client(server.port) as client:
        client.send(b"HEAD /pid HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        response = client.read_response("HEAD")
        assert response.status == 400
        assert int(response.header("content-length")) > 0
        assert client.closed_by_server()
        assert client.buffer == b"", "a body followed the head of a HEAD response"


def test_rtsp_line_after_pipelined_requests_is_505(gevent_server):
    with Client(gevent_server.port) as client:
        client.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n" * 3
                    + b"GET /pid RTSP/1.0\r\nHost: a\r\n\r\n")
        assert [client.read_response().status for _ in range(4)] == [200, 200, 200, 505]
        assert client.closed_by_server()


def test_too_long_line_answer_to_head_has_no_body(server):
    with Client(server.port) as client:
        client.send(b"HEAD /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n")
        response = client.read_response("HEAD")
        assert response.status == 414
        assert client.closed_by_server()
        assert client.buffer == b"", "a body followed the head of a HEAD response"


def test_other_request_target_forms_reach_the_app(server):
    calls = int(request(server.port, "GET", "/calls").text)
    assert request(server.port, "OPTIONS", "*").status == 404  # the test app knows no "*"
    assert int(request(server.port, "GET", "/calls").text) == calls + 1
    response = request(server.port, "GET", "HTTP://[::1]:8081/pid")
    assert response.status == 200


def test_underscore_header_is_dropped(server):
    response = request(server.port, "GET", "/environ",
                       headers=[("X_Forwarded_For", "6.6.6.6"), ("X-Forwarded-For", "1.2.3.4"),
                                ("X_Custom", "dropped")])
    environ = response.text
    assert '"HTTP_X_FORWARDED_FOR": "1.2.3.4"' in environ
    assert "6.6.6.6" not in environ and "dropped" not in environ


def test_underscore_header_cannot_pose_as_dashed_one(server):
    response = request(server.port, "GET", "/environ", headers=[("X_Forwarded_For", "6.6.6.6")])
    assert "HTTP_X_FORWARDED_FOR" not in response.text


def test_error_after_pipelined_good_request(server):
    """The requests before a bad one are answered in order; then the error; then close."""
    with Client(server.port) as client:
        client.send(b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n"
                    b"GET /pid HTTP/1.1\r\nHost: a\r\nX-Bad : 1\r\n\r\n")
        first = client.read_response()
        assert first.status == 200
        if server.worker_class == "sync":
            # the sync worker answers one request per connection
            assert first.header("connection") == "close"
        else:
            second = client.read_response()
            assert second.status == 400
        assert client.closed_by_server()


@pytest.mark.parametrize("data", [
    b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc",
    chunked(b"5\r\nab"),
    chunked(b"3\r\nabc\r\n"),
], ids=["content-length", "chunked mid-chunk", "chunked before last chunk"])
def test_truncated_body_is_refused(server, data):
    calls = request(server.port, "GET", "/calls").text
    with Client(server.port) as client:
        # corked, so that the bytes and the end of the stream arrive together
        client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        client.send(data)
        client.sock.shutdown(socket.SHUT_WR)  # the body will never be complete
        response = client.read_response()
        assert response.status == 400
        assert client.closed_by_server()
    assert request(server.port, "GET", "/calls").text == calls


def test_body_cut_while_the_app_reads_it(server):
    """The app already runs when the client goes: wsgi.input raises, the answer is 400."""
    with Client(server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.3)
        client.sock.shutdown(socket.SHUT_WR)
        response = client.read_response()
        assert response.status == 400
        assert "closed the connection" in response.text
        assert client.closed_by_server()


def test_leading_empty_line_is_ignored(server):
    """RFC 9112 2.2: a server SHOULD ignore at least one empty line before the request line."""
    response = Client(server.port)
    response.send(b"\r\nGET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
    assert response.read_response().status == 200
    response.close()


def test_trailing_whitespace_in_values_is_removed(server):
    response = request(server.port, "GET", "/environ", headers=[("X-Pad", "value \t ")])
    assert '"HTTP_X_PAD": "value"' in response.text
