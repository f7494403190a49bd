"""--metrics-bind: /metrics and /status served by the supervisor, counters across worker deaths
and reloads, the app's prometheus_client metrics, `geventserve status`, bad input; the report
of a request that blocks the event loop; a stuck request cut at --timeout under load."""

import json
import os
import re
import signal
import socket
import sys
import threading
import time

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from harness.servers import geventserve_command
from helpers import (
    METRICS_AT,
    OPENMETRICS,
    Client,
    Load,
    Server,
    metrics_server,
    request,
    run_command,
    samples,
    scrape,
    total,
    value,
    wait_until,
)

# -- /metrics ----------------------------------------------------------------------------------

def test_requests_are_counted_by_method_and_code():
    with metrics_server(["-w", "2"]) as srv:
        for _ in range(5):
            assert request(srv.port, "GET", "/").status == 200
        for _ in range(3):
            assert request(srv.port, "POST", "/echo", body=b"hi").status == 200
        assert request(srv.port, "HEAD", "/").status == 200
        assert request(srv.port, "GET", "/status?404").status == 404
        assert request(srv.port, "PROPFIND", "/").status == 200  # a method llhttp knows
        with Client(srv.port) as client:  # one the server refuses itself
            client.send(b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert client.read_response().status == 501
        found = wait_until(lambda: (lambda f: total(f, "geventserve_requests_total") == 12
                                    and f)(samples(srv)), message="12 requests counted")
    assert value(found, "geventserve_requests_total", method="GET", code="200") == 5
    assert value(found, "geventserve_requests_total", method="POST", code="200") == 3
    assert value(found, "geventserve_requests_total", method="HEAD", code="200") == 1
    assert value(found, "geventserve_requests_total", method="GET", code="404") == 1
    assert value(found, "geventserve_requests_total", method="other", code="200") == 1
    assert value(found, "geventserve_requests_total", method="other", code="501") == 1
    assert value(found, "geventserve_request_duration_seconds_count") == 12
    assert value(found, "geventserve_request_duration_seconds_bucket", le="+Inf") == 12
    assert value(found, "geventserve_request_duration_seconds_bucket", le="30.0") == 12
    assert value(found, "geventserve_request_duration_seconds_bucket", le="0.001") <= 12
    assert 0 < value(found, "geventserve_request_duration_seconds_sum") < 12
    assert value(found, "geventserve_connections_accepted_total") == 12
    assert value(found, "geventserve_workers") == 2
    assert value(found, "geventserve_listen_backlog", listener=f"127.0.0.1:{srv.port}") == 0
    assert value(found, "geventserve_listen_backlog_limit",
                 listener=f"127.0.0.1:{srv.port}") == 2048
    slots = {dict(labels)["slot"] for name, labels in found
             if name == "geventserve_worker_resident_memory_bytes"}
    assert slots == {"0", "1"}
    assert all(v > 10 * 2**20 for (name, _), v in found.items()
               if name == "geventserve_worker_resident_memory_bytes")
    for name in ("process_cpu_seconds_total", "process_resident_memory_bytes",
                 "process_start_time_seconds", "process_open_fds", "process_max_fds"):
        assert value(found, name) > 0, name
    assert abs(value(found, "process_start_time_seconds") - time.time()) < 600


def test_the_event_loop_s_long_turns_are_timed_without_tracing_switches():
    """With metrics on (and no %(K)s) nothing runs per greenlet switch: the loop's turns are
    timed, and a request that spins 0.3 s is one turn of 0.3 s or a little more."""
    with metrics_server(["-w", "1"]) as srv:
        assert request(srv.port, "GET", "/greenlet-trace").text == "None"
        before = samples(srv)
        assert request(srv.port, "GET", "/spin?0.3", timeout=10).status == 200
        found = wait_until(lambda: (lambda f: total(f, "geventserve_requests_total") == 2
                                    and f)(samples(srv)), message="2 requests counted")
    def between(f):  # turns of more than 0.25 s and at most 0.5 s
        return (value(f, "geventserve_event_loop_blocked_seconds_bucket", le="0.5")
                - value(f, "geventserve_event_loop_blocked_seconds_bucket", le="0.25"))
    assert between(found) - between(before) == 1
    spun = (value(found, "geventserve_event_loop_blocked_seconds_sum")
            - value(before, "geventserve_event_loop_blocked_seconds_sum"))
    assert 0.3 <= spun < 0.5


def test_scrapes_within_a_tenth_of_a_second_get_the_same_page():
    """A burst of scrapes costs the supervisor one page: a request answered between two scrapes
    0.1 s apart or less is not on the second; it is on the next one after that."""
    with metrics_server(["-w", "1"]) as srv:
        request(srv.port, "GET", "/")
        wait_until(lambda: total(samples(srv), "geventserve_requests_total") == 1)
        for _ in range(20):  # a loaded machine may not fit the three steps in 0.1 s
            time.sleep(0.15)
            began = time.monotonic()
            first = scrape(srv).body
            assert request(srv.port, "GET", "/").status == 200
            second = scrape(srv).body
            if time.monotonic() - began < 0.1:
                break
        else:
            pytest.fail("no two scrapes within 0.1 s in 20 tries")
        assert second == first
        counted = sum(float(line.split()[-1]) for line in second.decode().splitlines()
                      if line.startswith("geventserve_requests_total{"))
        # once the page is 0.1 s old, the next one counts the request answered in between
        wait_until(lambda: total(samples(srv), "geventserve_requests_total") == counted + 1,
                   message="the request answered between the two scrapes counted")


def test_sync_workers_are_counted_without_event_loop_figures():
    with metrics_server(["-k", "sync", "-w", "2"]) as srv:
        for _ in range(6):
            assert request(srv.port, "GET", "/").status == 200
        found = wait_until(lambda: (lambda f: total(f, "geventserve_requests_total") == 6
                                    and f)(samples(srv)), message="6 requests counted")
        status = json.loads(scrape(srv, "/status").body)
        workers = srv.worker_pids()
    assert value(found, "geventserve_request_duration_seconds_count") == 6
    assert value(found, "geventserve_event_loop_blocked_seconds_count") == 0
    assert value(found, "geventserve_connections_accepted_total") == 6
    assert sorted(w["pid"] for w in status["workers"]) == sorted(workers)
    assert sum(w["requests"] for w in status["workers"]) == 6


def test_openmetrics_when_asked_and_only_get_or_head():
    with metrics_server(["-w", "1"]) as srv:
        request(srv.port, "GET", "/")
        text = scrape(srv)
        assert text.header("content-type") == "text/plain; version=0.0.4; charset=utf-8"
        om = scrape(srv, accept=OPENMETRICS)
        assert om.header("content-type").startswith("application/openmetrics-text; version=1.0.0")
        assert om.text.endswith("# EOF\n")
        assert list(parse_om(om.text))  # strict: the OpenMetrics parser refuses what is off
        head = scrape(srv, method="HEAD")
        assert head.status == 200 and head.body == b"" and int(head.header("content-length")) > 0
        for method in ("POST", "PUT", "DELETE"):
            refused = scrape(srv, method=method)
            assert refused.status == 405 and refused.header("allow") == "GET, HEAD"
        assert scrape(srv, "/status", method="POST").status == 405
        with Client(srv.metrics_port) as client:  # a scraper keeps its connection
            for path in ("/metrics", "/status", "/metrics"):
                client.request("GET", path)
                assert client.read_response().status == 200
            client.request("GET", "/nothing-here")
            assert client.read_response().status == 404
            assert client.closed_by_server(timeout=5)
        assert scrape(srv, "/").status == 404
        assert scrape(srv, "/metrics/more").status == 404
        with Client(srv.metrics_port) as client:
            client.send(b"HELLO\r\n\r\n")
            assert client.read_response().status == 400
        with Client(srv.metrics_port) as client:
            client.send(b"GET /metrics HTTP/1.1\r\nX-Big: " + b"x" * 9000 + b"\r\n\r\n")
            assert client.read_response().status == 431
        with Client(srv.metrics_port, timeout=15) as client:  # a client that sends nothing
            started = time.monotonic()
            assert client.closed_by_server(timeout=15)
            assert 8 < time.monotonic() - started < 13
        assert scrape(srv).status == 200


def test_counters_never_go_back_when_workers_die_or_reload():
    with metrics_server(["-w", "2"]) as srv:
        seen = []

        def check(expected):
            found = wait_until(lambda: (lambda f: total(f, "geventserve_requests_total")
                                        == expected and f)(samples(srv)),
                               message=f"{expected} requests counted")
            seen.append(found)
            return found

        for _ in range(20):
            request(srv.port, "GET", "/")
        check(20)
        victim = srv.worker_pids()[0]
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: len(srv.worker_pids()) == 2 and victim not in srv.worker_pids())
        check(20)
        for _ in range(20):
            request(srv.port, "GET", "/")
        check(40)
        old = set(srv.worker_pids())
        srv.signal(signal.SIGHUP)
        wait_until(lambda: srv.log.count("] Ready: ") >= 2, message="reloaded")
        wait_until(lambda: not old & set(srv.worker_pids()), message="old workers gone")
        for _ in range(20):
            request(srv.port, "GET", "/")
        found = check(60)
    assert value(found, "geventserve_worker_restarts_total", reason="signal") == 1
    assert value(found, "geventserve_worker_restarts_total", reason="reload") == 2
    assert value(found, "geventserve_request_duration_seconds_count") == 60
    assert value(found, "geventserve_connections_accepted_total") == 60
    for before, after in zip(seen, seen[1:]):
        for key, count in before.items():
            if key[0].endswith(("_total", "_count", "_bucket")) and key[0].startswith("geventserve"):
                assert after.get(key, 0) >= count, key


