"""The supervisor's side of --metrics-bind: the workers' blocks summed with the figures of the
workers that have ended (so that no counter goes back when a worker is replaced), the restarts
and their reasons, and what the supervisor reads itself: listen backlogs, each worker's memory,
its own process_* figures. ``Metrics`` is what the supervisor holds (``NoMetrics`` when off).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import struct
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from .. import health, logs, sockets
from ..exits import ExitCode
from ..recycling import resident_bytes
from ..workers.base import BOOTING, FAILED, READY, RETIRING
from . import layout
from .appmetrics import AppMetrics
from .endpoint import Endpoint, Page
from .exposition import Family, histogram, render, wants_openmetrics

#: restart reasons shown from the start (at 0), so that the first restart of each is a rise
RESTART_REASONS = ("exit", "signal", "timeout", "max_requests", "memory", "lifetime", "reload",
                   "boot")
STATES = {BOOTING: "booting", READY: "ready", RETIRING: "retiring", FAILED: "failed"}
_TCP_INFO_QUEUE = struct.Struct("8x4x4x4x4xII")  # tcpi_unacked, tcpi_sacked
PLAIN = "text/plain; charset=utf-8"
#: seconds a /metrics page is served again: 100 scrapes a second cost the supervisor ten pages
PAGE_REUSED_FOR = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


class NoMetrics:
    """--metrics-bind is off: what the supervisor calls does nothing."""

    def describe(self) -> str:
        """The endpoint's address, for the log ("" when off)."""
        return ""

    def new_block(self) -> None:
        return None

    def worker_exited(self, record: Any, status: int) -> None:
        pass

    def before_exec(self) -> None:
        pass

    def close(self) -> None:
        pass

    def shutdown(self, unlink: bool = True) -> None:
        pass


