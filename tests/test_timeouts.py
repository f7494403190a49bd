"""Slow and idle clients: head deadline, keep-alive idle timeout, body stall timeout."""

import signal
import time

import pytest

from helpers import Client, Server, request

TIMEOUTS = ["--header-timeout", "1", "--keep-alive", "1", "--body-timeout", "1"]


@pytest.fixture(scope="module", params=["gevent", "sync"])
def short_server(request):
    with Server(["-k", request.param, "-w", "1"] + TIMEOUTS) as srv:
        srv.worker_class = request.param
        yield srv


def test_slow_head_gets_408(short_server):
    with Client(short_server.port) as client:
        started = time.monotonic()
        client.send(b"GET / HTTP/1.1\r\n")
        for _ in range(5):  # trickles in, but the whole head never arrives in time
            time.sleep(0.3)
            try:
                client.send(b"X-Slow: 1\r\n")
            except OSError:
                break
        response = client.read_response()
        assert response.status == 408
        assert 0.9 < time.monotonic() - started < 3.0
        assert client.closed_by_server()


def test_silent_connection_is_closed_without_a_response(short_server):
    with Client(short_server.port) as client:
        started = time.monotonic()
        assert client.closed_by_server(timeout=4)
        assert client.buffer == b""
        assert 0.9 < time.monotonic() - started < 3.0


def test_idle_keepalive_connection_is_closed(gevent_short_server):
    with Client(gevent_short_server.port) as client:
        client.request("GET", "/")
        assert client.read_response().status == 200
        started = time.monotonic()
        assert client.closed_by_server(timeout=4)
        assert client.buffer == b""
        assert 0.9 < time.monotonic() - started < 3.0


def test_keepalive_connection_in_use_stays_open(gevent_short_server):
    with Client(gevent_short_server.port) as client:
        for _ in range(6):  # 6 x 0.4 s: longer than the 1 s idle timeout in total
            client.request("GET", "/")
            assert client.read_response().status == 200
            time.sleep(0.4)


def test_stalled_body_ends_the_request(short_server):
    with Client(short_server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
        started = time.monotonic()
        response = client.read_response()
        assert response.status == 408
        assert 0.9 < time.monotonic() - started < 3.0
        assert client.closed_by_server()


def test_slow_but_moving_body_is_fine(short_server):
    with Client(short_server.port) as client:
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
        for part in (b"ab", b"cd", b"ef"):
            time.sleep(0.6)  # 1.8 s in total, each pause under the 1 s stall limit
            client.send(part)
        assert client.read_response().body == b"abcdef"


def test_slow_clients_do_not_slow_others(gevent_short_server):
    """Fifty clients stuck mid-head and mid-body; other requests are still answered at once."""
    stuck = []
    try:
        for _ in range(25):
            head = Client(gevent_short_server.port)
            head.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
            body = Client(gevent_short_server.port)
            body.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nx")
            stuck += [head, body]
        for _ in range(20):
            started = time.monotonic()
            assert request(gevent_short_server.port, "GET", "/").status == 200
            assert time.monotonic() - started < 0.2
    finally:
        for client in stuck:
            client.close()


def test_default_head_deadline_is_not_short():
    """The default head deadline (10 s) leaves a slow client more than the short one above."""
    with Server(["-w", "1"]) as srv, Client(srv.port) as client:
        client.send(b"GET / HTTP/1.1\r\n")
        assert not client.closed_by_server(timeout=1.5)
        client.send(b"Host: a\r\n\r\n")
        assert client.read_response().status == 200


@pytest.fixture(scope="module")
def gevent_short_server():
    with Server(["-k", "gevent", "-w", "1"] + TIMEOUTS) as srv:
        yield srv


@pytest.mark.parametrize("how", ["term", "keep-alive"])
def test_request_that_arrives_while_the_loop_is_blocked_is_answered(how):
    """A request that arrives on an idle connection while another request holds the event loop
    is there when the loop resumes, past the idle deadline: it is answered, not reset (with
    Connection: close when the worker is stopping). The idle deadline is 1 s from the TERM (the
    graceful stop's grace for idle connections), or --keep-alive 1."""
    args = ["-k", "gevent", "-w", "1", "--graceful-timeout", "10"]
    if how == "keep-alive":
        args += ["--keep-alive", "1"]
    with Server(args) as srv, Client(srv.port) as blocker, Client(srv.port) as idle:
        for client in (blocker, idle):
            client.request("GET", "/")
            assert client.read_response().status == 200
        if how == "term":
            srv.signal(signal.SIGTERM)
        time.sleep(0.6)
        blocker.request("GET", "/spin?1")  # holds the event loop for 1 s
        time.sleep(0.3)
        idle.request("GET", "/")  # arrives before the idle deadline, read after it
        assert blocker.read_response().body == b"spun"
        response = idle.read_response()
        assert response.status == 200 and response.body == b"hello"
        assert response.header("connection") == ("close" if how == "term" else None)