def test_scrapes_never_fail_while_workers_are_killed():
    with metrics_server(["-w", "3"]) as srv:
        load = Load(srv.port, clients=10).start()
        results, stop = [], threading.Event()

        def scraper():
            while not stop.is_set():
                try:
                    response = scrape(srv)
                    results.append(response.status)
                    list(parse_text(response.text))
                except Exception as exc:
                    results.append(repr(exc))
                try:
                    results.append(scrape(srv, "/status").status)
                except Exception as exc:
                    results.append(repr(exc))

        thread = threading.Thread(target=scraper)
        thread.start()
        try:
            for _ in range(4):
                victim = srv.worker_pids()[0]
                os.kill(victim, signal.SIGKILL)
                wait_until(lambda gone=victim: gone not in srv.worker_pids()
                           and len(srv.worker_pids()) == 3)
                time.sleep(0.3)
        finally:
            stop.set()
            thread.join(15)
            load.stop()
    assert len(results) > 20
    assert set(results) == {200}, [r for r in results if r != 200][:3]


def test_it_answers_while_the_workers_are_stuck():
    with metrics_server(["-w", "1", "--timeout", "0"]) as srv:
        stuck = threading.Thread(target=lambda: request(srv.port, "GET", "/spin?4", timeout=15))
        stuck.start()
        try:
            time.sleep(2.0)
            started = time.monotonic()
            status = json.loads(scrape(srv, "/status").body)
            assert scrape(srv).status == 200
            assert time.monotonic() - started < 1.0
        finally:
            stuck.join(15)
    (worker,) = status["workers"]
    assert worker["requests_in_flight"] == 1
    (flight,) = worker["in_flight"]
    assert flight["method"] == "GET" and flight["path"] == "/spin"
    assert 1.0 < flight["seconds"] < 4.0
    assert worker["loop_lag"] > 1.0


