"""Locust run headless against started servers, and what it measured: its statistics, the CPU
time of each process, the summary printed after each measurement."""

from __future__ import annotations

import argparse
import csv
import os
import re
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from harness.process import Process, ProcessError
from harness.procfs import group_cpu_seconds
from loadtests.modes import EXIT_FAILURES, EXIT_LOCUST, EXIT_SERVER, HERE, REPORTS, LocustError

LOCUST_MARGIN = 90.0  # seconds past --run-time before locust is declared stuck and killed


@dataclass
class Stats:
    """The Aggregated row of locust's statistics (times in milliseconds)."""

    requests: int
    failures: int
    rps: float
    median: float
    average: float
    p95: float
    p99: float
    max: float
    errors: List[Tuple[int, str]] = field(default_factory=list)  # (count, "GET /x: message")
    client_cpu_warning: bool = False
    notes: List[str] = field(default_factory=list)
    cpu: List[Tuple[str, float]] = field(default_factory=list)  # (who, CPU seconds) during it
    wall: float = 0.0  # seconds locust ran

    @property
    def failure_pct(self) -> float:
        return 100.0 * self.failures / self.requests if self.requests else 0.0


def _number(row: Dict[str, str], key: str) -> float:
    try:
        return float(row.get(key) or "nan")
    except ValueError:
        return float("nan")


def _row_stats(row: Dict[str, str]) -> Stats:
    return Stats(requests=int(_number(row, "Request Count")),
                 failures=int(_number(row, "Failure Count")),
                 rps=_number(row, "Requests/s"), median=_number(row, "Median Response Time"),
                 average=_number(row, "Average Response Time"), p95=_number(row, "95%"),
                 p99=_number(row, "99%"), max=_number(row, "Max Response Time"))


def read_rows(prefix: Path) -> Dict[str, Stats]:
    """Each row of ``PREFIX_stats.csv`` by its name (each request name, and Aggregated), with
    the failures of ``PREFIX_failures.csv`` under their request's name and all of them under
    Aggregated."""
    stats_csv = Path(f"{prefix}_stats.csv")
    if not stats_csv.exists():
        raise LocustError(f"locust wrote no {stats_csv}")
    with open(stats_csv, newline="") as fh:
        rows = {row.get("Name") or "": _row_stats(row) for row in csv.DictReader(fh)}
    failures_csv = Path(f"{prefix}_failures.csv")
    if failures_csv.exists():
        with open(failures_csv, newline="") as fh:
            for frow in csv.DictReader(fh):
                name = frow.get("Name") or ""
                error = (int(_number(frow, "Occurrences")),
                         f"{frow.get('Method')} {name}: {frow.get('Error')}")
                for key in {name, "Aggregated"} & set(rows):
                    rows[key].errors.append(error)
    for stats in rows.values():
        stats.errors.sort(reverse=True)
    return rows


def read_stats(prefix: Path, log: str) -> Stats:
    """Parse ``PREFIX_stats.csv`` (the Aggregated row) and ``PREFIX_failures.csv``; ``log`` is
    locust's output, for its CPU warning and its own final count."""
    stats = read_rows(prefix).get("Aggregated")
    if stats is None:
        raise LocustError(f"no Aggregated row in {prefix}_stats.csv")
    stats.client_cpu_warning = "CPU usage above" in log
    printed = re.findall(r"(?m)^\s+Aggregated\s+(\d+)\s+(\d+)\(", log)
    if printed and int(printed[-1][0]) != stats.requests:
        stats.notes.append(f"locust's final summary counts {printed[-1][0]} requests "
                           f"({printed[-1][1]} failed), its CSV {stats.requests}: the CSV missed "
                           "its last write")
        stats.failures = max(stats.failures, int(printed[-1][1]))
    return stats


def parse_duration(text: str) -> float:
    """Seconds in a locust duration: ``30``, ``30s``, ``2m``, ``1h30m``."""
    if re.fullmatch(r"\d+", text):
        return float(text)
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip())
    if not match or not any(match.groups()):
        raise argparse.ArgumentTypeError(f"not a duration like 30s, 2m or 1h30m: {text!r}")
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return hours * 3600.0 + minutes * 60.0 + seconds


