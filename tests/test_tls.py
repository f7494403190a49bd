"""HTTPS through gevent's ssl: a self-signed certificate made here, real TLS clients."""

import socket
import ssl
import sys
import time

import pytest
import requests

from helpers import APPS, Client, Server, make_certificate, run_command


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_certificate(str(tmp_path_factory.mktemp("cert")))


@pytest.fixture(scope="module", params=["gevent", "sync"])
def tls_server(request, certificate):
    cert, key = certificate
    with Server(["-k", request.param, "-w", "1", "--certfile", cert, "--keyfile", key,
                 "--header-timeout", "2"], ready_path="") as srv:
        srv.wait_for_log("Ready:")
        srv.worker_class = request.param
        yield srv


@pytest.fixture(scope="module")
def gevent_tls_server(certificate):
    cert, key = certificate
    with Server(["-k", "gevent", "-w", "1", "--certfile", cert, "--keyfile", key,
                 "--header-timeout", "2"], ready_path="") as srv:
        srv.wait_for_log("Ready:")
        yield srv


def https_get(port, cert, path="/environ", timeout=5):
    return requests.get(f"https://127.0.0.1:{port}{path}", verify=cert, timeout=timeout)


def test_https_request(tls_server, certificate):
    response = https_get(tls_server.port, certificate[0])
    assert response.status_code == 200
    assert response.json()["wsgi.url_scheme"] == "https"
    big = https_get(tls_server.port, certificate[0], "/file?300000")
    assert big.content == bytes(i % 251 for i in range(300000))  # no sendfile over TLS
    posted = requests.post(f"https://127.0.0.1:{tls_server.port}/echo", data=b"x" * 100000,
                           verify=certificate[0], timeout=5)
    assert posted.content == b"x" * 100000


def test_body_sent_after_the_head_over_tls(tls_server, certificate):
    """Clients write the head and the body as separate TLS records; the body may come later."""
    context = ssl.create_default_context(cafile=certificate[0])
    with Client(tls_server.port) as client:
        client.sock = context.wrap_socket(client.sock, server_hostname="127.0.0.1")
        client.send(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n")
        time.sleep(0.2)
        client.send(b"hello")
        response = client.read_response()
        assert response.status == 200 and response.body == b"hello"


def test_keepalive_over_tls(certificate, gevent_tls_server):
    with requests.Session() as session:
        ports = set()
        for _ in range(5):
            response = session.get(f"https://127.0.0.1:{gevent_tls_server.port}/environ",
                                   verify=certificate[0], timeout=5)
            ports.add(response.json()["REMOTE_PORT"])
        assert len(ports) == 1  # one connection for all five


def test_silent_tls_client_does_not_block_others(certificate, gevent_tls_server):
    port = gevent_tls_server.port
    silent = socket.create_connection(("127.0.0.1", port), timeout=10)
    half = socket.create_connection(("127.0.0.1", port), timeout=10)
    half.sendall(b"\x16\x03\x01\x02\x00\x01")  # the start of a ClientHello, then nothing
    try:
        started = time.monotonic()
        assert https_get(port, certificate[0]).status_code == 200
        assert time.monotonic() - started < 1.0
        # and the silent ones are cut at the head deadline (2 s here)
        silent.settimeout(6)
        assert silent.recv(100) == b""
    finally:
        silent.close()
        half.close()


def test_plain_http_on_the_tls_port(tls_server):
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        data = sock.recv(1000)
    assert data.startswith(b"HTTP/1.1 400 ") and b"HTTPS" in data


def test_tls_client_certificates_required(certificate, tmp_path):
    cert, key = certificate
    with Server(["-w", "1", "--certfile", cert, "--keyfile", key, "--ca-certs", cert,
                 "--cert-reqs", "required"], ready_path="") as srv:
        srv.wait_for_log("Ready:")
        with pytest.raises(requests.exceptions.SSLError):
            https_get(srv.port, cert)
        response = requests.get(f"https://127.0.0.1:{srv.port}/", verify=cert, cert=(cert, key),
                                timeout=5)
        assert response.status_code == 200


def test_certificate_that_does_not_load_is_one_line(tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate\n")
    proc = run_command([sys.executable, "-m", "geventserve", "-b", "127.0.0.1:0",
                        "--certfile", str(bad), "wsgi_app:app"], timeout=30, cwd=APPS)
    assert proc.returncode == 3
    errors = [line for line in proc.stderr.splitlines() if "[ERROR]" in line]
    assert len(errors) == 1 and "cannot load the certificate" in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_tls_is_cooperative_with_gevent(certificate):
    """ssl in the worker is gevent's (patched before the app): no MonkeyPatchWarning."""
    cert, key = certificate
    with Server(["-w", "1", "--certfile", cert, "--keyfile", key], app="coop_app:app",
                ready_path="") as srv:
        srv.wait_for_log("Ready:")
        assert https_get(srv.port, cert, "/info").json()["patched"]["ssl"] is True
    assert "MonkeyPatchWarning" not in srv.log
    assert ssl  # the client side uses the real ssl module
