"""statsd as gunicorn sends it: a receiver in the test reads every datagram; the same requests
sent to gunicorn -k gevent with the same flags give the same metrics (names, types, counts, tags).
"""

import re
import signal
import socket
import time
from collections import Counter

from harness.ports import free_port
from harness.process import Process, server_env
from harness.servers import GUNICORN_BOOTED, gunicorn_command
from helpers import APPS, Client, Server, request, wait_until

TAGS = "env:test,team:a"
FLAGS = ["--statsd-prefix", "myapp", "--dogstatsd-tags", TAGS]
# (path, status): what both servers are sent
REQUESTS = [("/", 200), ("/missing", 404), ("/error-before", 500), ("/status?204", 204),
            ("/", 200)]
DATAGRAM = re.compile(r"^(?P<name>[\w.]+):(?P<value>-?[\d.]+)\|(?P<type>c|ms|g)(\|@1\.0)?"
                      r"(\|#(?P<tags>.*))?$")


class Receiver:
    """A statsd server's socket that keeps every datagram (UDP on loopback, or unix)."""

    def __init__(self, path=None):
        if path is None:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind(("127.0.0.1", 0))
            self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        else:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self.sock.bind(str(path))
            self.address = f"unix:{path}"
        self.packets = []

    def read(self, quiet=0.5):
        """Read until nothing comes for ``quiet`` seconds; every datagram so far."""
        self.sock.settimeout(quiet)
        try:
            while True:
                self.packets.append(self.sock.recv(65536).decode())
        except socket.timeout:
            return self.packets

    def close(self):
        self.sock.close()


def parsed(packets):
    """[(name, type, value, tags)] of the datagrams, each checked against gunicorn's format."""
    result = []
    for packet in packets:
        match = DATAGRAM.match(packet)
        assert match, packet
        result.append((match["name"], match["type"], match["value"], match["tags"]))
    return result


def comparable(metrics):
    """Timers by name and type only (durations differ), the rest with their values."""
    return Counter((name, kind, value if kind != "ms" else "-", tags)
                   for name, kind, value, tags in metrics)


def send_requests(port, receiver):
    """The metrics from the server's start (till it answers), and those of REQUESTS."""
    started = parsed(receiver.read())
    receiver.packets.clear()
    for path, status in REQUESTS:
        assert request(port, "GET", path).status == status, path
    return started, parsed(receiver.read())


def run_geventserve(receiver):
    with Server(["-w", "2", "--statsd-host", receiver.address] + FLAGS) as srv:
        return send_requests(srv.port, receiver)


def run_gunicorn(receiver):
    port = free_port()
    cmd = gunicorn_command(["-k", "gevent", "-w", "2", "-b", f"127.0.0.1:{port}",
                            "--statsd-host", receiver.address] + FLAGS, "wsgi_app:app")
    gunicorn = Process(cmd, name="gunicorn", cwd=APPS, env=server_env()).start()
    try:
        gunicorn.wait_for_log(GUNICORN_BOOTED, count=2, timeout=20)
        gunicorn.wait_answer(f"http://127.0.0.1:{port}/", timeout=20)
        return send_requests(port, receiver)
    finally:
        gunicorn.stop()


def test_the_same_metrics_as_gunicorn():
    ours_receiver, theirs_receiver = Receiver(), Receiver()
    try:
        ours_start, ours = run_geventserve(ours_receiver)
        theirs_start, theirs = run_gunicorn(theirs_receiver)
    finally:
        ours_receiver.close()
        theirs_receiver.close()
    gauge = ("myapp.gunicorn.workers", "g", "2", TAGS)
    assert gauge in comparable(ours_start) and gauge in comparable(theirs_start)
    assert comparable(ours) == comparable(theirs), (ours, theirs)
    counted = Counter(name for name, kind, _, _ in ours if kind == "c")
    assert counted["myapp.gunicorn.requests"] == len(REQUESTS)
    assert counted["myapp.gunicorn.request.status.200"] == 2
    assert counted["myapp.gunicorn.log.exception"] == 1  # /error-before
    timers = [float(value) for _, kind, value, _ in ours if kind == "ms"]
    assert len(timers) == len(REQUESTS) and all(0 <= t < 5000 for t in timers)


def test_unix_datagram_socket_without_prefix(tmp_path):
    receiver = Receiver(tmp_path / "statsd.sock")
    try:
        with Server(["-w", "1", "--statsd-host", receiver.address]) as srv:
            receiver.read()
            receiver.packets.clear()
            request(srv.port, "GET", "/missing")
            packets = receiver.read()
    finally:
        receiver.close()
    assert len(packets) == 3, packets
    assert re.fullmatch(r"gunicorn\.request\.duration:\d+\.\d+\|ms", packets[0]), packets
    assert packets[1:] == ["gunicorn.requests:1|c|@1.0", "gunicorn.request.status.404:1|c|@1.0"]


def test_a_receiver_that_never_reads_slows_nothing(tmp_path):
    """A unix datagram socket nobody reads fills after a few hundred datagrams; a send that
    waited would hang the worker, and these requests would time out."""
    receiver = Receiver(tmp_path / "statsd.sock")
    receiver.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        with Server(["-w", "1", "--statsd-host", receiver.address]) as srv:
            with Client(srv.port, timeout=5) as client:
                for _ in range(1500):
                    client.request("GET", "/")
                    assert client.read_response().status == 200
            kept = len(receiver.read())
    finally:
        receiver.close()
    assert 0 < kept < 3 * 1500  # some metrics were dropped, none waited for


def test_a_host_that_does_not_resolve_is_one_warning():
    with Server(["-w", "1", "--statsd-host", "statsd.invalid:8125"]) as srv:
        assert request(srv.port, "GET", "/").status == 200
    warnings = [line for line in srv.lines if "statsd" in line]
    assert len(warnings) == 1, srv.log
    assert "[WARNING] statsd: cannot resolve statsd.invalid:8125" in warnings[0]
    assert "running without statsd" in warnings[0]


def test_the_watchdogs_report_counts_as_a_critical_line():
    receiver = Receiver()
    try:
        with Server(["-w", "1", "--timeout", "1", "--statsd-host", receiver.address]) as srv:
            try:
                request(srv.port, "GET", "/spin?10", timeout=10)
            except (OSError, EOFError):
                pass  # the worker is ended under the request
            srv.wait_for_log("WORKER TIMEOUT", timeout=15)
            deadline = time.monotonic() + 10
            while "gunicorn.log.critical:1|c|@1.0" not in receiver.packets:
                assert time.monotonic() < deadline, receiver.packets
                receiver.read(quiet=0.2)
    finally:
        receiver.close()


def test_workers_gauge_follows_the_count():
    receiver = Receiver()
    try:
        with Server(["-w", "2", "--statsd-host", receiver.address]) as srv:
            wait_until(lambda: "gunicorn.workers:2|g" in receiver.read(quiet=0.1), timeout=10)
            srv.signal(signal.SIGTTIN)
            wait_until(lambda: "gunicorn.workers:3|g" in receiver.read(quiet=0.1), timeout=10)
    finally:
        receiver.close()
