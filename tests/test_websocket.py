"""WebSocket and Socket.IO apps served unchanged (issue 10), with real clients.

Flask-Sock (simple-websocket takes environ["gunicorn.socket"] and ends the WSGI call with
StopIteration) and Flask-SocketIO in gevent mode (python-engineio reads gevent-websocket's
environ["wsgi.websocket"] when that package is importable, and does as Flask-Sock otherwise),
driven by websocket-client and the python-socketio client; apps written for gevent-websocket's
API, under -k gevent and under its gunicorn worker's name; 1 000 WebSockets in one worker; TERM,
INT, QUIT, HUP and --max-requests with WebSockets open; idle WebSockets outlive the HTTP
deadlines; the watchdog names a blocked WebSocket; foreign worker classes are refused in one line.

The "without gevent-websocket" variant puts tests/apps/without_geventwebsocket first on the
server's PYTHONPATH: a package of that name there fails to import, as if it were not installed.

GEVENTSERVE_WS_REFERENCE=gunicorn runs the same tests against gunicorn (``-k gevent`` and
gevent-websocket's worker, from the same venv) to show that they test the right thing: what
gunicorn lacks is marked as expected to fail there, and what reads geventserve's own log lines
or options is skipped.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence

import pytest
import socketio
import websocket

from helpers import APPS, Client, Server, make_certificate, request, run_command, wait_until

REFERENCE = os.environ.get("GEVENTSERVE_WS_REFERENCE", "") == "gunicorn"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
BLOCKER = os.path.join(APPS, "without_geventwebsocket")
GWS_WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"
TIMEOUT = 10.0  # every client socket operation
CLOSE = websocket.ABNF.OPCODE_CLOSE
BINARY = websocket.ABNF.OPCODE_BINARY

geventserve_only = pytest.mark.skipif(REFERENCE, reason="geventserve's own log lines or options")


def gunicorn_lacks(reason: str, strict: bool = True):
    return pytest.mark.xfail(REFERENCE, strict=strict, reason=f"gunicorn: {reason}")


# At its graceful timeout a gunicorn gevent worker kills the connection greenlets; the one of a
# taken-over connection then reads the socket as the next HTTP request, beside the app's reader
# greenlet (ConcurrentObjectUseError, logged twice), and writes "HTTP/1.1 500" into the
# WebSocket. Unless the arbiter's SIGKILL comes first: a race.
GUNICORN_CUT = gunicorn_lacks("at the graceful timeout it may write an HTTP 500 response into "
                              "a WebSocket and log ConcurrentObjectUseError", strict=False)


def cut_line(grace: int) -> str:
    """The worker's line at the graceful timeout: how many taken-over connections it closes."""
    return (rf"graceful timeout \({grace}s\): closing (\d+) connections? taken over by the "
            r"application")


# -- servers ------------------------------------------------------------------------------------


class GunicornServer(Server):
    """gunicorn from the same venv, with Server's interface (GEVENTSERVE_WS_REFERENCE=gunicorn)."""

    ONLY_GEVENTSERVE = {"--header-timeout", "--body-timeout"}  # these take a value

    def __init__(self, args: Sequence[str], app: str, env: Optional[Dict[str, str]] = None,
                 ready_path: str = "/") -> None:
        cmd = [sys.executable, "-m", "gunicorn", "--no-control-socket", "-b", "127.0.0.1:0"]
        skip = False
        for arg in args:
            if skip or arg in self.ONLY_GEVENTSERVE:
                skip = not skip
                continue
            cmd.append(arg)
        cmd.append(app)
        full_env = {k: v for k, v in os.environ.items()
                    if k not in ("GUNICORN_CMD_ARGS", "WEB_CONCURRENCY")}
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = os.pathsep.join([APPS, full_env.get("PYTHONPATH", "")])
        full_env.update(env or {})
        self.args = list(args)
        self.proc = subprocess.Popen(cmd, cwd=APPS, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.pid = self.proc.pid
        self.lines: List[str] = []
        self.out_lines: List[str] = []
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stderr, self.lines),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stdout,
                                                                   self.out_lines), daemon=True)]
        for reader in self._readers:
            reader.start()
        self.port = 0
        self.addresses = []
        self.wait_listening()
        if ready_path:
            self.wait_ready(ready_path)


