"""A Connection (through the Service that builds it) driven over a socketpair, with a fake clock
and the gevent worker's deadline sweep run by hand: deadlines, keep-alive, pipelining, lingering,
and a deadline that passes while a request's bytes wait unread.

In-process with gevent's cooperative sockets and greenlets; the pytest process is not patched.
"""

from typing import List, Optional, Tuple

import gevent
import gevent.event
import pytest
from gevent import socket as gsocket

from geventserve.http.service import Service
from geventserve.settings import Config
from geventserve.workers.gevent import ReadinessOrder

KEEPALIVE, HEADER_TIMEOUT, BODY_TIMEOUT = 5.0, 10.0, 30.0


class FakeClock:
    """Monotonic seconds that pass only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/echo":
        body = environ["wsgi.input"].read()
    elif path == "/ignore-body":
        body = b"ignored"
    else:
        body = path.encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class Peer:
    """The client end of the socketpair, with a strict little response reader."""

    def __init__(self, sock) -> None:
        self.sock = sock
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def response(self) -> Tuple[int, List[Tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"closed before a response; got {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]]
        length = int(header(headers, "content-length") or 0)
        while len(self.buffer) < length:
            assert self._fill(), "closed within a body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, headers, body  # type: ignore[return-value]

    def closed(self) -> bool:
        """True once the server closed (EOF) with nothing more sent."""
        return not self._fill() and self.buffer == b""


def header(headers, name: str) -> Optional[str]:
    return next((v for k, v in headers if k.lower() == name), None)


class Served:
    """One connection served by a real Service (the gevent worker's way: a greenlet, deadlines
    kept by a sweep) with a fake clock."""

    def __init__(self, *args: str, readiness: Optional[ReadinessOrder] = None) -> None:
        config = Config()
        config.set("keepalive", KEEPALIVE, "test")
        config.set("header_timeout", HEADER_TIMEOUT, "test")
        config.set("body_timeout", BODY_TIMEOUT, "test")
        self.clock = FakeClock()
        self.service = Service(app, config, multiprocess=False, multithread=True,
                               current_task=gevent.getcurrent, readiness=readiness,
                               clock=self.clock)
        self.listener = gsocket.socket(gsocket.AF_UNIX, gsocket.SOCK_STREAM)
        self.service.add_listener(self.listener)
        server, client = gsocket.socketpair()
        client.settimeout(5)
        self.peer = Peer(client)
        self.task = gevent.spawn(self.service.serve, server, "", self.listener)
        gevent.sleep(0)  # the connection starts and waits for its first request

    @property
    def conn(self):
        return next(iter(self.service.connections))

    def until(self, predicate) -> None:
        """Let the event loop run until ``predicate()`` holds (at most 5 s)."""
        with gevent.Timeout(5):
            while not predicate():
                gevent.sleep(0.001)

    def sweep(self) -> None:
        """Run the deadline sweep from the event loop, as the gevent worker's timer does."""
        done = gevent.event.Event()

        def run() -> None:
            self.service.interrupt_expired()
            done.set()

        gevent.get_hub().loop.run_callback(run)
        assert done.wait(5)

    def expire(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.sweep()

    def ended(self, timeout: float = 5.0) -> bool:
        self.task.join(timeout)
        return self.task.dead

    def close(self) -> None:
        self.peer.sock.close()
        self.task.kill(block=True, timeout=5)
        self.listener.close()


@pytest.fixture
def served():
    served = Served()
    yield served
    served.close()


GET = b"GET /%s HTTP/1.1\r\nHost: a\r\n\r\n"


def test_keep_alive_serves_requests_in_turn(served):
    for name in (b"one", b"two", b"three"):
        served.peer.send(GET % name)
        status, headers, body = served.peer.response()
        assert (status, body) == (200, b"/" + name)
        assert header(headers, "connection") is None
    assert not served.task.dead


def test_pipelined_requests_are_answered_in_order(served):
    served.peer.send(GET % b"first"
                     + b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello"
                     + b"POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"3\r\nabc\r\n0\r\n\r\n"
                     + GET % b"last")
    assert [served.peer.response()[2] for _ in range(4)] == [b"/first", b"hello", b"abc", b"/last"]


def test_head_deadline_gets_408(served):
    served.peer.send(b"GET / HTTP/1.1\r\nHost: a\r\n")
    served.until(lambda: served.conn.parser.in_head)
    served.expire(HEADER_TIMEOUT - 1)
    assert not served.task.dead  # not yet
    served.expire(2)
    status, headers, body = served.peer.response()
    assert status == 408 and header(headers, "connection") == "close"
    served.peer.sock.close()  # the server lingers until the client is gone
    assert served.ended()


def test_idle_keep_alive_connection_is_closed(served):
    served.peer.send(GET % b"x")
    assert served.peer.response()[0] == 200
    served.expire(KEEPALIVE - 1)
    assert not served.task.dead
    served.expire(2)
    assert served.peer.closed()
    assert served.ended()


def test_silent_connection_ends_at_the_head_deadline_without_an_answer(served):
    served.expire(HEADER_TIMEOUT + 1)
    assert served.peer.closed()
    assert served.ended()


def test_stalled_body_ends_with_408(served):
    served.peer.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc")
    served.until(lambda: served.conn.request is not None and served.conn.deadline)
    served.expire(BODY_TIMEOUT - 1)
    assert not served.task.dead
    served.expire(2)
    status, headers, _ = served.peer.response()
    assert status == 408 and header(headers, "connection") == "close"


def test_body_moving_slowly_is_not_stalled(served):
    served.peer.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\nab")
    for part in (b"cd", b"ef"):
        before = served.conn.request.received if served.conn.request else 0
        served.until(lambda before=before: served.conn.request is not None
                     and served.conn.deadline and served.conn.request.received > before)
        served.expire(BODY_TIMEOUT - 1)  # each wait under the stall limit
        served.peer.send(part)
    assert served.peer.response()[2] == b"abcdef"


def test_linger_after_an_error_reads_until_the_client_is_done(served):
    """After an error answer the server reads and drops what the client still sends (a close
    with unread input would reset the connection and could destroy the answer), until the
    client closes."""
    served.peer.send(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\nmore input")
    status, headers, _ = served.peer.response()
    assert status == 400 and header(headers, "connection") == "close"
    assert served.peer.closed()  # the server is done sending (it shut down its side) ...
    for _ in range(3):
        served.peer.send(b"x" * 10_000)  # ... and takes what still comes
        gevent.sleep(0)
        assert not served.task.dead
    served.peer.sock.shutdown(gsocket.SHUT_WR)
    assert served.ended()


@pytest.mark.parametrize("readiness", [None, "order"], ids=["recv", "readiness order"])
def test_request_already_there_when_the_idle_deadline_passes_is_answered(readiness):
    """Fix B: the idle deadline passes (the event loop was held by another request) before the
    connection reads a request whose bytes have arrived: it is answered, not dropped."""
    served = Served(readiness=ReadinessOrder() if readiness else None)
    try:
        served.peer.send(GET % b"first")
        assert served.peer.response()[0] == 200
        served.peer.send(GET % b"second")  # arrives; the connection has not run since
        served.expire(KEEPALIVE + 1)
        status, headers, body = served.peer.response()
        assert (status, body) == (200, b"/second")
        assert header(headers, "connection") is None
    finally:
        served.close()


def test_request_already_there_when_the_worker_stops_is_answered_with_close(served):
    """Fix B, on a graceful stop: an idle connection gets a grace; a request that came within
    it, still unread when it passes, is answered with Connection: close."""
    served.peer.send(GET % b"first")
    assert served.peer.response()[0] == 200
    served.peer.send(GET % b"second")
    served.service.stop()
    served.expire(5)
    status, headers, body = served.peer.response()
    assert (status, body) == (200, b"/second")
    assert header(headers, "connection") == "close"
    assert served.peer.closed()


def test_idle_connection_ends_on_a_graceful_stop(served):
    served.peer.send(GET % b"first")
    assert served.peer.response()[0] == 200
    served.service.stop()
    served.expire(5)
    assert served.peer.closed()
    assert served.ended()


def test_head_completed_by_bytes_already_there_at_its_deadline_is_served(served):
    served.peer.send(b"GET /late HTTP/1.1\r\n")
    served.until(lambda: served.conn.parser.in_head)
    served.peer.send(b"Host: a\r\n\r\n")  # there, unread, when the deadline passes
    served.expire(HEADER_TIMEOUT + 1)
    assert served.peer.response()[2] == b"/late"


@pytest.mark.parametrize("body", [
    b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
    b"Content-Length: 10\r\n\r\nabc",
], ids=["chunked, no last chunk", "content-length, short"])
def test_unread_body_whose_rest_has_not_come_closes_at_once(served, body):
    """The application answers without reading a body that never ends: the answer says
    Connection: close and the connection ends after it (gently), without waiting for the rest
    of the body, which may never come."""
    served.peer.send(b"POST /ignore-body HTTP/1.1\r\nHost: a\r\n" + body)
    status, headers, payload = served.peer.response()
    assert (status, payload) == (200, b"ignored")
    assert header(headers, "connection") == "close"
    assert served.peer.closed()  # the server has shut its side down: no wait for the body
    served.peer.sock.shutdown(gsocket.SHUT_WR)
    assert served.ended()


def test_unread_body_already_there_is_dropped_and_the_connection_goes_on(served):
    served.peer.send(b"POST /ignore-body HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"5\r\nhello\r\n0\r\n\r\n" + GET % b"next")
    status, headers, payload = served.peer.response()
    assert (status, payload) == (200, b"ignored")
    assert header(headers, "connection") is None
    assert served.peer.response()[2] == b"/next"
