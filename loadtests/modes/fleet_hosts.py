"""What the fleet mode runs: a host (geventserve serving loadtests/fleet_app.py beside its
upstream, examples/upstream.py, in the host's namespace or on its loopback address) and the
balancers in front of the hosts (HAProxy, nginx), each with what it can tell about them."""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from harness.haproxy import HAProxy, haproxy_version
from harness.netns import HostAddress
from harness.nginx import Nginx, nginx_version
from harness.ports import free_ports
from harness.probe import http_get
from harness.process import Process, ProcessError, server_env
from harness.procfs import established
from harness.servers import GEVENTSERVE_READY, geventserve_command
from loadtests.modes import EXAMPLES, HERE, REPORTS

READINESS_PATH = "/readyz"
LIVENESS_PATH = "/livez"
START_TIMEOUT = 40.0  # seconds for a host to serve (a loaded 2-core machine, 3 hosts at once)
ROUTE_SLACK = 1.0  # seconds past its checks a balancer on a loaded machine may take to act
NETNS_PORTS = (8000, 8001)  # the app and its upstream, on a host of its own


@dataclass
class HostSettings:
    """The flags every host's geventserve gets that a run may change."""

    workers: int = 2
    worker_connections: int = 1000
    drain_delay: float = 2.0
    graceful_timeout: float = 10.0
    max_worker_memory: int = 150  # MiB
    keep_alive: int = 75  # longer than the balancers keep an idle connection to a host