def test_unix_socket_and_taken_or_malformed_addresses(tmp_path):
    path = str(tmp_path / "metrics.sock")
    with metrics_server(["-w", "1", "--metrics-bind", f"unix:{path}"]):
        with Client(unix=path) as client:
            client.request("GET", "/metrics")
            response = client.read_response()
        assert response.status == 200 and "geventserve_workers 1" in response.text
        # taken: this one's address, by another server
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = run_command(geventserve_command(
                ["-b", "127.0.0.1:0", "--metrics-bind", f"127.0.0.1:{port}"], "wsgi_app:app"),
                cwd=os.path.dirname(__file__) + "/apps", timeout=20)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert f"--metrics-bind: cannot listen on 127.0.0.1:{port}: address already in use" in line
    assert not os.path.exists(path)
    for address in ("nonsense::x", "fd://3", "unix:"):
        result = run_command(geventserve_command(["--metrics-bind", address], "wsgi_app:app"),
                             timeout=20)
        assert result.returncode == 1, address
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"geventserve: error: invalid value '{address}' for "
                               "--metrics-bind"), line


def test_health_paths_are_answered_there_too():
    health = ["--liveness-path", "/livez", "--readiness-path", "/readyz", "--drain-delay", "3"]
    with metrics_server(["-w", "1", *health]) as srv:
        assert scrape(srv, "/livez").text == "alive\n"
        ready = scrape(srv, "/readyz")
        assert (ready.status, ready.text) == (200, "ready\n")
        assert scrape(srv, "/readyz", method="HEAD").body == b""
        srv.signal(signal.SIGTERM)  # the drain: not ready, still alive, still serving
        wait_until(lambda: scrape(srv, "/readyz").status == 503)
        assert scrape(srv, "/livez").status == 200
        assert request(srv.port, "GET", "/").status == 200
        assert srv.wait(15) == 0