def serve(app: str, *args: str, worker: str = "gevent", gevent_websocket: bool = True,
          ready_path: str = "/") -> Server:
    """One worker of ``worker`` serving ``app`` from tests/apps; without gevent-websocket, a
    package of that name that fails to import comes first on the server's path."""
    env = None if gevent_websocket else {"PYTHONPATH": os.pathsep.join([BLOCKER, APPS])}
    argv = ["-k", worker, "-w", "1", *args]
    if REFERENCE:
        return GunicornServer(argv, app, env, ready_path)
    return Server(argv, app=app, env=env, ready_path=ready_path)


def assert_no_errors(srv: Server) -> None:
    log = srv.log
    assert "Traceback" not in log and "[ERROR]" not in log, log


def raise_open_files(needed: int) -> None:
    """The server inherits this process's limit: both sides need a descriptor per WebSocket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"the open-files hard limit ({hard}) is below {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


# -- clients ------------------------------------------------------------------------------------


def ws_connect(port: int, path: str = "/echo") -> websocket.WebSocket:
    return websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=TIMEOUT)


def echo(ws: websocket.WebSocket, message: str) -> None:
    ws.send(message)
    assert ws.recv() == message


def worker_pid(ws: websocket.WebSocket) -> int:
    ws.send("pid")
    return int(ws.recv())


def seen_close(ws: websocket.WebSocket, timeout: float) -> str:
    """How the server ended the WebSocket ("close frame" or "eof"); fails if it hangs."""
    ws.settimeout(timeout)
    try:
        while True:
            opcode, _ = ws.recv_data(control_frame=True)
            if opcode == CLOSE:
                return "close frame"
    except websocket.WebSocketTimeoutException:
        raise AssertionError(f"the WebSocket was neither answered nor closed within {timeout}s")
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        return "eof"


def close_all(sockets: Sequence[websocket.WebSocket]) -> None:
    for ws in sockets:
        try:
            ws.shutdown()
        except Exception:
            pass


def connect_on_new_worker(port: int, old_pid: int) -> Optional[websocket.WebSocket]:
    """A WebSocket served by a worker other than ``old_pid``, or None (for wait_until)."""
    ws = ws_connect(port)
    if worker_pid(ws) != old_pid:
        return ws
    ws.shutdown()
    return None


# -- Flask-Sock: the app takes environ["gunicorn.socket"] ---------------------------------------


@pytest.mark.parametrize("worker", [
    "gevent",
    pytest.param(GWS_WORKER, marks=gunicorn_lacks(
        "gevent-websocket answers the handshake before the app runs, then simple-websocket "
        "sends a second 101 as WebSocket data"))])
def test_flask_sock_text_binary_and_large_messages(worker):
    with serve("ws_echo:app", worker=worker) as srv:
        ws = ws_connect(srv.port)
        try:
            assert ws.getstatus() == 101
            echo(ws, "hello")
            echo(ws, "grüße, 世界")
            ws.send_binary(b"\x00\x01\xfe\xff")
            assert ws.recv_data() == (BINARY, b"\x00\x01\xfe\xff")
            big = os.urandom(1 << 20)
            ws.send_binary(big)
            opcode, data = ws.recv_data()
            assert opcode == BINARY and data == big
            text = "ü" * (1 << 19)  # 1 MiB of UTF-8
            echo(ws, text)
            for i in range(100):  # many in flight at once
                ws.send(f"m{i}")
            assert [ws.recv() for _ in range(100)] == [f"m{i}" for i in range(100)]
        finally:
            ws.shutdown()
        assert request(srv.port, "GET", "/").status == 200
        assert_no_errors(srv)


def test_flask_sock_server_closes():
    with serve("ws_echo:app") as srv:
        ws = ws_connect(srv.port)
        try:
            echo(ws, "before")
            ws.send("close")
            opcode, data = ws.recv_data(control_frame=True)
            assert opcode == CLOSE
            assert data == (1000).to_bytes(2, "big") + b"bye"
            assert seen_close(ws, 5) == "eof"  # then the server ends the connection
        finally:
            ws.shutdown()
        assert request(srv.port, "GET", "/").status == 200
        assert_no_errors(srv)


def test_flask_sock_client_closes():
    with serve("ws_echo:app") as srv:
        ws = ws_connect(srv.port)
        try:
            echo(ws, "before")
            ws.send_close(1000, b"done")
            opcode, data = ws.recv_data(control_frame=True)
            assert opcode == CLOSE
            assert data[:2] == (1000).to_bytes(2, "big")  # the app's library answered it
            assert seen_close(ws, 5) == "eof"
        finally:
            ws.shutdown()
        echo_again = ws_connect(srv.port)
        try:
            echo(echo_again, "the worker serves on")
        finally:
            echo_again.shutdown()
        assert_no_errors(srv)


@geventserve_only
def test_taken_over_connection_is_one_access_log_line():
    args = ("--access-logfile", "-", "--access-logformat", "%(r)s %(s)s %(L)s")
    with serve("ws_echo:app", *args) as srv:
        ws = ws_connect(srv.port)
        echo(ws, "hello")
        time.sleep(1.0)
        ws.close(timeout=3)

        def echo_lines():
            return [line for line in srv.stdout.splitlines() if "/echo" in line]

        wait_until(echo_lines, timeout=10, message="the access log line of /echo")
        time.sleep(0.5)  # a second line would be there by now
        lines = echo_lines()
        assert len(lines) == 1, lines
        request_line, status, seconds = lines[0].rsplit(" ", 2)
        assert (request_line, status) == ("GET /echo HTTP/1.1", "101")
        assert float(seconds) >= 1.0  # how long the connection was held
        assert_no_errors(srv)


@geventserve_only
@pytest.mark.parametrize("app,path", [("ws_echo:app", "/echo"), ("ws_geventwebsocket:app", "/")],
                         ids=["gunicorn.socket", "wsgi.websocket"])
def test_websocket_over_tls(tmp_path, app, path):
    """Under TLS the socket the app takes over is the TLS one, either way."""
    cert, key = make_certificate(str(tmp_path))
    with serve(app, "--certfile", cert, "--keyfile", key, ready_path="") as srv:
        srv.wait_for_log("Ready:")
        ws = websocket.create_connection(f"wss://127.0.0.1:{srv.port}{path}", timeout=TIMEOUT,
                                         sslopt={"ca_certs": cert})
        try:
            echo(ws, "over TLS")
            big = os.urandom(1 << 20)
            ws.send_binary(big)
            assert ws.recv_data() == (BINARY, big)
        finally:
            ws.close(timeout=3)
        assert_no_errors(srv)


# -- Flask-SocketIO (python-engineio, gevent mode) ----------------------------------------------

TRANSPORTS = {"websocket": ["websocket"], "upgrade": ["polling", "websocket"]}
ENGINEIO_NEEDS_WSGI_WEBSOCKET = gunicorn_lacks(
    "python-engineio asks for environ['wsgi.websocket'] whenever gevent-websocket is importable; "
    "gunicorn -k gevent has none: RuntimeError, 500")


@pytest.mark.parametrize("transports", ["websocket", "upgrade"])
@pytest.mark.parametrize("worker,gevent_websocket", [
    pytest.param("gevent", True, id="gevent-with-gevent-websocket",
                 marks=ENGINEIO_NEEDS_WSGI_WEBSOCKET),
    pytest.param("gevent", False, id="gevent-without-gevent-websocket"),
    pytest.param(GWS_WORKER, True, id="GeventWebSocketWorker")])
def test_flask_socketio(worker, gevent_websocket, transports):
    with serve("ws_socketio:app", "--access-logfile", "-", worker=worker,
               gevent_websocket=gevent_websocket) as srv:
        driver = "gevent-websocket" if gevent_websocket else "simple-websocket"
        assert request(srv.port, "GET", "/").text == f"ws_socketio driver={driver}\n"
        clients = [socketio.Client(reconnection=False) for _ in range(3)]
        said: Dict[int, list] = {i: [] for i in range(3)}
        for i, client in enumerate(clients):
            client.on("said", lambda data, i=i: said[i].append(data))
        try:
            for client in clients:
                client.connect(f"http://127.0.0.1:{srv.port}", transports=TRANSPORTS[transports],
                               wait_timeout=TIMEOUT)
                assert client.transport() == "websocket"
            data = {"n": 1, "text": "grüße"}
            assert clients[0].call("echo", data, timeout=TIMEOUT) == data
            rooms = [client.call("join", room, timeout=TIMEOUT)
                     for client, room in zip(clients, ["red", "red", "blue"])]
            assert rooms == ["red", "red", "blue"]
            message = {"room": "red", "text": "hi"}
            assert clients[1].call("say", message, timeout=TIMEOUT) == "sent"
            wait_until(lambda: said[0] and said[1], timeout=TIMEOUT, message="the room's message")
            time.sleep(0.3)  # a message to the other room would be there by now
            assert said == {0: [message], 1: [message], 2: []}
        finally:
            for client in clients:
                client.disconnect()
        time.sleep(0.5)  # the server's side of the disconnections
        assert_no_errors(srv)
        assert not re.search(r'HTTP/1\.1" 5\d\d ', srv.stdout), srv.stdout


@ENGINEIO_NEEDS_WSGI_WEBSOCKET
def test_chat_example():
    with serve("chat:app", "--chdir", EXAMPLES) as srv:
        heard: Dict[str, list] = {"ann": [], "bob": []}
        clients = {name: socketio.Client(reconnection=False) for name in heard}
        for name, client in clients.items():
            client.on("message", lambda data, name=name: heard[name].append(data))
        try:
            for client in clients.values():
                client.connect(f"http://127.0.0.1:{srv.port}", transports=["websocket"],
                               wait_timeout=TIMEOUT)
            assert clients["ann"].call("join", {"room": "lobby", "name": "ann"},
                                       timeout=TIMEOUT) == 1
            assert clients["bob"].call("join", {"room": "lobby", "name": "bob"},
                                       timeout=TIMEOUT) == 2
            assert clients["bob"].call("message", {"room": "lobby", "text": "hello"},
                                       timeout=TIMEOUT) is True
            wait_until(lambda: heard["ann"] and heard["bob"], timeout=TIMEOUT)
            for name in heard:
                assert [(m["name"], m["text"]) for m in heard[name]] == [("bob", "hello")]
        finally:
            for client in clients.values():
                client.disconnect()


# -- gevent-websocket's API: environ["wsgi.websocket"] ------------------------------------------

NO_WSGI_WEBSOCKET = gunicorn_lacks("-k gevent offers no environ['wsgi.websocket']")


@pytest.mark.parametrize("worker", [pytest.param("gevent", marks=NO_WSGI_WEBSOCKET), GWS_WORKER])
def test_gevent_websocket_app(worker):
    with serve("ws_geventwebsocket:app", worker=worker) as srv:
        assert request(srv.port, "GET", "/").text == "ws_geventwebsocket\n"
        ws = ws_connect(srv.port, "/")
        try:
            assert ws.getstatus() == 101
            echo(ws, "hello")
            ws.send("version")
            assert ws.recv() == "13"
            ws.send_binary(b"\x00\xff")
            assert ws.recv_data() == (BINARY, b"\x00\xff")
            big = os.urandom(1 << 20)
            ws.send_binary(big)
            assert ws.recv_data() == (BINARY, big)
            ws.send("close")
            opcode, _ = ws.recv_data(control_frame=True)
            assert opcode == CLOSE
            assert seen_close(ws, 5) == "eof"
        finally:
            ws.shutdown()
        assert_no_errors(srv)


@pytest.mark.parametrize("worker", [
    pytest.param("gevent", marks=NO_WSGI_WEBSOCKET),
    pytest.param(GWS_WORKER, marks=gunicorn_lacks(
        "gevent-websocket answers 101 before the app runs, whatever the app then answers"))])
def test_wsgi_websocket_handshake_only_when_used(worker):
    """environ["wsgi.websocket"] is there, but an app that answers without using it sends a
    plain HTTP response: no 101 went out before it."""
    with serve("ws_geventwebsocket:app", worker=worker) as srv, \
            Client(srv.port, timeout=TIMEOUT) as client:
        client.request("GET", "/decline", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                            ("Sec-WebSocket-Version", "13")])
        response = client.read_response()
        assert (response.status, response.body) == (403, b"declined\n")
        assert_no_errors(srv)


@pytest.mark.parametrize("worker", [pytest.param("gevent", marks=NO_WSGI_WEBSOCKET), GWS_WORKER])
def test_gevent_websocket_resource_broadcast(worker):
    """gevent-websocket's Resource and WebSocketApplication, and ws.handler.server.clients."""
    with serve("ws_geventwebsocket:resource", worker=worker) as srv:
        first, second = ws_connect(srv.port, "/chat"), ws_connect(srv.port, "/chat")
        try:
            first.send("hi all")
            assert first.recv() == "hi all"
            assert second.recv() == "hi all"
        finally:
            close_all([first, second])
        assert_no_errors(srv)


