"""HTTP/1.1 on the wire: keep-alive, pipelining, chunked bodies, 100-continue, HEAD, framing."""

import email.utils
import json
import time
from contextlib import nullcontext

import pytest

from helpers import Client, request

# -- keep-alive ---------------------------------------------------------------------------

def test_http11_keeps_the_connection_open(gevent_server):
    with Client(gevent_server.port) as client:
        pids = set()
        for _ in range(5):
            client.request("GET", "/pid")
            response = client.read_response()
            assert response.status == 200
            assert response.header("connection") is None
            pids.add(response.text)
        assert len(pids) == 1


def test_http10_closes_by_default(server):
    with Client(server.port) as client:
        client.request("GET", "/pid", version="HTTP/1.0", host=None)
        response = client.read_response()
        assert response.status == 200
        assert response.header("connection") == "close"
        assert client.closed_by_server()


def test_http10_keep_alive_when_asked(gevent_server):
    with Client(gevent_server.port) as client:
        for _ in range(3):
            client.request("GET", "/", headers=[("Connection", "keep-alive")], version="HTTP/1.0",
                           host=None)
            response = client.read_response()
            assert response.status == 200
            assert response.header("connection") == "keep-alive"
        assert not client.closed_by_server(timeout=0.3)


def test_http10_without_content_length_closes_to_end_the_body(gevent_server):
    with Client(gevent_server.port) as client:
        client.request("GET", "/stream", headers=[("Connection", "keep-alive")],
                       version="HTTP/1.0", host=None)
        response = client.read_response()
        assert response.header("transfer-encoding") is None
        assert response.header("connection") == "close"
        assert response.body == b"one,two,three"


def test_client_connection_close_is_honoured(server):
    with Client(server.port) as client:
        client.request("GET", "/", headers=[("Connection", "close")])
        response = client.read_response()
        assert response.header("connection") == "close"
        assert client.closed_by_server()


def test_app_connection_close_is_honoured(server):
    with Client(server.port) as client:
        client.request("GET", "/connection-close")
        response = client.read_response()
        assert response.header_all("connection") == ["close"]
        assert response.body == b"bye"
        assert client.closed_by_server()


def test_sync_worker_closes_after_each_response():
    from helpers import Server

    with Server(["-k", "sync", "-w", "1"]) as srv, Client(srv.port) as client:
        client.request("GET", "/")
        assert client.read_response().header("connection") == "close"
        assert client.closed_by_server()


def test_keepalive_zero_closes_every_connection():
    from helpers import Server

    with Server(["-k", "gevent", "-w", "1", "--keep-alive", "0"]) as srv, Client(srv.port) as client:
        client.request("GET", "/")
        assert client.read_response().header("connection") == "close"
        assert client.closed_by_server()


# -- pipelining ---------------------------------------------------------------------------

PIPELINED = (b"GET /sleep?0.3 HTTP/1.1\r\nHost: a\r\n\r\n"
             b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nfirst"
             b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n"
             b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"6\r\nsecond\r\n0\r\n\r\n"
             b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"
             b"GET /stream HTTP/1.1\r\nHost: a\r\n\r\n")


def test_pipelined_responses_come_in_request_order(gevent_server):
    with Client(gevent_server.port) as client:
        client.send(PIPELINED)
        assert client.read_response().body == b"slept"
        assert client.read_response().body == b"first"
        assert client.read_response().body.isdigit()
        assert client.read_response().body == b"second"
        head = client.read_response("HEAD")
        assert head.header("content-length") == "5" and head.body == b""
        assert client.read_response().body == b"one,two,three"