def test_usr2_hands_the_endpoint_to_the_new_supervisor():
    with metrics_server(["-w", "1"]) as srv:
        old_workers = set(srv.worker_pids())
        srv.signal(signal.SIGUSR2)
        new_master = wait_until(lambda: [p for p in srv.worker_pids() if p not in old_workers],
                                message="new master")[0]
        try:
            srv.wait_for_log(r"\[%d\] \[INFO\] Ready: 1 worker" % new_master)
            srv.signal(signal.SIGTERM)
            assert srv.wait(15) == 0
            status = json.loads(scrape(srv, "/status").body)
            assert status["pid"] == new_master
            assert "address already in use" not in srv.log
        finally:
            os.kill(new_master, signal.SIGTERM)
            wait_until(lambda: not os.path.exists(f"/proc/{new_master}/stat")
                       or open(f"/proc/{new_master}/stat").read().rsplit(")", 1)[1].split()[0]
                       == "Z", timeout=15)


# -- the app's own metrics ---------------------------------------------------------------------

def test_app_multiprocess_metrics_are_merged_and_kept():
    with metrics_server(["-w", "2"], app="prom_app:app") as srv:
        directory = request(srv.port, "GET", "/dir").text
        assert os.path.isdir(directory) and "geventserve-prometheus-" in directory
        for _ in range(30):
            request(srv.port, "GET", "/")
        victim = int(request(srv.port, "GET", "/pid").text)
        wait_until(lambda: value(samples(srv), "app_workers_alive") == 2)
        before = srv.worker_pids()
        os.kill(victim, signal.SIGKILL)
        replacement = wait_until(lambda: [p for p in srv.worker_pids() if p not in before],
                                 message="a new worker")[0]
        # its live gauge counts once it has imported the app; the dead one's is gone
        wait_until(lambda: value(samples(srv), "app_workers_alive") == 2)
        for _ in range(10):
            request(srv.port, "GET", "/")
        # a worker forked after the supervisor read the app's metrics: gevent's ssl, no warning
        ssl_modules = {}

        def ask_ssl():
            pid, module = request(srv.port, "GET", "/ssl").text.split()
            ssl_modules.setdefault(pid, []).append(module)
            return str(replacement) in ssl_modules

        wait_until(ask_ssl, message="an answer from the new worker")
        asked = sum(map(len, ssl_modules.values()))
        found = wait_until(lambda: (lambda f: value(f, "geventserve_requests_total", method="GET",
                                                    code="200") == 42 + asked and f)(samples(srv)),
                           message="every request counted")
        assert value(found, "app_requests_total", path="/") == 40
        assert value(found, "app_workers_alive") == 2
        assert value(found, "app_requests_total", path="/pid") == 1
        assert value(found, "app_requests_total", path="/ssl") == asked
        with open(f"/proc/{srv.pid}/maps") as fh:  # the supervisor never loaded ssl
            assert "/_ssl." not in fh.read()
    assert {m for modules in ssl_modules.values() for m in modules} == {"gevent.ssl"}
    assert "MonkeyPatchWarning" not in srv.log
    assert not os.path.exists(directory)


