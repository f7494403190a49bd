"""Test helpers: the real server started as a subprocess (through the harness), raw HTTP spoken
to it over sockets, client load, certificates."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from harness import EXAMPLES
from harness.process import Process, run_command, server_env
from harness.procfs import children
from harness.servers import GEVENTSERVE_READY, geventserve_command

__all__ = ["APPS", "EXAMPLES", "GEVENTSERVE_CONF", "METRICS_AT", "OPENMETRICS", "Client", "Load",
           "Response", "Server", "children", "make_certificate", "metrics_server", "raw",
           "request", "run_command", "samples", "scrape", "total", "value", "wait_until"]

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
GEVENTSERVE_CONF = os.path.join(EXAMPLES, "geventserve.conf.py")
LISTENING = re.compile(r"Listening at: (http://([\d.]+|\[[0-9a-f:]+\]):(\d+)|unix:(\S+))")


class Server(Process):
    """geventserve started for a test (harness.process.Process: its own process group, its
    output in memory, always stopped by PID), by default serving the tests' wsgi_app on a free
    port, once it listens, says it is ready and answers ``ready_path``."""

    def __init__(self, args: Sequence[str], app: Optional[str] = "wsgi_app:app",
                 cwd: str = APPS, env: Optional[Dict[str, str]] = None,
                 bind: Optional[List[str]] = None, wait: bool = True, ready_path: str = "/",
                 preexec_fn=None) -> None:
        self.args = list(args)
        binds = [option for address in (["127.0.0.1:0"] if bind is None else bind)
                 for option in ("-b", address)]
        path = os.pathsep.join([APPS, os.environ.get("PYTHONPATH", "")])
        full_env = server_env({"PYTHONPATH": path, **(env or {})})
        super().__init__(geventserve_command(binds + self.args, app), name="geventserve",
                         cwd=cwd, env=full_env, preexec_fn=preexec_fn)
        self.port = 0
        self.addresses: List[str] = []
        self.start()
        if wait:
            try:
                self.wait_listening()
                if ready_path:
                    self.wait_for_log(GEVENTSERVE_READY, timeout=15)
                    self.wait_ready(ready_path)
            except BaseException:
                self.stop()
                raise

    def wait_listening(self, timeout: float = 15.0) -> None:
        """Wait for its "Listening at" lines: ``addresses`` and the first TCP ``port``."""
        self.wait_for_log(LISTENING.pattern, timeout=timeout)
        found = [m for m in map(LISTENING.search, self.lines) if m]
        self.addresses = [m.group(1) for m in found]
        self.port = next((int(m.group(3)) for m in found if m.group(3)), 0)

    def wait_ready(self, path: str = "/", timeout: float = 15.0) -> None:
        """Wait until GET ``path`` is answered with a status below 500."""
        self.wait_answer(f"http://127.0.0.1:{self.port}{path}", timeout=timeout,
                         accept=lambda status: status < 500)


@dataclass
class Response:
    status: int
    reason: str
    version: str
    headers: List[Tuple[str, str]]
    body: bytes
    chunked: bool = False
    raw_head: bytes = b""
    trailers: List[Tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> Optional[str]:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> List[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Client:
    """A raw HTTP/1.1 client over one socket, with a strict response reader."""

    def __init__(self, port: int = 0, timeout: float = 5.0, host: str = "127.0.0.1",
                 unix: Optional[str] = None, source: Optional[str] = None) -> None:
        if unix:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            self.sock.connect(unix)
        else:
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            self.sock = socket.socket(family, socket.SOCK_STREAM)
            self.sock.settimeout(timeout)
            if source:
                self.sock.bind((source, 0))
            self.sock.connect((host, port))
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, method: str = "GET", path: str = "/", headers: Sequence[Tuple[str, str]] = (),
                body: bytes = b"", version: str = "HTTP/1.1", host: Optional[str] = "test") -> None:
        lines = [f"{method} {path} {version}"]
        if host is not None:
            lines.append(f"Host: {host}")
        lines += [f"{k}: {v}" for k, v in headers]
        if body and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in headers):
            lines.append(f"Content-Length: {len(body)}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    def _fill(self) -> bool:
        data = self.sock.recv(65536)
        if not data:
            return False
        self.buffer += data
        return True

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            if not self._fill():
                raise EOFError(f"connection closed before {marker!r}; got {self.buffer[:200]!r}")
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def _read_exact(self, n: int) -> bytes:
        while len(self.buffer) < n:
            if not self._fill():
                raise EOFError(f"connection closed with {len(self.buffer)} of {n} bytes")
        data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data

    def read_response(self, method: str = "GET") -> Response:
        head = self._read_until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version == "HTTP/1.1", f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            assert colon and name == name.strip() and name, f"bad header line {line!r}"
            headers.append((name, value.strip()))
        response = Response(int(status), reason, version, headers, b"", raw_head=head)
        code = response.status
        lengths = response.header_all("content-length")
        te = response.header("transfer-encoding")
        assert not (lengths and te), "both Content-Length and Transfer-Encoding"
        assert len(lengths) <= 1, "several Content-Length fields"
        if 100 <= code < 200:
            return response
        if method == "HEAD" or code in (204, 304):
            return response
        if te is not None:
            assert te == "chunked", te
            response.chunked = True
            body = b""
            while True:
                size_line = self._read_until(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while True:
                        line = self._read_until(b"\r\n")
                        if not line:
                            break
                        name, _, value = line.decode("latin-1").partition(":")
                        response.trailers.append((name, value.strip()))
                    break
                body += self._read_exact(size)
                assert self._read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            response.body = body
        elif lengths:
            response.body = self._read_exact(int(lengths[0]))
        else:
            while self._fill():
                pass
            response.body, self.buffer = self.buffer, b""
        return response

    def closed_by_server(self, timeout: float = 3.0) -> bool:
        """True if the server closes the connection (EOF or reset) within ``timeout``."""
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buffer += data
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def request(port: int, method: str = "GET", path: str = "/", headers: Sequence[Tuple[str, str]] = (),
            body: bytes = b"", timeout: float = 5.0, version: str = "HTTP/1.1",
            host: Optional[str] = "test", **kw) -> Response:
    """One request on a fresh connection."""
    with Client(port, timeout=timeout, **kw) as client:
        client.request(method, path, headers, body, version=version, host=host)
        return client.read_response(method)


def raw(port: int, data: bytes, timeout: float = 5.0, **kw) -> Response:
    """Send raw bytes on a fresh connection and read one response."""
    with Client(port, timeout=timeout, **kw) as client:
        client.send(data)
        return client.read_response()


class Load:
    """Client threads sending requests in a loop on keep-alive connections, counting outcomes.

    Like real HTTP clients (RFC 9112 9.3.1), a request that fails on a *reused* connection
    before any byte of its response arrived (the server closed the idle connection) is retried
    once on a new connection; ``retries`` counts those. Any other error is a failure. Every
    outcome records the worker PID last seen on the connection (responses of /pid carry it).
    """

    def __init__(self, port: int, clients: int = 100, path: str = "/pid",
                 timeout: float = 10.0, pause: float = 0.0) -> None:
        self.port = port
        self.path = path
        self.timeout = timeout
        self.pause = pause
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.ok = 0
        self.bodies: Dict[bytes, int] = {}
        self.failures: List[Tuple[Optional[bytes], str]] = []
        self.retries: List[Tuple[Optional[bytes], str]] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def start(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def stop(self) -> Load:
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.timeout + 5)
        return self

    def _run(self) -> None:
        client: Optional[Client] = None
        reused = False
        last_body: Optional[bytes] = None
        while not self.stopping.is_set():
            try:
                if client is None:
                    client = Client(self.port, timeout=self.timeout)
                    reused = False
                client.request("GET", self.path)
                response = client.read_response()
            except (OSError, EOFError) as exc:
                nothing_received = client is not None and not client.buffer
                if client is not None:
                    client.close()
                client = None
                with self.lock:
                    if reused and nothing_received:
                        self.retries.append((last_body, repr(exc)))
                    else:
                        self.failures.append((last_body, repr(exc)))
                continue
            with self.lock:
                if response.status == 200:
                    self.ok += 1
                    self.bodies[response.body] = self.bodies.get(response.body, 0) + 1
                else:
                    self.failures.append((last_body, f"status {response.status}"))
            last_body = response.body
            reused = True
            if response.header("connection") == "close":
                client.close()
                client = None
            if self.pause:
                time.sleep(self.pause)
        if client is not None:
            client.close()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, message: str = ""):
    """Poll ``predicate`` until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message or predicate}")
        time.sleep(interval)


