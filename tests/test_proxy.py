"""Behind a proxy: forwarding headers believed only from trusted peers; SCRIPT_NAME prefixes."""

import json

import pytest

from helpers import Client, Server, request

FORWARDED = [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")]


def environ(port, headers=(), source=None, path="/environ", unix=None):
    with Client(port, source=source, unix=unix) as client:
        client.request("GET", path, headers=headers)
        return json.loads(client.read_response().body)


@pytest.fixture(scope="module")
def default_server():
    with Server(["-w", "1"]) as srv:
        yield srv


def test_headers_from_an_allowed_peer_are_believed(default_server):
    env = environ(default_server.port, FORWARDED, source="127.0.0.1")
    assert env["REMOTE_ADDR"] == "203.0.113.7"
    assert env["wsgi.url_scheme"] == "https"
    assert env["SERVER_PORT"] == "443"  # the Host has no port: the scheme's


def test_headers_from_another_peer_change_nothing(default_server):
    env = environ(default_server.port, FORWARDED, source="127.0.0.2")
    assert env["REMOTE_ADDR"] == "127.0.0.2"
    assert env["wsgi.url_scheme"] == "http"
    assert env["HTTP_X_FORWARDED_FOR"] == "203.0.113.7"  # still visible, just not believed


def test_client_cannot_spoof_through_the_proxy(default_server):
    # the client sent its own X-Forwarded-For; the proxy appended the real client address
    env = environ(default_server.port, [("X-Forwarded-For", "6.6.6.6, 198.51.100.4")])
    assert env["REMOTE_ADDR"] == "198.51.100.4"


def test_x_forwarded_ssl(default_server):
    env = environ(default_server.port, [("X-Forwarded-Ssl", "on")])
    assert env["wsgi.url_scheme"] == "https"


def test_garbage_in_forwarded_headers_is_ignored(default_server):
    env = environ(default_server.port, [("X-Forwarded-For", "not-an-ip"),
                                        ("X-Forwarded-Proto", "gopher")])
    assert env["REMOTE_ADDR"] == "127.0.0.1"
    assert env["wsgi.url_scheme"] == "http"


def test_cidr_ranges_and_star():
    with Server(["-w", "1", "--forwarded-allow-ips", "127.0.0.0/30"]) as srv:
        assert environ(srv.port, FORWARDED, source="127.0.0.2")["REMOTE_ADDR"] == "203.0.113.7"
        assert environ(srv.port, FORWARDED, source="127.0.0.5")["REMOTE_ADDR"] == "127.0.0.5"
    with Server(["-w", "1", "--forwarded-allow-ips", "*"]) as srv:
        assert environ(srv.port, FORWARDED, source="127.0.0.9")["REMOTE_ADDR"] == "203.0.113.7"


def test_chain_of_trusted_proxies():
    with Server(["-w", "1", "--forwarded-allow-ips", "127.0.0.1,10.0.0.0/8"]) as srv:
        env = environ(srv.port, [("X-Forwarded-For", "6.6.6.6, 198.51.100.4, 10.1.2.3")])
        assert env["REMOTE_ADDR"] == "198.51.100.4"


def test_unix_socket_peers_are_trusted(tmp_path):
    path = str(tmp_path / "proxy.sock")
    with Server(["-w", "1"], bind=[f"unix:{path}"], ready_path="") as srv:
        srv.wait_for_log("Ready:")
        env = environ(0, FORWARDED, unix=path)
    assert env["REMOTE_ADDR"] == "203.0.113.7" and env["wsgi.url_scheme"] == "https"


def test_root_path_sets_script_name():
    with Server(["-w", "1", "--root-path", "/app"]) as srv:
        env = environ(srv.port, path="/app/environ")
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/app", "/environ")
        # a path outside the prefix is passed whole
        assert request(srv.port, "GET", "/other").status == 404


def test_script_name_from_the_environment():
    with Server(["-w", "1"], env={"SCRIPT_NAME": "/mounted"}) as srv:
        env = environ(srv.port, path="/mounted/environ")
        assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mounted", "/environ")


def test_raw_env_reaches_the_app():
    with Server(["-w", "1", "-e", "GREETING=hello there", "--env", "OTHER=2"]) as srv:
        assert environ(srv.port)["GREETING"] == "hello there"


def test_script_name_header_from_a_trusted_proxy(default_server):
    env = environ(default_server.port, [("SCRIPT_NAME", "/mounted")], path="/mounted/environ")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/mounted", "/environ")


def test_script_name_header_from_another_peer_is_dropped(default_server):
    env = environ(default_server.port, [("SCRIPT_NAME", "/mounted")], source="127.0.0.2",
                  path="/environ")
    assert env["SCRIPT_NAME"] == "" and "HTTP_SCRIPT_NAME" not in env


def test_x_forwarded_protocol_ssl(default_server):
    assert environ(default_server.port, [("X-Forwarded-Protocol", "ssl")])["wsgi.url_scheme"] == "https"