def test_a_multiprocess_directory_given_is_used_and_kept(tmp_path):
    given = tmp_path / "prom"
    given.mkdir()
    with metrics_server(["-w", "1"], app="prom_app:app",
               env={"PROMETHEUS_MULTIPROC_DIR": str(given)}) as srv:
        assert request(srv.port, "GET", "/dir").text == str(given)
        request(srv.port, "GET", "/")
        wait_until(lambda: value(samples(srv), "app_requests_total", path="/") == 1)
    assert any(name.endswith(".db") for name in os.listdir(given))


# -- geventserve status ------------------------------------------------------------------------

def test_status_command_shows_the_workers_and_their_requests():
    with metrics_server(["-w", "2"]) as srv:
        slow = threading.Thread(target=lambda: request(srv.port, "GET", "/slow-pid?3",
                                                       timeout=10))
        slow.start()
        try:
            time.sleep(1.2)
            address = f"127.0.0.1:{srv.metrics_port}"
            table = run_command([sys.executable, "-m", "geventserve", "status", address])
            raw = run_command([sys.executable, "-m", "geventserve", "status", "--json",
                               address])
        finally:
            slow.join(10)
        workers = srv.worker_pids()
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith(f"geventserve 0.1.0, supervisor pid {srv.pid}: 2 worker(s) "
                               "running, 2 wanted; restarts: none")
    assert re.match(r"SLOT +PID +STATE +AGE +REQUESTS +ACTIVE +IDLE +WS +RSS +LOOP LAG +IN "
                    r"FLIGHT$", lines[2])
    for pid in workers:
        assert re.search(rf"^ +\d +{pid} +ready +\d+s +\d+ +\d +\d +0 +\d+ MiB +\d+ ms +[01]$",
                         table.stdout, re.M), table.stdout
    assert re.search(r"^ +\d +GET +/slow-pid +1\.\ds$", table.stdout, re.M), table.stdout
    status = json.loads(raw.stdout)
    assert sorted(w["pid"] for w in status["workers"]) == sorted(workers)
    down = run_command([sys.executable, "-m", "geventserve", "status", address])
    assert down.returncode == 1 and down.stdout == ""
    assert down.stderr == f"geventserve status: cannot reach {address}: Connection refused\n"


# -- requests that block the event loop --------------------------------------------------------

def test_a_request_that_blocks_the_loop_is_reported_once_with_its_stack():
    args = ["-w", "1", "--access-logfile", "-", "--access-logformat", "%(r)s %(s)s %(K)s"]
    with Server(args) as srv:
        assert request(srv.port, "GET", "/greenlet-trace").text.startswith("<function")
        assert request(srv.port, "GET", "/spin?1.2", timeout=10).status == 200
        report = srv.wait_for_log(r"\[WARNING\] Event loop blocked for (1\.\d+)s .* by GET "
                                  r"/spin\?1\.2 from 127\.0\.0\.1")
        assert 1.2 <= float(report.group(1)) < 2.0
        assert request(srv.port, "GET", "/spin?0.8", timeout=10).status == 200  # within 5 s
        request(srv.port, "GET", "/")
        time.sleep(1.0)
    log = srv.log
    assert log.count("Event loop blocked") == 1
    stack = log[log.index("Event loop blocked"):].split("\n[", 1)[0]
    assert re.search(r"Stack 0\.\d+s into the block:\n", stack), stack
    assert "while time.time() < end" in stack  # taken while it spun
    access = {line.split(" HTTP/1.1 ")[0]: line.split() for line in srv.out_lines}
    assert 1.2 <= float(access["GET /spin?1.2"][-1]) < 2.0
    assert 0.8 <= float(access["GET /spin?0.8"][-1]) < 1.5
    assert float(access["GET /"][-1]) < 0.1