def make_certificate(folder):
    """A self-signed certificate (and key) for 127.0.0.1 and localhost, made with openssl."""
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                    "-keyout", key, "-out", cert], check=True, capture_output=True, timeout=60)
    return cert, key


# -- --metrics-bind

METRICS_AT = r"Metrics at: (?:http://127\.0\.0\.1:(\d+)|unix:(\S+))"
#: what Prometheus asks for (OpenMetrics first)
OPENMETRICS = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5"


def metrics_server(args: Sequence[str], app: str = "wsgi_app:app",
                   env: Optional[Dict[str, str]] = None) -> Server:
    """A server with --metrics-bind (on a free port, ``metrics_port``, unless ``args`` give
    one) once its workers serve, sent no request (a readiness probe would be counted)."""
    extra = [] if "--metrics-bind" in args else ["--metrics-bind", "127.0.0.1:0"]
    srv = Server(extra + list(args), app=app, env=env, ready_path="")
    try:
        match = srv.wait_for_log(METRICS_AT)
        srv.metrics_port = int(match.group(1)) if match.group(1) else 0
        srv.wait_for_log(GEVENTSERVE_READY, timeout=15)
    except BaseException:
        srv.stop()
        raise
    return srv


def scrape(srv: Server, path: str = "/metrics", accept: Optional[str] = None,
           method: str = "GET") -> Response:
    return request(srv.metrics_port, method, path,
                   headers=[("Accept", accept)] if accept else [], timeout=5)


def samples(srv: Server, accept: Optional[str] = None) -> Dict[Tuple[str, Tuple], float]:
    """{(name, ((label, value), ...)): value} of /metrics, read with prometheus_client's
    parser (its OpenMetrics one with ``accept``)."""
    response = scrape(srv, accept=accept)
    assert response.status == 200, response
    found = {}
    for family in (parse_om if accept else parse_text)(response.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def value(found: Dict[Tuple[str, Tuple], float], name: str, **labels: str) -> float:
    return found.get((name, tuple(sorted(labels.items()))), 0)


def total(found: Dict[Tuple[str, Tuple], float], name: str) -> float:
    return sum(v for (n, _), v in found.items() if n == name)
