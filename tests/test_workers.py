"""The two worker classes: cooperative gevent concurrency versus one-at-a-time sync."""

import concurrent.futures
import json
import socket
import threading
import time

import pytest
import requests

from helpers import Client, Server, request


def concurrent_gets(port, path, count, timeout=10.0):
    """Send ``count`` requests at once (all connected first); return (statuses, seconds)."""
    clients = [Client(port, timeout=timeout) for _ in range(count)]
    barrier = threading.Barrier(count)
    results = [None] * count

    def one(i):
        client = clients[i]
        barrier.wait()
        try:
            client.request("GET", path)
            results[i] = client.read_response().status
        except OSError as exc:
            results[i] = repr(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return results, time.monotonic() - started


def test_gevent_worker_is_cooperative():
    with Server(["-k", "gevent", "-w", "1"], app="coop_app:app") as srv:
        statuses, elapsed = concurrent_gets(srv.port, "/sleep?t=0.5", 200)
        assert statuses == [200] * 200
        assert elapsed < 2.0, elapsed
        info = json.loads(request(srv.port, "GET", "/info").body)
        assert all(info["patched"].values()), info
    assert "MonkeyPatchWarning" not in srv.log
    assert "not patched" not in srv.log


def test_sync_worker_serves_one_at_a_time():
    with Server(["-k", "sync", "-w", "1"], app="coop_app:app") as srv:
        statuses, elapsed = concurrent_gets(srv.port, "/sleep?t=0.5", 4)
        assert statuses == [200] * 4
        assert elapsed >= 2.0, elapsed


def test_unpatched_module_is_named():
    with Server(["-k", "gevent", "-w", "1"], app="unpatch_app:app") as srv:
        srv.wait_for_log(r"not patched by gevent: time")


def test_worker_connections_bounds_the_pool():
    """With the pool full the worker stops accepting: the next client waits in the backlog for
    as long as requests being served hold the places (they are never closed to make room). Once
    they are answered and idle, one of them gives its place up to the waiting client."""
    with Server(["-k", "gevent", "-w", "1", "--worker-connections", "2"]) as srv:
        holders = [Client(srv.port, timeout=10), Client(srv.port, timeout=10)]
        for holder in holders:
            holder.request("GET", "/slow-pid?1.5")  # being served: each holds a pool slot
        time.sleep(0.3)
        waiting = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        waiting.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        waiting.settimeout(0.7)
        with pytest.raises(socket.timeout):
            waiting.recv(100)  # connected (kernel backlog), but not served
        for holder in holders:  # answered, then idle keep-alive connections
            assert holder.read_response().status == 200
        waiting.settimeout(5)
        assert waiting.recv(100).startswith(b"HTTP/1.1 200")
        assert sum(holder.closed_by_server(timeout=1) for holder in holders) == 1
        waiting.close()
        for holder in holders:
            holder.close()


def test_flask_end_to_end_with_requests(server):
    with Server(["-k", server.worker_class, "-w", "1"], app="flask_app:app") as srv:
        base = f"http://127.0.0.1:{srv.port}"
        with requests.Session() as session:
            assert session.get(base + "/", timeout=5).text == "Hello from Flask"
            response = session.post(base + "/json?x=1", json={"a": [1, 2]}, timeout=5)
            assert response.json() == {"received": {"a": [1, 2]}, "args": {"x": "1"}}
            response = session.post(base + "/form", data={"name": "n"},
                                    files={"upload": ("f.txt", b"file body")}, timeout=5)
            assert response.json() == {"name": "n", "upload": "file body"}
            response = session.get(base + "/stream", timeout=5)
            assert response.text == "".join(f"line {i}\n" for i in range(5))
            assert response.headers.get("Transfer-Encoding") == "chunked"
            headers = session.get(base + "/headers", timeout=5).json()
            assert headers["remote"] == "127.0.0.1"
            assert headers["url"] == f"{base}/headers"
            assert session.get(base + "/missing", timeout=5).json() == {"error": "not found"}
            # a chunked upload from requests (a generator body)
            response = session.post(base + "/json", data=(p for p in [b'{"k":', b' 1}']),
                                    headers={"Content-Type": "application/json"}, timeout=5)
            assert response.json()["received"] == {"k": 1}


def test_many_keepalive_clients_with_requests():
    with Server(["-k", "gevent", "-w", "1"], app="flask_app:app") as srv:
        base = f"http://127.0.0.1:{srv.port}/"

        def client(_):
            with requests.Session() as session:
                return [session.get(base, timeout=10).status_code for _ in range(20)]

        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            results = [s for statuses in pool.map(client, range(50)) for s in statuses]
        assert results == [200] * 1000