def test_pipelined_requests_sent_byte_by_byte(gevent_server):
    data = (b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer-Field: x\r\n\r\n"
            b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
    with Client(gevent_server.port) as client:
        for i in range(len(data)):
            client.send(data[i:i + 1])
        assert client.read_response().body == b"abcde"
        assert client.read_response().body.isdigit()


# -- request bodies -----------------------------------------------------------------------

def test_content_length_body(server):
    assert request(server.port, "POST", "/echo", body=b"hello body").body == b"hello body"


def test_chunked_request_body(server):
    with Client(server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"4\r\nWiki\r\n5;name=value\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n"
                    b"0\r\n\r\n")
        assert client.read_response().body == b"Wikipedia in\r\n\r\nchunks."


def test_chunked_body_trailers_are_not_headers(gevent_server):
    with Client(gevent_server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"3\r\nabc\r\n0\r\nX-Smuggled: 1\r\n\r\n"
                    b"GET /environ HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.read_response().body == b"abc"
        environ = json.loads(client.read_response().body)
        assert "HTTP_X_SMUGGLED" not in environ


def test_large_body_streams_in(server):
    body = bytes(range(256)) * 4096  # 1 MiB
    response = request(server.port, "POST", "/echo", body=body, timeout=20)
    assert response.body == body


def test_chunked_body_sent_slowly(server):
    with Client(server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"3\r\nabc\r\n", b"3\r\ndef\r\n", b"0\r\n\r\n"):
            time.sleep(0.05)
            client.send(part)
        assert client.read_response().body == b"abcdef"


# -- Expect: 100-continue -----------------------------------------------------------------

def test_100_continue_sent_when_the_app_reads(server):
    with Client(server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        interim = client.read_response()
        assert interim.status == 100
        client.send(b"hello")
        final = client.read_response()
        assert final.status == 200 and final.body == b"hello"


def test_no_100_continue_when_the_app_does_not_read(server):
    with Client(server.port) as client:
        client.send(b"POST /ignore-body HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                    b"Expect: 100-continue\r\n\r\n")
        response = client.read_response()
        assert response.status == 200 and response.body == b"ignored"
        # the body may still come: the connection cannot be reused safely
        assert response.header("connection") == "close"


def test_no_100_continue_for_http10(gevent_server):
    with Client(gevent_server.port) as client:
        client.send(b"POST /echo HTTP/1.0\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi")
        response = client.read_response()
        assert response.status == 200 and response.body == b"hi"


@pytest.mark.parametrize("expect", [b"100-continue, ", b"100-CONTINUE,100-continue"])
def test_100_continue_in_a_list(server, expect):
    with Client(server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                    b"Expect: " + expect + b"\r\n\r\n")
        assert client.read_response().status == 100
        client.send(b"hello")
        assert client.read_response().body == b"hello"


def test_empty_expect_is_no_expectation(server):
    with Client(server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect:\r\n\r\nhi")
        response = client.read_response()
        assert response.status == 200 and response.body == b"hi"


def test_no_100_continue_when_body_already_sent(server):
    with Client(server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n"
                    b"Expect: 100-continue\r\n\r\nhi")
        response = client.read_response()
        assert response.status == 200 and response.body == b"hi"


# -- HEAD and framing ---------------------------------------------------------------------

def test_head_has_get_headers_and_no_body(server):
    get = request(server.port, "GET", "/")
    with Client(server.port) as client:
        client.request("HEAD", "/")
        head = client.read_response("HEAD")
        assert head.status == 200
        assert head.header("content-length") == get.header("content-length")
        assert head.header("content-type") == get.header("content-type")
        if server.worker_class == "gevent":
            # nothing but the head came: the next response starts right after it
            client.request("GET", "/")
            assert client.read_response().body == b"hello"


def test_head_of_streamed_response(gevent_server):
    with Client(gevent_server.port) as client:
        client.request("HEAD", "/stream")
        head = client.read_response("HEAD")
        assert head.status == 200 and head.header("transfer-encoding") is None
        client.request("GET", "/pid")
        assert client.read_response().body.isdigit()


def test_app_content_length_is_used(server):
    response = request(server.port, "GET", "/stream-cl")
    assert response.header("content-length") == "11"
    assert response.body == b"one,two,thr"


def test_chunked_response_when_length_unknown(server):
    response = request(server.port, "GET", "/stream")
    assert response.chunked and response.body == b"one,two,three"


def test_list_response_gets_a_content_length(server):
    response = request(server.port, "GET", "/list-no-cl")
    assert response.header("content-length") == "3" and response.body == b"abc"


def test_empty_response_has_zero_length(server):
    response = request(server.port, "GET", "/empty")
    assert response.header("content-length") == "0" and response.body == b""


@pytest.mark.parametrize("code", ["204", "304"])
def test_no_body_for_204_304(gevent_server, code):
    with Client(gevent_server.port) as client:
        client.request("GET", f"/status?{code}")
        response = client.read_response()
        assert response.status == int(code)
        assert response.header("transfer-encoding") is None
        if code != "304":
            assert response.header("content-length") is None
        else:
            assert response.header("content-length") == "4"
        client.request("GET", "/pid")  # nothing of the app's body was written in between
        assert client.read_response().body.isdigit()


@pytest.mark.parametrize("code", ["100", "103"])
def test_1xx_status_from_the_app_is_refused(gevent_server, code):
    """A 1xx is never a final response: sent as one, the client would take the next response
    for this request's."""
    with Client(gevent_server.port) as client:
        client.request("GET", f"/status?{code}")
        assert client.read_response().status == 500
    gevent_server.wait_for_log("a 1xx status cannot be the response")


def test_head_of_a_streamed_flask_response_has_no_length():
    """Flask (werkzeug) returns no body for HEAD: the server must not say Content-Length: 0
    where GET sends a body (RFC 9110 8.6)."""
    from helpers import Server

    with Server(["-w", "1"], app="flask_app:app") as srv, Client(srv.port) as client:
        client.request("HEAD", "/stream")
        head = client.read_response("HEAD")
        assert head.status == 200
        assert head.header("content-length") is None
        client.request("GET", "/stream")
        assert client.read_response().body.startswith(b"line 0")


def test_body_longer_than_content_length_is_cut(gevent_server):
    with Client(gevent_server.port) as client:
        client.request("GET", "/too-long")
        response = client.read_response()
        assert response.body == b"abc"
        assert client.closed_by_server()


def test_body_shorter_than_content_length_closes(gevent_server):
    with Client(gevent_server.port) as client:
        client.request("GET", "/too-short")
        head = client._read_until(b"\r\n\r\n")
        assert b"Content-Length: 10" in head
        assert client.closed_by_server()
        assert client.buffer == b"abc"
    gevent_server.wait_for_log("fewer than its Content-Length")


def test_app_hop_by_hop_headers_are_replaced(server):
    response = request(server.port, "GET", "/hop")
    assert response.header("keep-alive") is None
    assert response.header_all("transfer-encoding") in ([], ["chunked"])
    assert response.body == b"xy"


def test_date_and_server_headers(server):
    response = request(server.port, "GET", "/")
    date = response.header("date")
    assert date and email.utils.parsedate_to_datetime(date).tzname() == "UTC"
    assert abs(email.utils.parsedate_to_datetime(date).timestamp() - time.time()) < 5
    assert response.header("server") == "geventserve"


# -- unread bodies ------------------------------------------------------------------------

def test_unread_body_is_drained_before_the_next_request(gevent_server):
    with Client(gevent_server.port) as client:
        client.request("POST", "/ignore-body", body=b"x" * 50000)
        assert client.read_response().body == b"ignored"
        client.request("GET", "/pid")
        assert client.read_response().body.isdigit()


def test_partly_read_chunked_body_is_drained(gevent_server):
    with Client(gevent_server.port) as client:
        client.send(b"POST /read-some?2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nabcde\r\n0\r\n\r\nGET /pid HTTP/1.1\r\nHost: a\r\n\r\n")
        assert client.read_response().body == b"read some"
        assert client.read_response().body.isdigit()


@pytest.mark.parametrize("body", [
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    b"Content-Length: 10\r\n\r\nhello",
], ids=["chunked, never ends", "content-length, short"])
def test_unread_body_that_does_not_come_is_not_waited_for(server, body):
    """The app answers without reading a body whose rest has not come (and may never come):
    the answer says Connection: close and the server ends the connection (gently) instead of
    waiting for the rest up to --body-timeout. The client is told at once (EOF); it may still
    send, and the server reads that for a moment before the close."""
    with Client(server.port, timeout=10) as client:
        client.send(b"POST /ignore-body HTTP/1.1\r\nHost: a\r\n" + body)
        response = client.read_response()
        assert response.status == 200 and response.body == b"ignored"
        assert response.header("connection") == "close"
        assert client.closed_by_server(timeout=3), "the server waited for the rest of the body"


def test_unread_large_upload_gets_its_response_not_a_reset(server):
    """The app answers without reading a 64 MB upload (a 401, a 413): a client that sends it
    all before it reads must get that response, not a connection reset."""
    with Client(server.port, timeout=20) as client:
        client.send(b"POST /ignore-body HTTP/1.1\r\nHost: a\r\nContent-Length: 64000000\r\n\r\n"
                    + b"x" * 64_000_000)
        response = client.read_response()
        assert response.status == 200 and response.body == b"ignored"
        assert response.header("connection") == "close"


def test_huge_unread_body_closes_instead_of_draining(gevent_server):
    with Client(gevent_server.port) as client:
        client.send(b"POST /ignore-body HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n"
                    + b"x" * 1000)
        response = client.read_response()
        assert response.body == b"ignored"
        assert response.header("connection") == "close"
        assert client.closed_by_server()


def test_linger_outlasts_a_pause_in_the_upload(server):
    """A client that pauses in an upload the server will not read, then sends more before it
    reads the answer, still gets the whole answer: a close after a short quiet spell would
    reset the connection when the rest arrives, and throw away what is still unsent."""
    size = 1_000_000  # more than the client's receive window: most of it waits in the server
    with Client(server.port, timeout=10) as client:
        client.send(f"POST /file?{size} HTTP/1.1\r\nHost: a\r\n"
                    "Content-Length: 10000000\r\n\r\n".encode() + b"x" * 100_000)
        time.sleep(0.4)  # the answer has gone out; the client is busy elsewhere
        client.send(b"x" * 100_000)
        response = client.read_response()
        assert response.status == 200 and response.header("connection") == "close"
        assert len(response.body) == size


@pytest.mark.parametrize("closing", ["request", "keepalive-off"])
def test_closing_with_more_input_pending_lingers(server, closing):
    """When the server closes after an answer while the client has sent more (pipelined
    requests after a Connection: close one, or with keep-alive off), it closes gently: an
    abrupt close with unread input sends a reset, which throws away the end of the answer
    still in the server's send buffer (RFC 9112 9.6)."""
    from helpers import Server

    size = 8_000_000  # far more than the socket buffers hold
    first = f"GET /file?{size} HTTP/1.1\r\nHost: a\r\n".encode()
    pipelined = b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n" * 6000  # about 180 kB
    if closing == "request":
        port, first, context = server.port, first + b"Connection: close\r\n\r\n", nullcontext()
    else:
        context, first = Server(["-w", "1", "--keep-alive", "0"]), first + b"\r\n"
    with context as srv:
        if srv is not None:
            port = srv.port
        with Client(port, timeout=10) as client:
            client.send(first + pipelined)
            time.sleep(0.5)  # the server has filled the buffers and waits for the client
            response = client.read_response()
            assert response.status == 200 and response.header("connection") == "close"
            assert len(response.body) == size