# -- many connections, deadlines, the watchdog ---------------------------------------------------


@pytest.mark.timeout(300)
def test_a_thousand_websockets_in_one_worker():
    count = 1000
    raise_open_files(2 * count + 256)
    with serve("ws_echo:app") as srv, ThreadPoolExecutor(16) as pool:
        sockets: List[websocket.WebSocket] = []
        lock = threading.Lock()

        def open_one(_):
            ws = ws_connect(srv.port)
            with lock:
                sockets.append(ws)

        try:
            list(pool.map(open_one, range(count)))

            def round_trip(i):
                echo(sockets[i], f"m{i}")

            list(pool.map(round_trip, range(count)))
            assert len(srv.worker_pids()) == 1
        finally:
            close_all(sockets)
        assert_no_errors(srv)


def test_taken_over_connections_count_against_worker_connections():
    with serve("ws_echo:app", "--worker-connections", "2") as srv:
        first, second = ws_connect(srv.port), ws_connect(srv.port)
        try:
            echo(first, "one")
            echo(second, "two")
            with Client(srv.port, timeout=1.5) as client:
                client.request("GET", "/")
                with pytest.raises(socket.timeout):
                    client.read_response()  # both places are taken: it waits
                first.close(timeout=3)
                client.sock.settimeout(TIMEOUT)
                assert client.read_response().status == 200
        finally:
            close_all([first, second])


