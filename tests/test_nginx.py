"""nginx for real in front of geventserve, both run as configured in examples/.

nginx's config is generated from examples/nginx.conf (its commented-out HTTPS server enabled with a
certificate made here; ports, the unix socket and every path nginx writes to moved into a pytest
tmp dir; no second copy of the config), and geventserve runs with
examples/geventserve.conf.py, serving the tests' wsgi_app on TCP and on a unix socket. nginx runs
in the foreground as a subprocess, always killed by PID at the end.

The last test sends POSTs during reloads: nginx resends a failed GET on another connection, so
only a POST shows a request lost when a stopping worker closes a pooled connection.
"""

import json
import re
import signal
import ssl
import threading
import time

import pytest

from harness.nginx import Nginx
from helpers import (
    APPS,
    GEVENTSERVE_CONF,
    Client,
    Load,
    Server,
    make_certificate,
    request,
    wait_until,
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("nginx")


@pytest.fixture(scope="module")
def certificate(workdir):
    return make_certificate(str(workdir))


@pytest.fixture(scope="module")
def geventserve(workdir):
    """The tests' wsgi_app with the example config, on loopback TCP and on a unix socket."""
    path = str(workdir / "geventserve.sock")
    with Server(["-c", GEVENTSERVE_CONF, "-w", "1", "--chdir", APPS],
                bind=["127.0.0.1:0", f"unix:{path}"]) as srv:
        srv.socket_path = path
        yield srv


@pytest.fixture(scope="module")
def nginx(workdir, geventserve, certificate):
    server = Nginx(workdir, geventserve.port, geventserve.socket_path, *certificate)
    try:
        yield server.start()
    finally:
        server.stop()


def get_environ(port, tls=False, headers=(), host="shop.example"):
    """GET /environ through nginx from 127.0.0.2; the app's environ, as JSON."""
    with Client(port, source="127.0.0.2") as client:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            client.sock = context.wrap_socket(client.sock)
        client.request("GET", "/environ", headers=headers, host=host)
        response = client.read_response()
        assert response.status == 200, response
        return json.loads(response.body)


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_request_reaches_the_app(nginx, geventserve, kind):
    response = request(nginx.ports[kind], "GET", "/")
    assert response.status == 200 and response.body == b"hello"
    upstream = (f"127.0.0.1:{geventserve.port}" if kind == "tcp"
                else f"unix:{geventserve.socket_path}")
    wait_until(lambda: any(f"upstream={upstream} upstream_status=200" in line
                           for line in nginx.access_lines()),
               timeout=5, message=f"an access-log line for {upstream}")


@pytest.mark.parametrize("kind", ["tcp", "unix", "tls"])
def test_client_address_host_and_scheme_reach_the_app(nginx, kind):
    # the client tries to spoof both headers; nginx appends the real address and replaces
    # the scheme, and geventserve believes nginx (a trusted peer: loopback or unix socket)
    host = f"shop.example:{nginx.ports[kind]}"
    env = get_environ(nginx.ports[kind], tls=kind == "tls", host=host,
                      headers=[("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "https")])
    scheme = "https" if kind == "tls" else "http"
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert env["HTTP_X_FORWARDED_FOR"] == "6.6.6.6, 127.0.0.2"
    assert env["HTTP_X_FORWARDED_PROTO"] == scheme
    assert env["wsgi.url_scheme"] == scheme
    assert env["HTTP_HOST"] == host
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert "HTTP_CONNECTION" not in env  # proxy_set_header Connection "": keep-alive upstream
    assert ("REMOTE_PORT" in env) == (kind != "unix")  # the upstream it went through


def test_upstream_connections_are_reused(nginx):
    """Two requests on one client connection go over one pooled upstream connection."""
    ports = []
    with Client(nginx.ports["tcp"]) as client:
        for _ in range(3):
            client.request("GET", "/environ")
            ports.append(json.loads(client.read_response().body)["REMOTE_PORT"])
    assert len(set(ports)) == 1, ports


def test_http10_client_without_host(nginx):
    """geventserve needs a Host: nginx gives its server_name when the client sent none."""
    with Client(nginx.ports["tcp"]) as client:
        client.request("GET", "/environ", version="HTTP/1.0", host=None)
        response = client.read_response()
    assert response.status == 200
    assert json.loads(response.body)["HTTP_HOST"] == "localhost"


def reload_and_wait(server):
    """HUP the supervisor; return once the new worker serves and the old ones have exited."""
    old_workers = server.worker_pids()
    mark = len(server.lines)
    server.signal(signal.SIGHUP)
    server.wait_for_log(r"Ready: 1 worker\(s\) serving", start=mark, timeout=15)
    for pid in old_workers:
        server.wait_for_log(rf"Worker exiting \(pid: {pid}\)", start=mark, timeout=15)


def test_graceful_reload_behind_nginx(nginx, geventserve):
    """HUP while clients go through nginx on both upstreams: no 502, no failed request."""
    old_workers = geventserve.worker_pids()
    access_before = len(nginx.access_lines())
    loads = [Load(nginx.ports[kind], clients=2, path="/pid", pause=0.01).start()
             for kind in ("tcp", "unix")]
    try:
        wait_until(lambda: all(load.ok >= 20 for load in loads), timeout=10,
                   message="requests flowing through nginx")
        time.sleep(1.0)
        reload_and_wait(geventserve)
        new_workers = geventserve.worker_pids()
        assert new_workers and not set(new_workers) & set(old_workers)
        served_by_new = {str(pid).encode() for pid in new_workers}
        wait_until(lambda: all(sum(n for body, n in load.bodies.items() if body in served_by_new)
                               >= 20 for load in loads),
                   timeout=10, message="requests served by the new worker")
        time.sleep(1.0)
    finally:
        for load in loads:
            load.stop()
    for load in loads:
        bad_gateways = [f for f in load.failures if f[1] == "status 502"]
        assert bad_gateways == [], f"{len(bad_gateways)} 502s of {load.ok} requests"
        assert load.failures == [], f"{len(load.failures)} failed: {load.failures[:5]}"
        assert load.retries == [], load.retries[:5]
        served_by = {int(body) for body in load.bodies}
        assert served_by & set(old_workers) and served_by & set(new_workers), load.bodies
    lines = nginx.access_lines()[access_before:]
    statuses = [re.search(r'" (\d{3}) ', line).group(1) for line in lines]
    assert len(statuses) >= sum(load.ok for load in loads)
    assert set(statuses) == {"200"}, [line for line in lines if '" 200 ' not in line][:5]


def test_graceful_reloads_behind_nginx_keep_posts(nginx, geventserve):
    """Like the test above with POSTs, which nginx does not resend on another connection: an
    idle pooled connection that nginx picks just as the old worker stops must still be
    answered (a stopping worker gives idle connections a moment before closing them)."""
    stopping = threading.Event()
    lock = threading.Lock()
    outcomes = {"ok": 0, "failures": []}

    def post_loop(port):
        client = None
        while not stopping.is_set():
            try:
                if client is None:
                    client = Client(port, timeout=10)
                client.request("POST", "/echo", body=b"payload")
                response = client.read_response()
                good = (response.status, response.body) == (200, b"payload")
                outcome = "ok" if good else f"status {response.status}"
                if response.header("connection") == "close":  # nginx's keepalive_requests
                    client.close()
                    client = None
            except (OSError, EOFError) as exc:
                outcome = repr(exc)
                if client is not None:
                    client.close()
                client = None
            with lock:
                if outcome == "ok":
                    outcomes["ok"] += 1
                else:
                    outcomes["failures"].append(outcome)
            time.sleep(0.002)
        if client is not None:
            client.close()

    threads = [threading.Thread(target=post_loop, args=(nginx.ports[kind],), daemon=True)
               for kind in ("tcp", "unix") * 3]
    for thread in threads:
        thread.start()
    try:
        for _ in range(8):  # the race is narrow: a few reloads to see it
            before = outcomes["ok"]
            wait_until(lambda before=before: outcomes["ok"] >= before + 40, timeout=10,
                       message="POSTs flowing through nginx")
            reload_and_wait(geventserve)
        time.sleep(0.2)
    finally:
        stopping.set()
        for thread in threads:
            thread.join(15)
    failures = outcomes["failures"]
    assert failures == [], (f"{failures.count('status 502')} 502s and {len(failures)} failures "
                            f"in {outcomes['ok'] + len(failures)} POSTs: {failures[:5]}")
