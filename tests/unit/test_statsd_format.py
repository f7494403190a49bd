"""statsd in-process: gunicorn's datagram formats, prefix rule and log counters, sent over a real
unix datagram socketpair; the request path with statsd off is the access log's alone."""

import logging
import socket

import pytest

from geventserve import logs, statsd


@pytest.fixture
def pair():
    ours, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    receiver.settimeout(2)
    yield ours, receiver
    ours.close()
    receiver.close()


def received(receiver):
    packets = []
    receiver.settimeout(0.2)
    try:
        while True:
            packets.append(receiver.recv(4096).decode())
    except socket.timeout:
        return packets


@pytest.mark.parametrize("given,prefix", [
    ("", ""), ("myapp", "myapp."), ("myapp.", "myapp."), ("myapp...", "myapp."),
    ("shop.web", "shop.web."),
])
def test_prefix_ends_with_one_dot_as_gunicorn(given, prefix):
    assert statsd.prefix_of(given) == prefix


@pytest.mark.parametrize("text,target", [
    ("127.0.0.1:9125", ("127.0.0.1", 9125)), ("localhost", ("localhost", 8125)),
    ("[::1]:9125", ("::1", 9125)), ("[::1]", ("::1", 8125)), ("unix:/run/s.sock", "/run/s.sock"),
    ("unix:///run/s.sock", "/run/s.sock"),
])
def test_targets(text, target):
    assert statsd.parse_target(text) == target


@pytest.mark.parametrize("text", ["fd://3", "host:port", "", "[::1"])
def test_bad_targets(text):
    with pytest.raises(ValueError):
        statsd.parse_target(text)


def test_request_metrics_in_gunicorns_format(pair):
    ours, receiver = pair
    client = statsd.Client(ours, ours.send, "myapp", "env:test,team:a")
    client.request({}, "404 Not Found", 9, 1.0012345)
    client.request({}, "200 OK", 2, 0.0005)
    client.request({}, None, 0, 0.0)  # no status (the client went away first)
    client.workers(3)
    client.workers(3)  # unchanged: not sent again
    client.workers(2)
    tags = "|#env:test,team:a"
    assert received(receiver) == [
        f"myapp.gunicorn.request.duration:1001.234|ms{tags}",
        f"myapp.gunicorn.requests:1|c|@1.0{tags}",
        f"myapp.gunicorn.request.status.404:1|c|@1.0{tags}",
        f"myapp.gunicorn.request.duration:0.5|ms{tags}",
        f"myapp.gunicorn.requests:1|c|@1.0{tags}",
        f"myapp.gunicorn.request.status.200:1|c|@1.0{tags}",
        f"myapp.gunicorn.request.duration:0.0|ms{tags}",
        f"myapp.gunicorn.requests:1|c|@1.0{tags}",
        f"myapp.gunicorn.workers:3|g{tags}",
        f"myapp.gunicorn.workers:2|g{tags}",
    ]


def test_log_counters_by_level():
    ours, receiver = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    logger = logging.getLogger("geventserve-test.log-counters")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    counter = statsd.LogCounter(statsd.Client(ours, ours.send, "", ""))
    logger.addHandler(counter)
    try:
        logger.info("not counted")
        logger.warning("w")
        logger.error("e")
        try:
            raise RuntimeError("x")
        except RuntimeError:
            logger.exception("x")
        logger.critical("c")
        assert received(receiver) == [f"gunicorn.log.{name}:1|c|@1.0" for name in
                                      ("warning", "error", "exception", "critical")]
    finally:
        logger.removeHandler(counter)
        ours.close()
        receiver.close()


def test_a_full_receiver_drops_metrics_without_waiting(pair):
    ours, receiver = pair
    client = statsd.Client(ours, ours.send, "", "")
    for _ in range(10_000):  # far more than a unix datagram queue holds; a wait would hang here
        client.counter("gunicorn.requests")
    assert 0 < len(received(receiver)) < 10_000


def test_statsd_off_adds_nothing_per_request():
    statsd.configure(None, "", "")
    assert statsd.client is None
    assert statsd.request_path(None) is None
    assert statsd.request_path(logs.log_access) is logs.log_access
