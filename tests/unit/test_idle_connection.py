"""An idle keep-alive connection holds nothing of the request it answered (its memory is what
10 000 idle connections cost a worker: `make bench`'s idle row)."""

import gc
import socket
import threading
import time

from geventserve.http.connection import Connection, ServerState
from geventserve.http.parser import Request
from geventserve.http.settings import HTTPSettings
from geventserve.http.wsgi import WSGIHandler
from geventserve.settings import Config

SETTINGS = HTTPSettings.from_config(Config())


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]


def live_requests():
    gc.collect()
    return [thing for thing in gc.get_objects() if type(thing) is Request]


def test_an_idle_connection_keeps_no_request():
    """Between two requests (the connection waits in recv for the next head), neither the
    parser nor the request loop's frame keeps the last one alive; nor its fields, nor a view
    of its own of the worker's receive buffer."""
    ours, theirs = socket.socketpair()
    theirs.settimeout(10)
    state = ServerState()
    conn = Connection(ours, SETTINGS, WSGIHandler(app=app), state,
                      listener_environ={"wsgi.url_scheme": "http", "SCRIPT_NAME": "",
                                        "SERVER_NAME": "localhost", "SERVER_PORT": "80"},
                      remote_addr="127.0.0.1", remote_port="5000")
    serving = threading.Thread(target=conn.run, daemon=True)
    serving.start()
    try:
        assert not live_requests()
        theirs.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 500 + b"\r\n\r\n")
        answer = b""
        while not answer.endswith(b"hello"):
            answer += theirs.recv(4096)
        assert answer.startswith(b"HTTP/1.1 200 OK")
        # the connection is back in recv, idle: wait for it to be there
        for _ in range(200):
            if conn.request is None and not live_requests():
                break
            time.sleep(0.01)
        assert live_requests() == []
        assert conn.parser._buffer_view is state.view
    finally:
        theirs.close()
        serving.join(10)
        ours.close()
