"""The files in examples/: every app loads, the config loads cleanly, the I/O-bound app works.

The Flask I/O-bound example is served for real with one gevent worker, talking to the upstream
example (also served by geventserve) over HTTP; the config files are checked by the programs
that read them (geventserve --check-config, nginx -t) and against each other.
"""

import configparser
import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from harness.nginx import NGINX, render_nginx_conf
from harness.ports import free_ports
from helpers import Client, Server, make_certificate, request, run_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
CONF = os.path.join("examples", "geventserve.conf.py")
SYSTEMD = os.path.join(EXAMPLES, "systemd")
APPS = ["hello:app", "io_bound:app", "upstream:app", "plain_wsgi:app", "chat:app", "db_app:app"]


def geventserve(*args, timeout=60):
    """Run `python -m geventserve ARGS` from the repository root, as a user would."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("GEVENTSERVE_CMD_ARGS", "WEB_CONCURRENCY", "PYTHONPATH")}
    return run_command([sys.executable, "-m", "geventserve", *args], timeout=timeout, cwd=ROOT,
                       env=env)


@pytest.mark.parametrize("app", APPS)
def test_example_app_loads(app):
    result = geventserve("--check-config", "--chdir", "examples", app)
    assert result.returncode == 0, result.stderr
    assert f"{app} loads with the gevent worker" in result.stdout
    assert result.stderr == ""


def test_example_config_loads_without_warning():
    result = geventserve("-c", CONF, "--check-config", "--chdir", "examples", "hello:app")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # an unknown name would be a warning here
    # and on its own: it names its app and directory itself
    result = geventserve("-c", CONF, "--check-config")
    assert result.returncode == 0 and result.stderr == "", result.stderr


def effective_config():
    """The settings examples/geventserve.conf.py gives, from geventserve --print-config."""
    result = geventserve("-c", CONF, "--print-config")
    assert result.returncode == 0, result.stderr
    values = {}
    for line in result.stdout.splitlines():
        match = re.match(r"(\w+) = (.*?)  # (.*)$", line)
        if match:
            values[match.group(1)] = (match.group(2), match.group(3))
    return values


def test_example_config_values_agree_with_nginx_and_systemd():
    values = effective_config()
    for name in ("bind", "workers", "worker_class", "worker_connections", "timeout",
                 "graceful_timeout", "keepalive", "max_requests", "max_requests_jitter",
                 "forwarded_allow_ips", "accesslog", "errorlog", "loglevel"):
        assert values[name][1].startswith("config file"), (name, values[name])
    graceful, keepalive = float(values["graceful_timeout"][0]), float(values["keepalive"][0])
    # systemd must give a graceful stop time to finish before it kills
    unit = configparser.ConfigParser(interpolation=None, strict=False)
    unit.read(os.path.join(SYSTEMD, "geventserve.service"))
    stop = float(unit["Service"]["TimeoutStopSec"].rstrip("s"))
    assert graceful < stop
    # nginx closes idle upstream connections before geventserve does
    with open(os.path.join(EXAMPLES, "nginx.conf")) as fh:
        nginx_conf = fh.read()
    upstream_idle = re.findall(r"upstream \w+ \{[^}]*?keepalive_timeout (\d+)s;", nginx_conf)
    assert len(upstream_idle) == 2
    assert all(float(seconds) < keepalive for seconds in upstream_idle)


def test_systemd_units():
    service = configparser.ConfigParser(interpolation=None, strict=False)
    service.read(os.path.join(SYSTEMD, "geventserve.service"))
    socket_unit = configparser.ConfigParser(interpolation=None, strict=False)
    socket_unit.read(os.path.join(SYSTEMD, "geventserve.socket"))
    assert service["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"
    # the server says when it is ready; after USR2 its new supervisor says it is the main one
    assert service["Service"]["Type"] == "notify"
    assert service["Service"]["NotifyAccess"] == "all"
    assert service["Service"]["KillSignal"] == "SIGTERM"
    assert "geventserve" in service["Service"]["ExecStart"]
    assert "geventserve.socket" in service["Unit"]["Requires"]
    assert socket_unit["Socket"]["ListenStream"] == "127.0.0.1:8000"


def test_nginx_accepts_the_example_config(tmp_path):
    cert, key = make_certificate(str(tmp_path))
    ports = dict(zip(("tcp", "unix", "tls"), free_ports(3)))
    conf = tmp_path / "nginx.conf"
    conf.write_text(render_nginx_conf(tmp_path, 8000, f"{tmp_path}/gs.sock", ports, cert, key))
    result = subprocess.run([NGINX, "-t", "-p", f"{tmp_path}/", "-c", str(conf), "-e", "stderr"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr
    assert "[warn]" not in result.stderr and "[emerg]" not in result.stderr, result.stderr


# -- the I/O-bound example, served for real

@pytest.fixture(scope="module")
def upstream():
    with Server(["-k", "gevent", "-w", "1"], app="upstream:app", cwd=EXAMPLES) as srv:
        yield srv


@pytest.fixture(scope="module")
def io_bound(upstream):
    with Server(["-k", "gevent", "-w", "1"], app="io_bound:app", cwd=EXAMPLES,
                env={"UPSTREAM_URL": f"http://127.0.0.1:{upstream.port}"}) as srv:
        yield srv


def get_json(port, path, timeout=10):
    response = request(port, "GET", path, timeout=timeout)
    assert response.status == 200, (path, response.status, response.body[:300])
    return json.loads(response.body)


def concurrently(port, path, count):
    """``count`` requests at once, each on its own connection; (responses, seconds taken)."""
    barrier = threading.Barrier(count)
    results = [None] * count

    def one(i):
        barrier.wait(5)
        try:
            results[i] = request(port, "GET", path, timeout=15)
        except (OSError, EOFError) as exc:
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return results, time.monotonic() - started


def test_upstream_example(upstream):
    started = time.monotonic()
    assert get_json(upstream.port, "/?delay=0.2") == {"delay": 0.2}
    assert time.monotonic() - started >= 0.2
    for bad in ("abc", "-1", "31", "nan", "inf"):
        response = request(upstream.port, "GET", f"/?delay={bad}")
        assert response.status == 400, bad
        assert json.loads(response.body)["got"] == bad


def test_upstream_view(io_bound):
    started = time.monotonic()
    answer = get_json(io_bound.port, "/upstream?delay=0.2")
    assert answer["upstream"] == {"delay": 0.2}
    assert 0.2 <= answer["seconds"] <= time.monotonic() - started
    assert request(io_bound.port, "GET", "/upstream?delay=99").status == 400


@pytest.mark.parametrize("path", ["/upstream?delay=0.5", "/sleep?seconds=0.5"])
def test_one_gevent_worker_waits_cooperatively(io_bound, path):
    """20 requests that each wait 0.5 s take about 0.5 s, not 10, on one gevent worker."""
    results, elapsed = concurrently(io_bound.port, path, 20)
    statuses = [r.status if hasattr(r, "status") else repr(r) for r in results]
    assert statuses == [200] * 20, statuses
    assert elapsed < 3.0, f"20 x 0.5 s took {elapsed:.2f} s"
    assert len(io_bound.worker_pids()) == 1


def test_sleep_view(io_bound):
    started = time.monotonic()
    assert get_json(io_bound.port, "/sleep?seconds=0.1") == {"slept": 0.1}
    assert time.monotonic() - started >= 0.1
    assert request(io_bound.port, "GET", "/sleep?seconds=-1").status == 400


def test_stream_view(io_bound):
    with Client(io_bound.port) as client:
        started = time.monotonic()
        client.request("GET", "/stream?chunks=5")
        response = client.read_response()
        elapsed = time.monotonic() - started
    assert response.status == 200
    assert response.chunked  # a generator body, no Content-Length
    assert response.text.splitlines() == [f"chunk {i} of 5" for i in range(1, 6)]
    assert elapsed >= 4 * 0.05  # the pauses between chunks
    assert request(io_bound.port, "GET", "/stream?chunks=0").status == 400
