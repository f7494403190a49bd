"""A plain WSGI app with one route per behaviour the functional tests check."""

import json
import os
import sys
import tempfile
import time

CLOSED = {"count": 0}
STATE = {}


def _text(start_response, body, status="200 OK", headers=()):
    data = body.encode() if isinstance(body, str) else body
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(data)))] + list(headers))
    return [data]


class Closing:
    """An iterable that records that close() was called."""

    def __init__(self, chunks, fail_at=None):
        self.chunks = chunks
        self.fail_at = fail_at

    def __iter__(self):
        for i, chunk in enumerate(self.chunks):
            if i == self.fail_at:
                raise RuntimeError("failure while iterating")
            yield chunk

    def close(self):
        CLOSED["count"] += 1


def app(environ, start_response):
    path = environ["PATH_INFO"]
    query = environ.get("QUERY_STRING", "")
    if path == "/calls":
        return _text(start_response, str(STATE.get("calls", 0)))
    STATE["calls"] = STATE.get("calls", 0) + 1
    if path == "/":
        return _text(start_response, "hello")
    if path == "/pid":
        return _text(start_response, str(os.getpid()))
    if path == "/grow":  # keep N MiB more (touched, so resident): memory that creeps
        STATE.setdefault("grown", []).append(b"x" * (int(query or "1") << 20))
        return _text(start_response, str(os.getpid()))
    if path == "/slow-pid":
        time.sleep(float(query or "0.5"))
        return _text(start_response, str(os.getpid()))
    if path == "/environ" or path.startswith("/environ/"):
        data = {k: v for k, v in environ.items() if isinstance(v, (str, bool, int, tuple))}
        data.update((k, v) for k, v in os.environ.items() if k in ("GREETING", "OTHER"))
        data["wsgi.input_class"] = type(environ["wsgi.input"]).__name__
        data["wsgi.errors_has_write"] = hasattr(environ["wsgi.errors"], "write")
        data["wsgi.file_wrapper_present"] = "wsgi.file_wrapper" in environ
        return _text(start_response, json.dumps(data), headers=[("X-Kind", "environ")])
    if path == "/echo":
        body = environ["wsgi.input"].read()
        return _text(start_response, body)
    if path == "/echo-sized":
        size = int(query or "3")
        stream = environ["wsgi.input"]
        parts = []
        while True:
            part = stream.read(size)
            if not part:
                break
            parts.append(part)
        eof_again = stream.read()
        return _text(start_response, json.dumps({"parts": [p.decode() for p in parts],
                                                 "eof": eof_again.decode()}))
    if path == "/echo-lines":
        stream = environ["wsgi.input"]
        first = stream.readline()
        limited = stream.readline(2)
        rest = stream.readlines()
        return _text(start_response, json.dumps({"first": first.decode(), "limited": limited.decode(),
                                                 "rest": [r.decode() for r in rest],
                                                 "end": stream.readline().decode()}))
    if path == "/echo-iter":
        lines = [line.decode() for line in environ["wsgi.input"]]
        return _text(start_response, json.dumps(lines))
    if path == "/ignore-body":
        return _text(start_response, "ignored")
    if path == "/read-some":
        environ["wsgi.input"].read(int(query or "1"))
        return _text(start_response, "read some")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"one,", b"", b"two,", b"three"])
    if path == "/stream-cl":
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "11")])
        return Closing([b"one,", b"two,", b"thr"])
    if path == "/list-no-cl":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"a", b"b", b"c"]
    if path == "/too-long":
        start_response("200 OK", [("Content-Length", "3")])
        return [b"abcdef"]
    if path == "/too-short":
        start_response("200 OK", [("Content-Length", "10")])
        return Closing([b"abc"])
    if path == "/status":
        code = query or "204"
        start_response(f"{code} Whatever", [("Content-Length", "4")] if code == "304" else [])
        return [b"body"]
    if path == "/empty":
        start_response("200 OK", [])
        return []
    if path == "/late-start":
        def gen():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"late"
        return gen()
    if path == "/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written,")
        return [b"returned"]
    if path == "/error-before":
        raise RuntimeError("boom before the headers")
    if path == "/error-after":
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Closing([b"first chunk", b"never"], fail_at=1)
    if path == "/error-in-close":
        class BadClose:
            def __iter__(self):
                return iter([b"ok"])

            def close(self):
                raise ValueError("close failed")
        start_response("200 OK", [("Content-Length", "2")])
        return BadClose()
    if path == "/exc-info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("handled")
        except ValueError:
            start_response("500 Oops", [("Content-Type", "text/plain"), ("X-Replaced", "yes")],
                           sys.exc_info())
        return [b"replaced"]
    if path == "/exc-info-after":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"sent,")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Oops", [], sys.exc_info())
        return [b"unreachable"]
    if path == "/twice":
        start_response("200 OK", [])
        start_response("200 OK", [])
        return [b"twice"]
    if path == "/odd-headers":
        from collections import namedtuple

        class Safe(str):  # like Django's SafeString
            pass
        Header = namedtuple("Header", "name value")
        start_response("200 OK", [Header("X-Named", "tuple"), (Safe("X-Safe"), Safe("str"))])
        return [b"odd but valid"]
    if path == "/bad-header":
        kind = query
        headers = {"crlf": [("X-Bad", "a\r\nInjected: yes")],
                   "lf": [("X-Bad", "a\nb")],
                   "nul": [("X-Bad", "a\x00b")],
                   "name": [("Bad Name", "x")],
                   "colon": [("Bad:Name", "x")],
                   "bytes": [(b"X-Bytes", "x")],
                   "value-type": [("X-Int", 5)],
                   "non-latin1": [("X-Uni", "\u2603")],
                   "cl": [("Content-Length", "abc")]}[kind]
        start_response("200 OK", headers)
        return [b"should never be sent"]
    if path == "/bad-status":
        start_response({"crlf": "200 OK\r\nX: y", "short": "20 OK", "text": "OK",
                        "int": 200, "over": "600 Beyond"}[query], [])
        return [b"never"]
    if path == "/not-bytes":
        start_response("200 OK", [])
        return ["a str"]
    if path == "/no-start-response":
        return [b"no start_response"]
    if path == "/closed-count":
        return _text(start_response, str(CLOSED["count"]))
    if path == "/file":
        size = int(query or "100000")
        fh = tempfile.TemporaryFile()
        fh.write(bytes(i % 251 for i in range(size)))
        fh.seek(0)
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return environ["wsgi.file_wrapper"](fh, 8192)
    if path == "/file-offset":
        fh = tempfile.TemporaryFile()
        fh.write(b"0123456789")
        fh.seek(4)
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](fh)
    if path == "/file-bytesio":
        import io
        start_response("200 OK", [])
        return environ["wsgi.file_wrapper"](io.BytesIO(b"from bytesio"), 4)
    if path == "/sleep":
        time.sleep(float(query or "0.5"))
        return _text(start_response, "slept")
    if path == "/connection-close":
        return _text(start_response, "bye", headers=[("Connection", "close")])
    if path == "/hop":
        start_response("200 OK", [("Transfer-Encoding", "chunked"), ("Keep-Alive", "timeout=99"),
                                  ("Content-Type", "text/plain")])
        return [b"x", b"y"]
    if path == "/big":
        size = int(query or "1048576")
        return _text(start_response, b"x" * size)
    if path == "/errors-stream":
        environ["wsgi.errors"].write("written to wsgi.errors\n")
        environ["wsgi.errors"].flush()
        return _text(start_response, "ok")
    if path == "/spin":
        end = time.time() + float(query or "5")
        while time.time() < end:
            pass
        return _text(start_response, "spun")
    if path == "/spin-started":  # /spin, once the response has started
        def spin_after_head():
            start_response("200 OK", [("Content-Type", "text/plain")])
            yield b"started,"
            end = time.time() + float(query or "5")
            while time.time() < end:
                pass
            yield b"spun"
        return spin_after_head()
    if path == "/greenlet-trace":  # what times the greenlet switches, if anything
        import greenlet

        return _text(start_response, repr(greenlet.gettrace()))
    if path == "/c-sleep":  # blocks in C: a signal or a raised exception waits for its end
        from gevent import monkey

        monkey.get_original("time", "sleep")(float(query or "5"))
        return _text(start_response, "slept")
    if path == "/exit":
        os._exit(int(query or "1"))
    if path == "/segfault":
        import ctypes
        ctypes.string_at(0)
    return _text(start_response, "not found", status="404 Not Found")


application = app