def duration(text: str) -> str:
    """An argparse type: a valid locust duration, kept as written."""
    parse_duration(text)
    return text


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _hear_sigint() -> None:
    """In locust's child before exec: SIGINT back to its default, so that Python turns it into
    KeyboardInterrupt (locust's way to stop and write its reports) even when this script was
    started in the background by a shell, which leaves SIGINT ignored in it and its children."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class LocustRun:
    """Locust headless against ``host`` ("": each user class has its own), its reports under
    REPORTS with the prefix ``name``, for ``run_time`` (a locust duration) or until ``stop()``
    (SIGINT: it writes its reports, then exits). The CPU time locust and the ``watch`` process
    groups (role, pgid) used meanwhile goes into the statistics."""

    def __init__(self, locustfile: Path, host: str, name: str, args: argparse.Namespace,
                 run_time: Optional[str] = None, env: Optional[Dict[str, str]] = None,
                 watch: Sequence[Tuple[str, int]] = ()) -> None:
        self.prefix = REPORTS / name
        self.run_time = run_time
        self.watch = list(watch)
        cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
               "-u", str(args.users), "-r", f"{args.spawn_rate:g}", *(["-H", host] if host else []),
               *(["--run-time", run_time] if run_time else []),
               "--csv", str(self.prefix), "--html", str(REPORTS / f"{name}.html"),
               "--only-summary"]
        self.process = Process(cmd, name=f"locust ({name})", cwd=str(HERE),
                               env={**os.environ, **env} if env else None,
                               log=str(REPORTS / f"{name}_locust.log"),
                               stop_signal=signal.SIGINT, stop_timeout=10,
                               preexec_fn=_hear_sigint)
        self._servers_before: List[float] = []
        self._children_before = 0.0
        self._started = 0.0

    def start(self) -> LocustRun:
        for old in REPORTS.glob(f"{self.prefix.name}_*.csv"):
            old.unlink()
        self._servers_before = [group_cpu_seconds(pgid) for _, pgid in self.watch]
        self._children_before = children_cpu_seconds()
        self._started = time.monotonic()
        self.process.start()
        return self

    def finish(self) -> Stats:
        """Wait for the end of its run time (and LOCUST_MARGIN); its statistics."""
        bound = parse_duration(self.run_time or "0") + LOCUST_MARGIN
        try:
            code = self.process.wait(bound)
        except subprocess.TimeoutExpired:
            self.process.stop()
            raise LocustError(f"locust still running {bound:g}s after its start: stopped; "
                              f"{self.process.log_excerpt()}")
        wall = time.monotonic() - self._started
        cpu = [("locust", children_cpu_seconds() - self._children_before)]  # only locust reaped
        cpu += [(role, group_cpu_seconds(pgid) - before)
                for (role, pgid), before in zip(self.watch, self._servers_before)]
        self.process.stop()
        # 0: no failure, 1: some request failed; anything else is locust's own trouble.
        if code not in (0, 1):
            raise LocustError(f"locust exited with code {code}; {self.process.log_excerpt()}")
        try:
            stats = read_stats(self.prefix, self.process.log)
        except LocustError as exc:
            raise LocustError(f"{exc}; locust's {self.process.log_excerpt()}")
        stats.cpu, stats.wall = cpu, wall
        return stats

    def stop(self) -> Stats:
        """SIGINT now: locust ends its users' requests, writes its reports and exits; its
        statistics."""
        if self.process.exited() is None:
            self.process.signal(signal.SIGINT)
        return self.finish()

    def rows(self) -> Dict[str, Stats]:
        """Once finished: the statistics of each request name (see read_rows)."""
        return read_rows(self.prefix)

    def __enter__(self) -> LocustRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


def run_locust(locustfile: Path, host: str, name: str, args: argparse.Namespace,
               watch: Sequence[Tuple[str, int]] = ()) -> Stats:
    """Run locust headless against ``host`` for ``args.run_time``; reports under REPORTS with
    the prefix ``name`` (see LocustRun)."""
    with LocustRun(locustfile, host, name, args, args.run_time, watch=watch) as locust:
        return locust.start().finish()


def fmt_ms(value: float) -> str:
    return "-" if value != value else f"{value:.0f} ms"  # nan: no data


def summary_lines(stats: Stats) -> List[str]:
    lines = [
        f"requests     {stats.requests} ({stats.rps:.1f} requests/s)",
        f"median       {fmt_ms(stats.median)}",
        f"average      {fmt_ms(stats.average)}",
        f"p95          {fmt_ms(stats.p95)}",
        f"p99          {fmt_ms(stats.p99)}",
        f"max          {fmt_ms(stats.max)}",
        f"failures     {stats.failures} ({stats.failure_pct:.2f}%)",
    ]
    for count, error in stats.errors[:5]:
        lines.append(f"  {count:>7} x {error}")
    if stats.cpu:
        used = ", ".join(f"{who} {seconds:.1f} s" for who, seconds in stats.cpu)
        lines.append(f"CPU time     {used} (in {stats.wall:.1f} s on "
                     f"{len(os.sched_getaffinity(0))} cores)")
    if stats.client_cpu_warning:
        lines.append("note: locust's CPU went above 90%: the client may have set these numbers")
    lines += [f"note: {note}" for note in stats.notes]
    return lines


def conclude(stats: Stats, name: str) -> int:
    """The summary of the one measurement of a mode, where its reports are, and the failure
    rule: the exit code is EXIT_FAILURES if anything failed."""
    print("\n".join(summary_lines(stats)))
    print(f"reports: {REPORTS / f'{name}.html'}, {REPORTS / f'{name}_stats.csv'}, "
          f"logs {REPORTS / f'{name}_*.log'}")
    if stats.failures:
        print(f"FAILED: {stats.failures} of {stats.requests} requests failed")
        return EXIT_FAILURES
    print("OK: no request failed")
    return 0


def measured(measure: Callable[[], Stats]) -> Tuple[Optional[Stats], int]:
    """One measurement of several: its summary printed, or why there is none; (stats or None,
    the exit code it asks for)."""
    try:
        stats = measure()
    except ProcessError as exc:
        print(f"could not start: {exc}")
        return None, EXIT_SERVER
    except LocustError as exc:
        print(f"locust failed: {exc}")
        return None, EXIT_LOCUST
    print("\n".join(summary_lines(stats)))
    return stats, 0


def raise_open_files_limit(users: int) -> None:
    """Raise RLIMIT_NOFILE (inherited by locust and the servers) to what ``users`` need."""
    need = 2 * users + 1024  # a client socket and a server socket per user, plus headroom
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return
    try:
        if hard != resource.RLIM_INFINITY and hard < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, need))  # root may raise it
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        target = need
    except (ValueError, OSError):
        target = hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if target > soft:
        print(f"raised the open-files soft limit from {soft} to {target} "
              f"({users} users need about {need})")
    if target < need:
        print(f"warning: the open-files limit stays at {target} (hard limit {hard}) while "
              f"{users} users need about {need}: expect 'Too many open files' failures")