class FleetHost:
    """One host: its upstream (started once) and geventserve serving the fleet app (a version
    at a time), each a process group of its own with its log under the reports (``name`` is
    the run's prefix). ``supervisor`` is the PID of the supervisor that serves now (after USR2,
    the new one: the child of the first, in the same process group)."""

    def __init__(self, where: HostAddress, name: str, settings: HostSettings) -> None:
        self.where = where
        self.settings = settings
        if where.netns:
            self.port, self.upstream_port = NETNS_PORTS
        else:
            self.port, self.upstream_port = free_ports(2, where.address)
        self.log = REPORTS / f"{name}_{where.name}.log"
        self.upstream_log = REPORTS / f"{name}_{where.name}_upstream.log"
        for path in (self.log, self.upstream_log):
            path.write_text("")
        self.upstream: Optional[Process] = None
        self.app: Optional[Process] = None
        self.supervisor = 0
        self.version = ""
        self.ready_at = 0.0  # time.monotonic() when the version serving now was ready

    @property
    def name(self) -> str:
        return self.where.name

    @property
    def address(self) -> str:
        return f"{self.where.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def _server(self, options: List[str], app: str, log: Path, env: Dict[str, str],
                label: str) -> Process:
        cmd = self.where.command(geventserve_command(
            ["-k", "gevent", "--chdir", str(EXAMPLES), *options], app))
        return Process(cmd, name=f"{self.name} {label}", cwd=str(REPORTS), env=server_env(env),
                       log=str(log), append=True, stop_signal=signal.SIGINT,
                       stop_timeout=10).start()

    def start_upstream(self) -> None:
        address = f"{self.where.address}:{self.upstream_port}"
        self.upstream = self._server(["-w", "1", "-b", address], "upstream:app",
                                     self.upstream_log, {}, "upstream")

    def start(self, version: str) -> None:
        """Start geventserve serving ``version`` of the app (returns at once: wait_ready)."""
        s = self.settings
        options = ["-w", str(s.workers), "--worker-connections", str(s.worker_connections),
                   "-b", self.address, "--pythonpath", str(HERE),
                   "--readiness-path", READINESS_PATH, "--liveness-path", LIVENESS_PATH,
                   "--drain-delay", f"{s.drain_delay:g}",
                   "--graceful-timeout", f"{s.graceful_timeout:g}",
                   "--keep-alive", str(s.keep_alive),
                   "--max-worker-memory", str(s.max_worker_memory)]
        env = {"UPSTREAM_URL": f"http://{self.where.address}:{self.upstream_port}/",
               "FLEET_VERSION": version}
        self.app = self._server(options, "fleet_app:app", self.log, env, f"v{version}")
        self.supervisor = self.app.pid
        self.version = version

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Until its upstream and its app both serve, and readiness answers 200."""
        assert self.app is not None and self.upstream is not None
        deadline = time.monotonic() + timeout
        for process in (self.upstream, self.app):
            process.wait_for_log(GEVENTSERVE_READY, timeout=max(1.0, deadline - time.monotonic()))
        self.app.wait_answer(self.url + READINESS_PATH, accept=lambda status: status == 200,
                             timeout=max(1.0, deadline - time.monotonic()))
        self.ready_at = time.monotonic()

    def _alive(self, pid: int) -> bool:
        """Whether ``pid`` runs (a zombie does not), reaping it if it is ours."""
        if self.app is not None and pid == self.app.pid:
            return self.app.exited() is None
        try:
            with open(f"/proc/{pid}/stat") as fh:
                return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return False

    def _wait_gone(self, pid: int, timeout: float, what: str) -> float:
        started = time.monotonic()
        while self._alive(pid):
            if time.monotonic() - started > timeout:
                raise ProcessError(f"{self.name}: {what} (pid {pid}) still running after "
                                   f"{timeout:g} s; its log: {self.log}")
            time.sleep(0.05)
        return time.monotonic() - started

    def term(self) -> float:
        """TERM to the supervisor: the drain delay, then the graceful stop; the seconds it
        took to exit (it must exit 0)."""
        assert self.app is not None
        os.kill(self.supervisor, signal.SIGTERM)
        s = self.settings
        took = self._wait_gone(self.supervisor, s.drain_delay + s.graceful_timeout + 15,
                               "the supervisor sent TERM")
        if self.supervisor == self.app.pid and self.app.exited() != 0:
            raise ProcessError(f"{self.name}: exited {self.app.exited()} after TERM; "
                               f"{self.app.log_excerpt()}")
        return took

    def wait_log(self, pattern: str, timeout: float, start: int = 0) -> re.Match:
        """The first line of the app's log from line ``start`` where ``pattern`` is found, once
        logged; ProcessError if the supervisor serving now exits first. (Not Process's own
        wait: after USR2 the process it started is gone, its successor logs on.)"""
        assert self.app is not None
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            found = next(filter(None, map(regex.search, self.app.lines[start:])), None)
            if found:
                return found
            if not self._alive(self.supervisor) or time.monotonic() > deadline:
                gone = "exited" if not self._alive(self.supervisor) else "still running"
                raise ProcessError(f"{self.name}: supervisor {self.supervisor} {gone} before "
                                   f"logging {pattern!r}; {self.app.log_excerpt()}")
            time.sleep(0.05)

    def upgrade(self, timeout: float = START_TIMEOUT) -> int:
        """USR2: a new supervisor from the same command on the same sockets; once it is ready,
        TERM to the old one, which leaves without a drain. The new supervisor's PID."""
        assert self.app is not None
        old = self.supervisor
        start = len(self.app.lines)
        os.kill(old, signal.SIGUSR2)
        found = self.wait_log(r"started a new supervisor \(pid:(\d+)\)", 10, start)
        new = int(found.group(1))  # in the same process group (forked by the old one)
        self.wait_log(rf"\[{new}\] {GEVENTSERVE_READY}", timeout, start)
        os.kill(old, signal.SIGTERM)
        self._wait_gone(old, self.settings.graceful_timeout + 15, "the old supervisor")
        self.supervisor = new
        return new

    def grow(self, mib: int) -> int:
        """Make the worker that takes this request keep ``mib`` MiB more; its PID."""
        status, body = http_get(f"{self.url}/grow?mib={mib}", timeout=30)
        if status != 200:
            raise ProcessError(f"{self.name}: GET /grow answered {status}: {body[:200]!r}")
        return int(re.search(rb'"pid":\s*(\d+)', body).group(1))

    def wait_replaced(self, pid: int, timeout: float) -> str:
        """Until the supervisor replaced worker ``pid`` for its memory and the worker left; the
        supervisor's line that says why."""
        line = self.wait_log(rf"Worker \(pid:{pid}\) uses \d+ MiB of memory.*", timeout)
        self.wait_log(rf"Worker exiting \(pid: {pid}\)", timeout)
        return line.group(0)

    def served_version(self) -> str:
        status, body = http_get(f"{self.url}/version", timeout=10)
        match = re.search(rb'"version":\s*"([^"]*)"', body)
        return match.group(1).decode() if status == 200 and match else f"HTTP {status}"

    def open_connections(self) -> int:
        """Connections established to its app port now (an upper bound of its requests in
        flight: idle pooled connections count too)."""
        return established(self.supervisor, self.where.address, self.port)

    def kill(self) -> None:
        """SIGKILL to its whole process groups at once (the app's, then its upstream's): the
        host is gone, with no word to anyone."""
        for process in (self.app, self.upstream):
            if process is not None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def problems(self) -> List[str]:
        """Lines of its logs (the app's and its upstream's) that say something went wrong: a
        warning (a request cut by the graceful timeout is one), an error, a traceback."""
        found = []
        for log in (self.log, self.upstream_log):
            text = log.read_text(errors="replace") if log.exists() else ""
            found += [line for line in text.splitlines()
                      if re.search(r"\[(WARNING|ERROR|CRITICAL)\]|Traceback", line)]
        return found

    def stop(self) -> None:
        """A fast stop (INT) of whatever runs, then SIGKILL to what is left of its groups."""
        if self.app is not None and self.supervisor != self.app.pid \
                and self._alive(self.supervisor):
            os.kill(self.supervisor, signal.SIGINT)
            try:
                self._wait_gone(self.supervisor, 10, "the supervisor sent INT")
            except ProcessError:
                pass
        for process in (self.app, self.upstream):
            if process is not None:
                process.stop()


