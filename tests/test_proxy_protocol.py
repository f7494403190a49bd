"""--proxy-protocol: the real server behind raw PROXY headers (v1, v2; TCP and unix listeners; TLS
after the header), bad and silent peers closed without harm to the worker, untrusted peers served
as plain HTTP, and a real HAProxy in front (send-proxy, send-proxy-v2, over TCP, a unix socket
and TLS, with its health checks)."""

import json
import os
import shutil
import socket
import ssl
import struct
import time

import pytest

from harness.ports import free_ports
from harness.process import Process
from helpers import Client, Server, make_certificate, request, wait_until

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
CLIENT = ("198.51.100.9", 40001)  # what the headers claim


def v1(client=CLIENT, server=("127.0.0.1", 80)):
    return f"PROXY TCP4 {client[0]} {server[0]} {client[1]} {server[1]}\r\n".encode()


def v2(client=CLIENT, command=1, family=0x11):
    addresses = (socket.inet_aton(client[0]) + socket.inet_aton("127.0.0.1")
                 + struct.pack("!HH", client[1], 80)) if command else b""
    return (V2_SIGNATURE + bytes([0x20 | command, family if command else 0])
            + struct.pack("!H", len(addresses)) + addresses)


def get_environ(client):
    client.request("GET", "/environ")
    response = client.read_response()
    assert response.status == 200, response
    return json.loads(response.body)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pp")
    path = str(folder / "gs.sock")
    with Server(["-w", "1", "--proxy-protocol", "--proxy-allow-from", "127.0.0.0/8",
                 "--header-timeout", "1", "--forwarded-allow-ips", "198.51.100.0/24"],
                bind=["127.0.0.1:0", f"unix:{path}"], ready_path="") as srv:
        srv.wait_for_log("Ready:")
        srv.unix_path = path
        yield srv


def worker_of(srv):
    (pid,) = srv.worker_pids()
    return pid


@pytest.mark.parametrize("header", [v1(), v2()], ids=["v1", "v2"])
def test_remote_address_comes_from_the_header(server, header):
    with Client(server.port) as client:
        client.send(header)
        env = get_environ(client)
        assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.9", "40001")
        env = get_environ(client)  # the next request on the connection: the same client
        assert env["REMOTE_ADDR"] == "198.51.100.9"


@pytest.mark.parametrize("header", [v1(), v2()], ids=["v1", "v2"])
def test_header_and_request_in_one_write(server, header):
    with Client(server.port) as client:
        client.send(header + b"GET /environ HTTP/1.1\r\nHost: a\r\n\r\n")
        response = client.read_response()
        assert json.loads(response.body)["REMOTE_ADDR"] == "198.51.100.9"


def test_the_named_client_is_trusted_for_forwarded_headers_as_it_would_be_directly(server):
    """X-Forwarded-For is believed from the client the header names (198.51.100.0/24 is in
    --forwarded-allow-ips here), not from the balancer that sent the header."""
    with Client(server.port) as client:
        client.send(v1())
        client.request("GET", "/environ", headers=[("X-Forwarded-For", "192.0.2.1")])
        assert json.loads(client.read_response().body)["REMOTE_ADDR"] == "192.0.2.1"
    with Client(server.port) as client:
        client.send(v1(client=("203.0.113.5", 1)))
        client.request("GET", "/environ", headers=[("X-Forwarded-For", "192.0.2.1")])
        assert json.loads(client.read_response().body)["REMOTE_ADDR"] == "203.0.113.5"


@pytest.mark.parametrize("header", [b"PROXY UNKNOWN\r\n", v2(command=0)], ids=["v1", "v2"])
def test_local_header_is_served_with_the_real_peer(server, header):
    with Client(server.port, source="127.0.0.3") as client:
        client.send(header)
        env = get_environ(client)
        assert env["REMOTE_ADDR"] == "127.0.0.3"
        assert env["REMOTE_PORT"] == str(client.sock.getsockname()[1])


def test_unix_listener_takes_the_header(server):
    for header in (v1(), v2()):
        with Client(unix=server.unix_path) as client:
            client.send(header)
            env = get_environ(client)
            assert (env["REMOTE_ADDR"], env["REMOTE_PORT"]) == ("198.51.100.9", "40001")


BAD = {
    "garbage": b"HELLO WORLD\r\n\r\n",
    "plain HTTP with no header": b"GET /pid HTTP/1.1\r\nHost: a\r\n\r\n",
    "malformed v1": b"PROXY TCP4 198.51.100.9 127.0.0.1 40001\r\n",
    "oversized v1": b"PROXY TCP4 " + b"9" * 200,
    "v2 family mismatch": v2()[:13] + b"\x21" + v2()[14:],
    "v2 oversized": V2_SIGNATURE + b"\x21\x11\xff\xff" + b"\0" * 100,
    "truncated then closed": v2()[:20],
}


@pytest.mark.parametrize("name", BAD)
def test_bad_header_closes_the_connection_and_the_worker_goes_on(server, name):
    worker = worker_of(server)
    before = len(server.lines)
    with Client(server.port) as client:
        client.send(BAD[name])
        if name == "truncated then closed":
            client.sock.shutdown(socket.SHUT_WR)
        assert client.closed_by_server(timeout=5)
        assert client.buffer == b""  # nothing answered: the bytes were not HTTP to answer
    server.wait_for_log(r"\[WARNING\] closing the connection of 127\.0\.0\.1: ", start=before)
    with Client(server.port) as client:
        client.send(v1())
        assert get_environ(client)["REMOTE_ADDR"] == "198.51.100.9"
    assert worker_of(server) == worker