def test_idle_websocket_outlives_the_http_deadlines():
    with serve("ws_echo:app", "--keep-alive", "1", "--header-timeout", "1",
               "--body-timeout", "1") as srv:
        ws = ws_connect(srv.port)
        try:
            echo(ws, "hello")
            time.sleep(3.5)
            echo(ws, "still here")
        finally:
            ws.shutdown()
        assert_no_errors(srv)


@geventserve_only
def test_watchdog_names_a_blocked_websocket():
    with serve("ws_echo:app", "--timeout", "1") as srv:
        ws = ws_connect(srv.port)
        try:
            echo(ws, "hello")
            time.sleep(1.5)
            ws.send("block")
            match = srv.wait_for_log(r"WORKER TIMEOUT .*serving GET /echo\b.*?([\d.]+)s\)",
                                     timeout=15)
            assert float(match.group(1)) >= 1.5  # how long the WebSocket has been open
            seen_close(ws, TIMEOUT)
        finally:
            ws.shutdown()


# -- stops and reloads with WebSockets open ------------------------------------------------------


@GUNICORN_CUT
def test_term_lets_websockets_run_until_the_graceful_timeout():
    grace = 3
    with serve("ws_echo:app", "--graceful-timeout", str(grace)) as srv:
        sockets = [ws_connect(srv.port) for _ in range(3)]
        try:
            for ws in sockets:
                echo(ws, "before")
            started = time.monotonic()
            srv.signal(signal.SIGTERM)
            time.sleep(1.0)
            for ws in sockets:
                echo(ws, "during the grace")
            for ws in sockets:
                seen_close(ws, grace + TIMEOUT)
            assert time.monotonic() - started >= grace - 0.5
            assert srv.wait(TIMEOUT) == 0
            assert time.monotonic() - started < grace + 5
        finally:
            close_all(sockets)
        assert_no_errors(srv)
        if not REFERENCE:
            assert srv.wait_for_log(cut_line(grace)).group(1) == "3"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGQUIT], ids=["INT", "QUIT"])