class Front:
    """A balancer in front of the hosts: ``name`` (as the locustfile counts requests),
    ``label`` (its name and version), ``url``."""

    name = ""
    label = ""
    url = ""
    routing = ""  # how it learns that a host is gone, for the report
    route_bound = ROUTE_SLACK  # seconds after a host dies within which it sends it nothing

    def wait_in(self, hosts: Sequence[FleetHost], timeout: float) -> None:
        """Until it sends requests to each of ``hosts`` again (no-op when it cannot tell)."""

    def wait_out(self, host: FleetHost, timeout: float) -> Optional[float]:
        """Until it has taken ``host`` out; the seconds it took (None: it cannot tell)."""
        return None

    def resent(self, host: FleetHost) -> int:
        """How many times so far it moved a request that met ``host`` failing to another host
        (HAProxy counts each redispatch: a request may count twice)."""
        return 0

    def stop(self) -> None:
        """Stop it."""


class HAProxyFront(Front):
    """HAProxy with active checks of the readiness path (harness/haproxy.py)."""

    name = "haproxy"

    def __init__(self, workdir: Path, hosts: Sequence[FleetHost], inter: float,
                 prefix: str) -> None:
        self.proxy = HAProxy(str(workdir), [(h.name, h.address) for h in hosts],
                             READINESS_PATH, inter=inter, fall=2, rise=2,
                             log=str(REPORTS / f"{prefix}_haproxy.log")).start()
        self.url = self.proxy.url
        self.label = haproxy_version()
        self.route_bound = self.proxy.fall * inter + ROUTE_SLACK
        self.routing = (f"checks of {READINESS_PATH} every {inter:g} s, fall 2 rise 2; "
                        "retry-on conn-failure empty-response, option redispatch")

    def wait_in(self, hosts: Sequence[FleetHost], timeout: float) -> None:
        self.proxy.wait_status([h.name for h in hosts], "UP", timeout)

    def wait_out(self, host: FleetHost, timeout: float) -> Optional[float]:
        return self.proxy.wait_status([host.name], "DOWN", timeout)

    def resent(self, host: FleetHost) -> int:
        state = self.proxy.states()[host.name]
        return state.redispatches

    def stop(self) -> None:
        self.proxy.stop()


class NginxFront(Front):
    """nginx from examples/nginx.conf (harness/nginx.py), its TCP upstream the hosts: passive,
    it learns that a host is gone from a failed connection, and proxy_next_upstream sends the
    request to the next host."""

    name = "nginx"
    FAIL_TIMEOUT = 2  # seconds a host that failed is left out before nginx tries it again

    def __init__(self, workdir: Path, hosts: Sequence[FleetHost], prefix: str) -> None:
        (workdir / "nginx").mkdir(exist_ok=True)
        self.nginx = Nginx(str(workdir / "nginx"), 0, str(workdir / "nginx" / "unused.sock"),
                           log=str(REPORTS / f"{prefix}_nginx.log"),
                           servers=[f"{h.address} max_fails=1 fail_timeout={self.FAIL_TIMEOUT}s"
                                    for h in hosts]).start()
        self.url = f"http://127.0.0.1:{self.nginx.ports['tcp']}"
        self.label = nginx_version()
        self.routing = (f"passive: max_fails=1 fail_timeout={self.FAIL_TIMEOUT}s, "
                        "proxy_next_upstream error timeout")

    def wait_in(self, hosts: Sequence[FleetHost], timeout: float) -> None:
        """nginx cannot tell: a host it found closed is left out for FAIL_TIMEOUT, so wait that
        long after the hosts were ready. (Rolling on sooner, nginx can have every host marked
        failed at once and answer 502: no live upstreams.)"""
        rest = max(host.ready_at for host in hosts) + self.FAIL_TIMEOUT - time.monotonic()
        time.sleep(min(max(rest, 0.0), timeout))

    def resent(self, host: FleetHost) -> int:
        return sum(line.count(f"{host.address}, ") for line in self.nginx.access_lines())

    def stop(self) -> None:
        self.nginx.stop()
