"""Running in a fleet: the health paths answered by the worker itself, --drain-delay on TERM (readiness
503 at once, still serving with Connection: close, then the graceful stop; a second TERM or INT
cut it short). Their bad values are in test_settings.py."""

import signal
import threading
import time

import pytest

from helpers import Client, Server, request, wait_until

HEALTH = ["--liveness-path", "/livez", "--readiness-path", "/readyz"]


def calls(port):
    return int(request(port, "GET", "/calls").text)


@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_health_paths_are_answered_without_the_app(worker_class, tmp_path):
    access = tmp_path / "access.log"
    with Server(["-k", worker_class, "-w", "1", *HEALTH, "--access-logfile", str(access)]) as srv:
        before = calls(srv.port)
        for path, body in (("/livez", b"alive\n"), ("/readyz", b"ready\n")):
            response = request(srv.port, "GET", path)
            assert (response.status, response.body) == (200, body)
            assert response.header("cache-control") == "no-store"
            head = request(srv.port, "HEAD", path)
            assert head.status == 200 and head.body == b""
            assert head.header("content-length") == str(len(body))
        assert request(srv.port, "GET", "/readyz?full").status == 404  # the exact target only
        assert calls(srv.port) == before + 1  # only /readyz?full reached the app
        request(srv.port, "GET", "/")
        wait_until(lambda: "GET / HTTP/1.1" in access.read_text(), message="access log")
    text = access.read_text()
    assert "/livez" not in text and "/readyz " not in text  # health checks stay out of it


def test_health_checks_on_a_keep_alive_connection_and_in_the_access_log(tmp_path):
    access = tmp_path / "access.log"
    with Server(["-w", "1", *HEALTH, "--log-health-checks", "--access-logfile", str(access),
                 "--access-logformat", "%(h)s %(m)s %(U)s %(s)s %(b)s"]) as srv, \
            Client(srv.port) as client:
        for _ in range(3):
            client.request("GET", "/readyz")
            response = client.read_response()
            assert response.status == 200 and response.header("connection") is None
        client.request("GET", "/")
        assert client.read_response().body == b"hello"  # the same connection goes on
        wait_until(lambda: access.read_text().count("127.0.0.1 GET /readyz 200 6") == 3,
                   message="three health checks logged")


def test_without_health_paths_the_app_answers():
    with Server(["-w", "1"]) as srv:
        assert request(srv.port, "GET", "/readyz").status == 404


def _statuses(port, path, seconds, source=None):
    """GET ``path`` on a new connection every 50 ms for ``seconds``: (time, status or error,
    Connection header) each."""
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.monotonic()
        try:
            response = request(port, "GET", path, timeout=3)
            seen.append((started, response.status, response.header("connection")))
        except ConnectionRefusedError:
            seen.append((started, "refused", None))
        except (OSError, EOFError) as exc:
            seen.append((started, repr(exc), None))
        time.sleep(0.05)
    return seen


@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_term_with_a_drain_delay(worker_class):
    """TERM: readiness is 503 at once (liveness stays 200), the app is still served, every
    response with Connection: close, for the 2 s of the delay; then the graceful stop: new
    connections refused, exit 0."""
    with Server(["-k", worker_class, "-w", "2", *HEALTH, "--drain-delay", "2"]) as srv:
        assert request(srv.port, "GET", "/readyz").status == 200
        termed = time.monotonic()
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("draining for 2s")  # the moment the drain begins
        ready = _statuses(srv.port, "/readyz", 1.2)
        alive = request(srv.port, "GET", "/livez")
        app = _statuses(srv.port, "/pid", 0.5)
        outcomes = _statuses(srv.port, "/pid", 2.5)
        assert srv.wait(15) == 0
        stopped = time.monotonic()
    assert [status for _, status, _ in ready] == [503] * len(ready), ready
    assert alive.status == 200
    assert all(status == 200 for _, status, _ in app), app
    if worker_class == "gevent":  # (sync closes every connection anyway)
        assert all(header == "close" for _, status, header in app), app
    served = [t - termed for t, status, _ in outcomes if status == 200]
    refused = [t - termed for t, status, _ in outcomes if status == "refused"]
    assert {status for _, status, _ in outcomes} <= {200, "refused"}, outcomes
    assert refused and min(refused) > 1.8, outcomes  # accepting all through the delay
    assert served and max(served) < min(refused)
    assert stopped - termed > 2.0
    assert "draining for 2s" in srv.log


def test_keep_alive_connection_is_closed_after_its_next_response_in_a_drain():
    with Server(["-w", "1", *HEALTH, "--drain-delay", "3"]) as srv, Client(srv.port) as pooled:
        pooled.request("GET", "/")
        assert pooled.read_response().header("connection") is None
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("draining for 3s")
        time.sleep(0.8)  # the worker has seen the drain; the connection waits in a pool
        pooled.request("POST", "/echo", body=b"not lost")
        response = pooled.read_response()
        assert response.body == b"not lost"
        assert response.header("connection") == "close"
        assert pooled.closed_by_server()
        srv.signal(signal.SIGTERM)  # the second TERM: no need to wait for the rest of it
        assert srv.wait(10) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["TERM", "INT"])
def test_second_signal_cuts_the_drain_short(sig):
    with Server(["-w", "1", *HEALTH, "--drain-delay", "30"]) as srv:
        client = Client(srv.port, timeout=15)
        client.request("GET", "/sleep?2")
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("draining for 30s")
        time.sleep(0.3)
        asked = time.monotonic()
        srv.signal(sig)
        if sig == signal.SIGTERM:  # a graceful stop: the request under way finishes
            assert client.read_response().body == b"slept"
        assert srv.wait(10) == 0
        assert time.monotonic() - asked < 5
        client.close()
    expected = "the drain delay is cut short" if sig == signal.SIGTERM else "INT (fast stop)"
    assert expected in srv.log


def test_readiness_is_503_in_a_graceful_stop_without_drain_delay():
    """A probe already on its way on an idle connection when TERM comes is answered 503
    (with Connection: close), as any request on its way is answered."""
    with Server(["-w", "1", *HEALTH]) as srv, Client(srv.port) as probe:
        probe.request("GET", "/readyz")
        assert probe.read_response().status == 200
        srv.signal(signal.SIGTERM)
        srv.wait_for_log("Handling signal: TERM")
        time.sleep(0.5)
        probe.request("GET", "/readyz")
        response = probe.read_response()
        assert (response.status, response.header("connection")) == (503, "close")
        assert srv.wait(10) == 0


def test_drain_under_load_loses_nothing():
    """Clients that follow Connection: close (reconnecting, and finding the port closed once
    the server stops) lose no request during the drain."""
    with Server(["-w", "2", *HEALTH, "--drain-delay", "1.5"]) as srv:
        failures, done = [], []

        def client_loop():
            while not done:
                try:
                    response = request(srv.port, "GET", "/pid", timeout=5)
                    if response.status != 200:
                        failures.append(response.status)
                except ConnectionRefusedError:
                    return  # stopped: a balancer would have moved on long before
                except (OSError, EOFError) as exc:
                    failures.append(repr(exc))

        threads = [threading.Thread(target=client_loop) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0
        done.append(True)
        for thread in threads:
            thread.join(10)
    assert failures == []
