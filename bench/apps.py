"""Plain WSGI apps for the benchmark workloads that the examples do not cover."""

BIG = b"x" * (1024 * 1024)


def big(environ, start_response):
    """A 1 MiB response."""
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BIG)))])
    return [BIG]


def echo(environ, start_response):
    """The request body, echoed."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _flask_sleeper():
    """A Flask app whose views only wait: what they cost is the server's and Flask's, not the
    view's (the examples' I/O-bound app also parses, validates and builds JSON)."""
    import time

    from flask import Flask

    app = Flask("bench")

    @app.route("/sleep/100ms")
    def sleep_100ms() -> str:
        time.sleep(0.1)
        return "slept"

    @app.route("/sleep/1s")
    def sleep_1s() -> str:
        time.sleep(1.0)
        return "slept"

    return app


flask_io = _flask_sleeper()


UNREAD = b"x" * (256 * 1024)


def hostile(environ, start_response):
    """For the hostile-clients rows: a hello that reads no request body, and a 256 KiB response
    at /big (for the clients that never read)."""
    body = UNREAD if environ["PATH_INFO"] == "/big" else b"Hello, World!\n"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