def test_fast_stop_closes_websockets_at_once(sig):
    with serve("ws_echo:app", "--graceful-timeout", "30") as srv:
        sockets = [ws_connect(srv.port) for _ in range(3)]
        try:
            for ws in sockets:
                echo(ws, "before")
            started = time.monotonic()
            srv.signal(sig)
            for ws in sockets:
                seen_close(ws, 5)
            assert srv.wait(TIMEOUT) == 0
            assert time.monotonic() - started < 3
        finally:
            close_all(sockets)
        assert_no_errors(srv)


@GUNICORN_CUT
def test_hup_moves_new_websockets_to_the_new_worker():
    grace = 5
    with serve("ws_echo:app", "--graceful-timeout", str(grace)) as srv:
        old = ws_connect(srv.port)
        new = None
        try:
            old_pid = worker_pid(old)
            start = len(srv.lines)
            srv.signal(signal.SIGHUP)
            new = wait_until(lambda: connect_on_new_worker(srv.port, old_pid), timeout=15,
                             message="a WebSocket on the new worker")
            echo(old, "the old worker still serves it")
            seen_close(old, grace + TIMEOUT)
            wait_until(lambda: old_pid not in srv.worker_pids(), timeout=TIMEOUT)
            echo(new, "the new one goes on")
            assert srv.proc.poll() is None
        finally:
            close_all([old] + ([new] if new else []))
        assert_no_errors(srv)
        if not REFERENCE:
            assert srv.wait_for_log(cut_line(grace), start=start).group(1) == "1"