def test_by_default_a_blocking_request_is_reported_without_tracing_switches():
    """--loop-block-warn alone (no %(K)s, no metrics): the hold is timed by the loop's beat."""
    with Server(["-w", "1"]) as srv:
        assert request(srv.port, "GET", "/greenlet-trace").text == "None"
        assert request(srv.port, "GET", "/spin?0.9", timeout=10).status == 200
        report = srv.wait_for_log(r"\[WARNING\] Event loop blocked for (\d\.\d+)s .* by GET "
                                  r"/spin\?0\.9 from 127\.0\.0\.1 \(running [\d.]+s\): every other")
        assert 0.9 <= float(report.group(1)) < 1.5
    stack = srv.log[srv.log.index("Event loop blocked"):].split("\n[", 1)[0]
    assert "while time.time() < end" in stack  # taken while it spun


def test_loop_block_timing_is_off_when_nothing_asks_for_it():
    with Server(["-w", "1", "--loop-block-warn", "0", "--access-logfile", "-"]) as srv:
        assert request(srv.port, "GET", "/greenlet-trace").text == "None"
        assert request(srv.port, "GET", "/spin?0.7", timeout=10).status == 200
        time.sleep(1.0)
    assert "Event loop blocked" not in srv.log
    with Server(["-k", "sync", "-w", "1", "--access-logfile", "-", "--access-logformat",
                 "%(r)s %(K)s"]) as srv:
        request(srv.port, "GET", "/")
        wait_until(lambda: srv.out_lines)
    assert srv.out_lines[-1] == "GET / HTTP/1.1 -"


def test_a_stuck_request_is_cut_and_no_other_request_is_lost():
    """2 workers, a view that spins the CPU, --timeout 3, and requests in flight on the stuck
    worker: the stuck one gets a 500, every other one its answer, and the worker is replaced
    (its replacement ready first)."""
    with Server(["-w", "2", "--timeout", "3", "--metrics-bind", "127.0.0.1:0"]) as srv:
        metrics_port = int(srv.wait_for_log(METRICS_AT).group(1))
        load = Load(srv.port, clients=40).start()
        time.sleep(1.0)
        with Client(srv.port, timeout=20) as client:
            client.request("GET", "/spin?30")
            stuck = client.read_response()
        stuck_pid = int(re.search(r"WORKER TIMEOUT \(pid:(\d+)\)", srv.log).group(1))
        srv.wait_for_log(r"Worker exiting \(pid: %d\)" % stuck_pid, timeout=20)
        time.sleep(1.0)
        load.stop()
        found = {}
        response = request(metrics_port, "GET", "/metrics")
        for family in parse_text(response.text):
            for sample in family.samples:
                found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    assert stuck.status == 500
    assert load.failures == [], load.failures[:5]
    assert load.ok > 200
    served_by_stuck = load.bodies.get(str(stuck_pid).encode(), 0)
    assert served_by_stuck > 0  # it had requests in flight and answered them
    assert value(found, "geventserve_worker_restarts_total", reason="timeout") == 1
    assert value(found, "geventserve_requests_total", method="GET", code="500") == 1
    assert value(found, "geventserve_event_loop_blocked_seconds_bucket", le="2.5") < \
        value(found, "geventserve_event_loop_blocked_seconds_bucket", le="5.0")


@pytest.mark.parametrize("worker_class", ["gevent", "sync"])
def test_worker_abort_runs_when_the_watchdog_fires(tmp_path, worker_class):
    conf = tmp_path / "conf.py"
    record = tmp_path / "aborts"
    conf.write_text(f"def worker_abort(worker):\n    open({str(record)!r}, 'a').write("
                    "str(worker.pid) + '\\n')\n")
    with Server(["-k", worker_class, "-w", "1", "--timeout", "2", "-c", str(conf)]) as srv:
        pid = srv.worker_pids()[0]
        assert request(srv.port, "GET", "/spin?20", timeout=15).status == 500
        wait_until(lambda: record.exists() and record.read_text() == f"{pid}\n")
        wait_until(lambda: pid not in srv.worker_pids(), message="the worker replaced")
        assert request(srv.port, "GET", "/").status == 200