@pytest.mark.parametrize("partial", [b"", b"PROXY TCP4 198.51"], ids=["nothing", "part"])
def test_silent_peer_is_closed_after_the_header_timeout(server, partial):
    before = len(server.lines)
    with Client(server.port, timeout=10) as client:
        client.send(partial)
        started = time.monotonic()
        assert client.closed_by_server(timeout=5)
        assert 0.8 < time.monotonic() - started < 3.5
    server.wait_for_log("no PROXY protocol header within 1s", start=before)


def test_untrusted_peer_is_plain_http_and_cannot_send_a_header():
    with Server(["-w", "1", "--proxy-protocol", "v1", "--proxy-allow-from", "10.1.2.3"],
                ready_path="") as srv:
        srv.wait_for_log("Ready:")
        env = json.loads(request(srv.port, "GET", "/environ").body)
        assert env["REMOTE_ADDR"] == "127.0.0.1"
        with Client(srv.port) as client:
            client.send(v1() + b"GET /environ HTTP/1.1\r\nHost: a\r\n\r\n")
            assert client.read_response().status in (400, 501)


@pytest.mark.parametrize("mode,header,served", [("v1", v2(), False), ("v2", v1(), False),
                                                ("v2", v2(), True)])
def test_mode_limits_the_versions(mode, header, served):
    with Server(["-w", "1", "--proxy-protocol", mode], ready_path="") as srv:
        srv.wait_for_log("Ready:")
        with Client(srv.port) as client:
            client.send(header)
            if served:
                assert get_environ(client)["REMOTE_ADDR"] == "198.51.100.9"
            else:
                assert client.closed_by_server(timeout=5) and client.buffer == b""


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(str(tmp_path_factory.mktemp("cert")))


@pytest.mark.parametrize("header", [v1(), v2()], ids=["v1", "v2"])
def test_tls_after_the_header(certificate, header):
    cert, key = certificate
    with Server(["-w", "1", "--proxy-protocol", "--certfile", cert, "--keyfile", key],
                ready_path="") as srv:
        srv.wait_for_log("Ready:")
        context = ssl.create_default_context(cafile=cert)
        with Client(srv.port) as client:
            client.send(header)
            client.sock = context.wrap_socket(client.sock, server_hostname="127.0.0.1")
            env = get_environ(client)
        assert env["REMOTE_ADDR"] == "198.51.100.9"
        assert env["wsgi.url_scheme"] == "https"


# -- HAProxy in front ------------------------------------------------------------------------

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
HAPROXY_CONF = """
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    option httpchk GET /readyz
{sections}
"""
SECTION = """
frontend f_{name}
    bind 127.0.0.1:{port}
    default_backend b_{name}
backend b_{name}
    server gs {target} {options} check inter 300ms
"""


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="haproxy is not installed "
                    "(make system-deps installs it)")
def test_haproxy_in_front(tmp_path, certificate):
    """HAProxy relays to geventserve with send-proxy (v1) and send-proxy-v2, over TCP, a unix
    socket and TLS; its health checks (the readiness path, sent with a LOCAL header) pass and
    are logged with HAProxy's own address; each request carries the client's address."""
    cert, key = certificate
    sock_path = str(tmp_path / "gs.sock")
    access = tmp_path / "access.log"
    with Server(["-w", "1", "--proxy-protocol", "--readiness-path", "/readyz",
                 "--log-health-checks", "--access-logfile", str(access),
                 "--access-logformat", "%(h)s %(U)s %(s)s"],
                bind=["127.0.0.1:0", f"unix:{sock_path}"], ready_path="") as plain, \
            Server(["-w", "1", "--proxy-protocol", "--readiness-path", "/readyz",
                    "--certfile", cert, "--keyfile", key], ready_path="") as tls:
        plain.wait_for_log("Ready:")
        tls.wait_for_log("Ready:")
        routes = {
            "v1": (f"127.0.0.1:{plain.port}", "send-proxy"),
            "v2": (f"127.0.0.1:{plain.port}", "send-proxy-v2"),
            "unix": (sock_path, "send-proxy-v2"),
            "tls": (f"127.0.0.1:{tls.port}", "send-proxy-v2 ssl verify none"),
        }
        ports = dict(zip(routes, free_ports(len(routes))))
        conf = tmp_path / "haproxy.cfg"
        conf.write_text(HAPROXY_CONF.format(sections="".join(
            SECTION.format(name=name, port=ports[name], target=target, options=options)
            for name, (target, options) in routes.items())))
        with Process([HAPROXY, "-db", "-f", str(conf)], name="haproxy",
                     cwd=str(tmp_path)) as haproxy:
            haproxy.start()
            for name in routes:
                # up once its first check passed: until then HAProxy answers 503 itself
                env = wait_until(lambda n=name: _environ_through(ports[n]), timeout=15,
                                 message=f"HAProxy relaying ({name})")
                assert env["REMOTE_ADDR"] == "127.0.0.2", (name, env)
                assert env["REMOTE_PORT"] != "", name
                assert env["wsgi.url_scheme"] == ("https" if name == "tls" else "http")
            wait_until(lambda: "127.0.0.1 /readyz 200" in _read(access), timeout=5,
                       message="a health check in the access log")
            assert haproxy.exited() is None, haproxy.log
    assert "closing the connection" not in plain.log + tls.log


def _environ_through(port):
    try:
        with Client(port, source="127.0.0.2") as client:
            client.request("GET", "/environ")
            response = client.read_response()
            if response.status != 200:
                return None
            env = json.loads(response.body)
            env["client_port"] = client.sock.getsockname()[1]
            return env
    except (OSError, EOFError):
        return None


def _read(path):
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