class Metrics(NoMetrics):
    """The endpoint, the totals of the departed workers, and the app's multiprocess metrics."""

    def __init__(self, supervisor: Any, endpoint: Endpoint, app: AppMetrics) -> None:
        self.supervisor = supervisor
        self.endpoint = endpoint
        self.app = app
        # the counters of the workers that ended (as WorkerBlock.counters gives them), and the
        # status codes they counted
        self.departed: Dict[int, int] = {}
        self.departed_rest = [0] * (layout.COUNTERS_END - layout.TIMES)
        self.departed_codes: Set[int] = set()
        self.departed_sums = [0.0] * layout.COUNTER_DOUBLES
        self.restarts: Dict[str, int] = dict.fromkeys(RESTART_REASONS, 0)
        #: the last /metrics page of each format (OpenMetrics or not): (made at, the page)
        self._pages: Dict[bool, Tuple[float, Tuple[int, bytes, str]]] = {}
        endpoint.pages = self.page

    @classmethod
    def open(cls, supervisor: Any, address: Optional[str]) -> NoMetrics:
        """At start, before the first fork (and before --preload imports the app); BindError
        with one line when the address cannot be served."""
        if address is None:
            return NoMetrics()
        endpoint = Endpoint.open(address, os.environ)
        metrics = cls(supervisor, endpoint, AppMetrics(os.environ))
        supervisor.wakeup.watch(endpoint)
        return metrics

    # -- what the supervisor calls

    def new_block(self) -> layout.WorkerBlock:
        """The shared memory of a worker about to be forked, numbered with the lowest number
        no running worker has."""
        taken = {w.slot.metrics.index for w in self.supervisor.workers.values()
                 if w.slot.metrics is not None}
        block = layout.WorkerBlock()
        block.index = next(i for i in range(len(taken) + 1) if i not in taken)
        return block

    def worker_exited(self, record: Any, status: int) -> None:
        """Fold an ended worker's counters into the departed's, before its slot is closed."""
        block = record.slot.metrics
        if block is not None:
            codes = block.used_codes()
            self.departed_codes.update(codes)
            requests, rest = block.counters(codes)
            for index, count in requests.items():
                self.departed[index] = self.departed.get(index, 0) + count
            self.departed_rest = [a + b for a, b in zip(self.departed_rest, rest)]
            for i, total in enumerate(block.counter_sums()):
                self.departed_sums[i] += total
        reason = self.restart_reason(record, status)
        if reason is not None:
            self.restarts[reason] = self.restarts.get(reason, 0) + 1
        try:
            self.app.worker_ended(record.pid)
        except OSError as exc:
            logs.error_log.warning("cannot mark worker %d dead for prometheus_client: %s",
                                   record.pid, exc)

    def restart_reason(self, record: Any, status: int) -> Optional[str]:
        """Why a worker ended, if another replaces it (None: a stop, or one fewer wanted)."""
        supervisor, slot = self.supervisor, record.slot
        if supervisor.stopping is not None:
            return None
        if record.generation is not supervisor.generation:
            return "reload"
        if slot.state == RETIRING:
            return slot.retire_reason or "exit"
        if record.stopping_since:
            return None  # TTOU
        if os.WIFEXITED(status):
            code = os.WEXITSTATUS(status)
            if code == ExitCode.WORKER_TIMEOUT:
                return "timeout"
            if code in (ExitCode.APP_LOAD, ExitCode.WORKER_BOOT) and slot.state in (BOOTING,
                                                                                    FAILED):
                return "boot"
            return "exit"
        timeout = supervisor.config.timeout
        if timeout and time.monotonic() - slot.last_beat > timeout:
            return "timeout"  # killed by the supervisor, silent
        return "signal"

    def describe(self) -> str:
        return self.endpoint.describe()

    def before_exec(self) -> None:
        self.endpoint.pass_on()

    def close(self) -> None:
        self.endpoint.close()

    def shutdown(self, unlink: bool = True) -> None:
        self.endpoint.shutdown(unlink)
        self.app.remove()

    # -- the pages

    def page(self, path: str) -> Optional[Page]:
        """/metrics, /status, and the health paths of the current settings (health.py)."""
        if path == "/metrics":
            return self.metrics_page
        if path == "/status":
            return self.status_page
        readiness = health.answers(self.supervisor).get(path)
        if readiness is None:
            return None
        return lambda headers: (*health.answer(self.supervisor, readiness), PLAIN)

    def metrics_page(self, headers: Dict[str, str]) -> Tuple[int, bytes, str]:
        """Made at most every PAGE_REUSED_FOR seconds: scrapes closer together (several
        Prometheus servers, a dashboard reloading) get the same page, and a burst of them
        costs the supervisor one."""
        openmetrics = wants_openmetrics(headers.get("accept", ""))
        now = time.monotonic()
        made = self._pages.get(openmetrics)
        if made is not None and now - made[0] < PAGE_REUSED_FOR:
            return made[1]
        families = list(self.families()) + self.app.families()
        page = (200, *render(families, openmetrics))
        self._pages[openmetrics] = (now, page)
        return page

    def status_page(self, headers: Dict[str, str]) -> Tuple[int, bytes, str]:
        return 200, json.dumps(self.status(), indent=1).encode() + b"\n", "application/json"

    # -- the figures

    def _live(self) -> List[Any]:
        return sorted((w for w in self.supervisor.workers.values() if w.slot.metrics),
                      key=lambda w: w.slot.metrics.index)

    def families(self) -> Iterator[Family]:
        live = self._live()
        codes = set(self.departed_codes)
        for record in live:
            codes.update(record.slot.metrics.used_codes())
        counters, rest = dict(self.departed), self.departed_rest
        sums = list(self.departed_sums)
        gauges = [0] * (layout.N_INTEGERS - layout.COUNTERS_END)
        for record in live:
            block = record.slot.metrics
            requests, its_rest = block.counters(codes)
            for index, count in requests.items():
                counters[index] = counters.get(index, 0) + count
            rest = [a + b for a, b in zip(rest, its_rest)]
            for i, total in enumerate(block.counter_sums()):
                sums[i] += total
            for i, value in enumerate(block.ints[layout.COUNTERS_END:]):
                gauges[i] += value
        yield _requests(counters, sorted(codes))
        durations, holds = layout.histograms(rest)
        yield histogram("geventserve_request_duration_seconds", "Time from a request's first "
                        "byte to the end of its response.", layout.BUCKETS, durations,
                        sums[layout.DURATION_SUM])
        yield histogram("geventserve_event_loop_blocked_seconds", "gevent workers: each turn "
                        "of the event loop of 1 ms or more (from a poll for I/O to the next), "
                        "the time every other connection of the worker waited.",
                        layout.BUCKETS, holds, sums[layout.BLOCKED_SUM])
        gauge = lambda at: gauges[at - layout.COUNTERS_END]  # noqa: E731
        yield Family("geventserve_requests_in_flight", "gauge", "Requests being served (as "
                     "of the workers' last heartbeat).").add(gauge(layout.IN_FLIGHT))
        connections = Family("geventserve_connections", "gauge", "Open client connections by "
                             "state (as of the workers' last heartbeat).")
        for state, at in (("active", layout.ACTIVE), ("idle", layout.IDLE),
                          ("taken_over", layout.TAKEN_OVER)):
            connections.add(gauge(at), state=state)
        yield connections
        yield Family("geventserve_connections_accepted", "counter", "Client connections "
                     "accepted.").add(rest[layout.ACCEPTED - layout.TIMES])
        yield from self._listener_families()
        supervisor = self.supervisor
        yield Family("geventserve_workers", "gauge", "Worker processes running.").add(
            len(supervisor.workers))
        yield Family("geventserve_workers_wanted", "gauge", "Worker processes wanted (-w, "
                     "TTIN, TTOU).").add(supervisor.num_workers)
        restarts = Family("geventserve_worker_restarts", "counter", "Workers replaced, by "
                          "reason.")
        for reason, count in sorted(self.restarts.items()):
            restarts.add(count, reason=reason)
        yield restarts
        memory = Family("geventserve_worker_resident_memory_bytes", "gauge", "Resident memory "
                        "of each worker, by its slot number.")
        for record in live:
            rss = resident_bytes(record.pid)
            if rss is not None:
                memory.add(rss, slot=str(record.slot.metrics.index))
        yield memory
        yield from _process_families()

    def _listener_families(self) -> Iterator[Family]:
        queued = Family("geventserve_listen_backlog", "gauge", "Connections waiting in the "
                        "kernel's accept queue of each TCP listener.")
        limit = Family("geventserve_listen_backlog_limit", "gauge", "The accept queue's "
                       "length limit of each TCP listener (--backlog).")
        for listener in self.supervisor.listeners.current:
            if listener.family not in (socket.AF_INET, socket.AF_INET6):
                continue  # Linux tells a unix socket's queue only through netlink sock_diag
            try:
                info = listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
                waiting, most = _TCP_INFO_QUEUE.unpack_from(info)
                name = sockets.describe(listener).replace("http://", "")
            except (OSError, struct.error):
                continue
            queued.add(waiting, listener=name)
            limit.add(most, listener=name)
        yield queued
        yield limit

    def status(self) -> Dict[str, Any]:
        now = time.monotonic()
        supervisor = self.supervisor
        workers = []
        for record in self._live():
            block, slot = record.slot.metrics, record.slot
            ints = block.ints
            lag = block.doubles[layout.LOOP_LAG]
            tick = getattr(record.worker, "tick", None)
            if tick:  # a loop stuck now has not beaten since
                lag = max(lag, now - slot.last_beat - tick)
            requests = block.counters(block.used_codes())[0]
            workers.append({
                "slot": block.index, "pid": record.pid,
                "state": "stopping" if record.stopping_since else STATES.get(slot.state, "?"),
                "generation": record.generation.number,
                "age": round(now - record.started, 1),
                "requests": sum(requests.values()),
                "connections": {"active": ints[layout.ACTIVE], "idle": ints[layout.IDLE],
                                "taken_over": ints[layout.TAKEN_OVER]},
                "rss": resident_bytes(record.pid), "loop_lag": round(max(lag, 0.0), 4),
                "requests_in_flight": ints[layout.IN_FLIGHT],
                "in_flight": [{"method": method, "path": path,
                               "seconds": round(now - started, 3)}
                              for method, path, started in block.in_flight() or []],
            })
        return {"server": "geventserve", "version": sys.modules["geventserve"].__version__,
                "pid": os.getpid(), "workers_wanted": supervisor.num_workers,
                "restarts": {k: v for k, v in sorted(self.restarts.items()) if v},
                "workers": workers}


