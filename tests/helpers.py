"""Test helpers: start the real server as a subprocess, speak raw HTTP to it over sockets."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

APPS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "apps")
LISTENING = re.compile(r"Listening at: (http://([\d.]+|\[[0-9a-f:]+\]):(\d+)|unix:(\S+))")


class Server:
    """A geventserve process group started for a test; always stopped by PID."""

    def __init__(self, args: Sequence[str], app: Optional[str] = "wsgi_app:app",
                 cwd: str = APPS, env: Optional[Dict[str, str]] = None,
                 bind: Optional[List[str]] = None, wait: bool = True, ready_path: str = "/",
                 preexec_fn=None) -> None:
        self.args = list(args)
        cmd = [sys.executable, "-m", "geventserve"]
        if bind is None:
            bind = ["127.0.0.1:0"]
        for address in bind:
            cmd += ["-b", address]
        cmd += self.args
        if app:
            cmd.append(app)
        full_env = dict(os.environ)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env.pop("GEVENTSERVE_CMD_ARGS", None)
        full_env.pop("WEB_CONCURRENCY", None)
        full_env["PYTHONPATH"] = os.pathsep.join([APPS, full_env.get("PYTHONPATH", "")])
        if env:
            full_env.update(env)
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True,
                                     preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self.lines: List[str] = []
        self.out_lines: List[str] = []
        self._lock = threading.Lock()
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stderr, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stdout, self.out_lines), daemon=True)]
        for reader in self._readers:
            reader.start()
        self.port = 0
        self.addresses: List[str] = []
        if wait:
            self.wait_listening()
            if ready_path:
                self.wait_for_log(r"\[INFO\] Ready: ", timeout=15)
                self.wait_ready(ready_path)

    def _read(self, stream, sink: List[str]) -> None:
        for raw in iter(stream.readline, b""):
            with self._lock:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def log(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    @property
    def stdout(self) -> str:
        with self._lock:
            return "\n".join(self.out_lines)

    def wait_for_log(self, pattern: str, timeout: float = 10.0, start: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            with self._lock:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
            if self.proc.poll() is not None:
                time.sleep(0.2)
                with self._lock:
                    for line in self.lines[start:]:
                        match = regex.search(line)
                        if match:
                            return match
                raise AssertionError(f"server exited ({self.proc.returncode}) before logging "
                                     f"{pattern!r}; log:\n{self.log}")
            time.sleep(0.02)
        raise AssertionError(f"{pattern!r} not logged within {timeout}s; log:\n{self.log}")

    def wait_listening(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                found = [LISTENING.search(line) for line in self.lines]
            found = [m for m in found if m]
            if found:
                self.addresses = [m.group(1) for m in found]
                for m in found:
                    if m.group(3):
                        self.port = int(m.group(3))
                        break
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}); log:\n{self.log}")
            time.sleep(0.02)
        raise AssertionError(f"server did not listen within {timeout}s; log:\n{self.log}")

    def wait_ready(self, path: str = "/", timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                response = request(self.port, "GET", path, timeout=2)
                if response.status < 500:
                    return
            except OSError as exc:
                last = exc
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited ({self.proc.returncode}); log:\n{self.log}")
            time.sleep(0.05)
        raise AssertionError(f"server not ready within {timeout}s ({last}); log:\n{self.log}")

    def worker_pids(self) -> List[int]:
        return children(self.pid)

    def signal(self, sig: int) -> None:
        os.kill(self.pid, sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop the whole process group: TERM, then KILL after a short grace."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for reader in self._readers:
            reader.join(2)
        for stream in (self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def children(pid: int) -> List[int]:
    """PIDs of the direct children of ``pid`` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return sorted(found)


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


def run_command(cmd: Sequence[str], timeout: float = 30.0,
                **kwargs) -> subprocess.CompletedProcess[str]:
    """subprocess.run with text output, in a session of its own: whatever the command leaves
    behind (a supervisor's workers) is killed with its process group, also on a timeout."""
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, **kwargs)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if proc.returncode is None:
            proc.communicate()
    return subprocess.CompletedProcess(list(cmd), proc.returncode, out, err)
