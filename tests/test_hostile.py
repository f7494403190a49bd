"""Hostile and slow clients against the real server: a full pool makes room for a new client
(http/eviction.py), and never at the expense of a request being served."""

import socket
import time

from helpers import Client, Server


def _slow_heads(port: int, count: int):
    """``count`` connections that send the start of a head and nothing more."""
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(b"GET /pid HTTP/1.1\r\n")
        socks.append(sock)
    return socks


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except socket.timeout:
        return False
    except OSError:
        return True


def test_a_full_pool_makes_room_for_a_new_client():
    """2 workers of 4 connections each, all held by clients that send a head slowly (and more
    waiting in the backlog), and --header-timeout far away: a new client is still served, since
    a full worker closes the slowest head to make room; the requests being served are not
    touched."""
    args = ["-w", "2", "--worker-connections", "4", "--header-timeout", "60"]
    with Server(args) as srv:
        serving = []
        held = []
        try:
            for _ in range(2):  # requests being served while the pool fills up
                client = Client(srv.port, timeout=20)
                client.request("GET", "/slow-pid?3")
                serving.append(client)
            time.sleep(0.3)
            held = _slow_heads(srv.port, 10)  # 6 places left, 4 more in the backlog
            time.sleep(0.5)
            with Client(srv.port, timeout=15) as client:
                client.request("GET", "/pid")
                response = client.read_response()
                assert response.status == 200 and response.body.isdigit()
            assert any(_closed(sock) for sock in held), "no slow connection was closed"
            for client in serving:  # never closed to make room: answered in full
                response = client.read_response()
                assert response.status == 200 and response.body.isdigit()
        finally:
            for client in serving:
                client.close()
            for sock in held:
                sock.close()
