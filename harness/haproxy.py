"""HAProxy run for real in front of several servers: its configuration rendered here (health
checks on a readiness path, retries on another server), HAProxy in the foreground on a free
loopback port, and its runtime API (a unix socket) read for each server's state and counters."""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from harness.machine import program_version
from harness.ports import free_port
from harness.process import Process, ProcessError, ProcessOwner
from harness.procfs import listening_ports

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
BACKEND = "fleet"

# Why each line is there (loadtests/README.md, "The fleet", says it for operators):
# - option httpchk + expect 200: a server whose readiness path answers 503 (a drain) is DOWN
#   after `fall` checks, `inter` apart, and gets no new request;
# - retry-on conn-failure empty-response, retries, option redispatch 1: a request that met a
#   refused connection or a pooled connection closed under it (a worker retired, a host gone)
#   is sent again, to another server; HAProxy only retries what it still holds whole (no body
#   streamed yet, no byte of the response sent to the client);
# - timeout check: a check that hangs (a host under load) counts as failed, not as forever.
CONFIG = """\
global
    maxconn {maxconn}
    stats socket {workdir}/haproxy.sock mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 10s
    timeout check 2s
    timeout http-keep-alive 10s
    retries 3
    option redispatch 1
    retry-on conn-failure empty-response
frontend front
    bind 127.0.0.1:{port}
    default_backend {backend}
backend {backend}
    balance roundrobin
    option httpchk GET {check_path}
    http-check expect status 200
    default-server check inter {inter_ms}ms fall {fall} rise {rise}
{servers}
"""


def render_haproxy_conf(workdir: str, port: int, servers: Sequence[Tuple[str, str]],
                        check_path: str, inter: float, fall: int, rise: int,
                        maxconn: int = 4000) -> str:
    """HAProxy listening on 127.0.0.1:``port`` in front of ``servers`` ((name, host:port)
    each), checking ``check_path`` every ``inter`` seconds; its runtime socket in
    ``workdir``."""
    lines = "\n".join(f"    server {name} {address}" for name, address in servers)
    return CONFIG.format(maxconn=maxconn, workdir=workdir, port=port, backend=BACKEND,
                         check_path=check_path, inter_ms=round(inter * 1000), fall=fall,
                         rise=rise, servers=lines)


@dataclass
class ServerState:
    """One server as HAProxy sees it: ``status`` (UP, DOWN, "UP 1/2" while rising...), the
    sessions it has now, and the requests HAProxy sent again (to it or away from it)."""

    status: str
    sessions: int
    retries: int
    redispatches: int


class HAProxy(ProcessOwner):
    """HAProxy in the foreground (``-db``) in front of ``servers``, everything it writes in
    ``workdir``, its output in ``log`` (default ``workdir``/haproxy.out)."""

    def __init__(self, workdir: str, servers: Sequence[Tuple[str, str]], check_path: str,
                 inter: float = 0.5, fall: int = 2, rise: int = 2,
                 log: Optional[str] = None) -> None:
        self.workdir = str(workdir)
        self.servers = list(servers)
        self.check = (check_path, inter, fall, rise)
        self.conf = os.path.join(self.workdir, "haproxy.cfg")
        self.socket_path = os.path.join(self.workdir, "haproxy.sock")
        self.output = str(log) if log else os.path.join(self.workdir, "haproxy.out")
        self.process: Optional[Process] = None
        self.port = 0

    @property
    def inter(self) -> float:
        return self.check[1]

    @property
    def fall(self) -> int:
        return self.check[2]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        """Start on a free port (a port taken meanwhile means a new try), once its
        configuration passed ``haproxy -c``; returned once it listens."""
        for attempt in range(5):
            self.port = free_port()
            with open(self.conf, "w") as fh:
                fh.write(render_haproxy_conf(self.workdir, self.port, self.servers, *self.check))
            checked = subprocess.run([HAPROXY, "-c", "-q", "-f", self.conf], capture_output=True,
                                     text=True, timeout=30)
            if checked.returncode != 0:
                raise ProcessError(f"haproxy -c refused {self.conf}: "
                                   f"{(checked.stdout + checked.stderr).strip()}")
            self.process = Process([HAPROXY, "-db", "-f", self.conf], name="haproxy",
                                   cwd=self.workdir, log=self.output, stop_timeout=5).start()
            if self._listening():
                return self
            self.process.stop()
            if "Address already in use" not in self.log and "cannot bind" not in self.log \
                    or attempt == 4:
                raise ProcessError(f"haproxy did not start; {self.process.log_excerpt()}")
        return self

    def _listening(self, timeout: float = 10.0) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.exited() is not None:
                return False
            try:
                if self.port in listening_ports(self.process.pid) \
                        and os.path.exists(self.socket_path):
                    return True
            except OSError:
                pass
            time.sleep(0.05)
        raise ProcessError(f"haproxy not listening within {timeout:g} s; "
                           f"{self.process.log_excerpt()}")

    def command(self, line: str, timeout: float = 5.0) -> str:
        """One command of HAProxy's runtime API, its answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(self.socket_path)
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return b"".join(chunks).decode()
                chunks.append(chunk)

    def states(self) -> Dict[str, ServerState]:
        """Each server of the backend, by name, from ``show stat``."""
        text = self.command("show stat").lstrip("# ")
        states = {}
        for row in csv.DictReader(text.splitlines()):
            if row.get("pxname") == BACKEND and row.get("svname") not in ("BACKEND", None):
                states[row["svname"]] = ServerState(row["status"], int(row["scur"] or 0),
                                                    int(row["wretr"] or 0),
                                                    int(row["wredis"] or 0))
        return states

    def wait_status(self, names: Sequence[str], status: str, timeout: float) -> float:
        """Wait until each server of ``names`` has ``status`` (UP or DOWN); the seconds it
        took."""
        started = time.monotonic()
        deadline = started + timeout
        while True:
            states = self.states()
            if all(states[name].status == status for name in names):
                return time.monotonic() - started
            if time.monotonic() > deadline:
                seen = ", ".join(f"{name} {states[name].status}" for name in names)
                raise ProcessError(f"haproxy: not all {status} after {timeout:g} s ({seen}); "
                                   f"{self.process.log_excerpt() if self.process else ''}")
            time.sleep(0.02)

    @property
    def log(self) -> str:
        return self.process.log if self.process else ""



def haproxy_version() -> str:
    """``HAProxy 2.6.12-1+deb12u4``, from ``haproxy -v`` (``HAProxy ?`` if it cannot tell)."""
    return program_version("HAProxy", [HAPROXY, "-v"], r"^HAProxy version (\S+)")