@gunicorn_lacks("the replacement starts only once the old worker has exited, after its "
                "graceful timeout")
@pytest.mark.parametrize("limit", [2])
def test_max_requests_retirement_is_bounded_by_the_graceful_timeout(limit):
    """The worker retires after its WebSocket requests; a replacement takes new connections at
    once, and the old worker's WebSockets are closed at the graceful timeout."""
    grace = 4
    with serve("ws_echo:app", "--max-requests", str(limit), "--graceful-timeout", str(grace),
               ready_path="") as srv:
        held = [ws_connect(srv.port) for _ in range(limit)]
        new = None
        try:
            old_pid = worker_pid(held[0])
            assert worker_pid(held[1]) == old_pid
            retired = time.monotonic()
            new = wait_until(lambda: connect_on_new_worker(srv.port, old_pid), timeout=15,
                             message="a WebSocket on the replacement worker")
            for ws in held:
                echo(ws, "still served")
            assert time.monotonic() - retired < grace
            for ws in held:
                seen_close(ws, grace + TIMEOUT)
            echo(new, "the replacement goes on")
        finally:
            close_all(held + ([new] if new else []))
        assert_no_errors(srv)


# -- worker classes geventserve does not run -----------------------------------------------------


@geventserve_only
@pytest.mark.parametrize("name,kind", [
    ("gthread", r"\bthread(s|ed)?\b"),
    ("gunicorn.workers.gthread.ThreadWorker", r"\bthread(s|ed)?\b"),
    ("uvicorn.workers.UvicornWorker", r"\bASGI\b"),
])
def test_foreign_worker_class_is_one_line(name, kind):
    """One line: what the class is and what to use instead; a non-zero exit, no traceback."""
    result = run_command([sys.executable, "-m", "geventserve", "-k", name, "-b", "127.0.0.1:0",
                          "wsgi_app:app"], timeout=30, cwd=APPS)
    assert result.returncode > 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if name in line]
    assert len(lines) == 1, result.stderr
    assert re.search(kind, lines[0], re.IGNORECASE), lines[0]
    assert "-k gevent" in lines[0], lines[0]