def _requests(counters: Dict[int, int], codes: List[int]) -> Family:
    family = Family("geventserve_requests", "counter", "Requests answered, by method and "
                    "status code (code 0: the client went away before any response).")
    for row, method in enumerate(layout.METHOD_LABELS):
        for code in codes:
            count = counters.get(layout.REQUESTS + row * layout.CODES + code)
            if count:
                family.add(count, method=method, code=str(code))
    return family



_boot_time: List[int] = []


def _process_families() -> Iterator[Family]:
    """The supervisor's own process_* metrics, named as prometheus_client's."""
    try:
        with open("/proc/self/stat", "rb") as fh:
            fields = fh.read().rpartition(b")")[2].split()
        if not _boot_time:
            with open("/proc/stat", "rb") as fh:
                _boot_time.extend(int(line.split()[1]) for line in fh
                                  if line.startswith(b"btime "))
        boot = _boot_time[0]
        open_fds = len(os.listdir("/proc/self/fd"))
    except (OSError, ValueError, IndexError):
        return
    utime, stime, start = int(fields[11]), int(fields[12]), int(fields[19])
    yield Family("process_cpu_seconds", "counter", "Total user and system CPU time spent in "
                 "seconds.").add((utime + stime) / _TICKS)
    yield Family("process_virtual_memory_bytes", "gauge", "Virtual memory size in "
                 "bytes.").add(int(fields[20]))
    yield Family("process_resident_memory_bytes", "gauge", "Resident memory size in "
                 "bytes.").add(int(fields[21]) * _PAGE)
    yield Family("process_start_time_seconds", "gauge", "Start time of the process since unix "
                 "epoch in seconds.").add(boot + start / _TICKS)
    yield Family("process_open_fds", "gauge", "Number of open file descriptors.").add(open_fds)
    yield Family("process_max_fds", "gauge", "Maximum number of open file "
                 "descriptors.").add(resource.getrlimit(resource.RLIMIT_NOFILE)[0])
