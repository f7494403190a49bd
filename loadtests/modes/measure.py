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


def read_stats(prefix: Path, log: str) -> Stats:
    """Parse ``PREFIX_stats.csv`` (the Aggregated row) and ``PREFIX_failures.csv``; ``log`` is
    locust's output, for its CPU warning and its own final count."""
    stats_csv = Path(f"{prefix}_stats.csv")
    if not stats_csv.exists():
        raise LocustError(f"locust wrote no {stats_csv}")
    with open(stats_csv, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("Name") == "Aggregated"]
    if not rows:
        raise LocustError(f"no Aggregated row in {stats_csv}")
    row = rows[0]
    stats = Stats(requests=int(_number(row, "Request Count")),
                  failures=int(_number(row, "Failure Count")),
                  rps=_number(row, "Requests/s"), median=_number(row, "Median Response Time"),
                  average=_number(row, "Average Response Time"), p95=_number(row, "95%"),
                  p99=_number(row, "99%"), max=_number(row, "Max Response Time"))
    failures_csv = Path(f"{prefix}_failures.csv")
    if failures_csv.exists():
        with open(failures_csv, newline="") as fh:
            for frow in csv.DictReader(fh):
                stats.errors.append((int(_number(frow, "Occurrences")),
                                     f"{frow.get('Method')} {frow.get('Name')}: "
                                     f"{frow.get('Error')}"))
        stats.errors.sort(reverse=True)
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


def run_locust(locustfile: Path, host: str, name: str, args: argparse.Namespace,
               watch: Sequence[Tuple[str, int]] = ()) -> Stats:
    """Run locust headless against ``host``; reports under REPORTS with the prefix ``name``.

    The CPU time locust and the ``watch`` process groups (role, pgid) used meanwhile goes into
    the statistics.
    """
    prefix = REPORTS / name
    for old in REPORTS.glob(f"{name}_*.csv"):
        old.unlink()
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
           "-u", str(args.users), "-r", f"{args.spawn_rate:g}", "--run-time", args.run_time,
           "-H", host, "--csv", str(prefix), "--html", str(REPORTS / f"{name}.html"),
           "--only-summary"]
    locust = Process(cmd, name=f"locust ({name})", cwd=str(HERE),
                     log=str(REPORTS / f"{name}_locust.log"), stop_signal=signal.SIGINT,
                     stop_timeout=10)
    bound = parse_duration(args.run_time) + LOCUST_MARGIN
    servers_before = [group_cpu_seconds(pgid) for _, pgid in watch]
    children_before = children_cpu_seconds()
    started = time.monotonic()
    with locust.start():
        try:
            code = locust.wait(bound)
        except subprocess.TimeoutExpired:
            raise LocustError(f"locust still running {bound:g}s after its start: stopped; "
                              f"{locust.log_excerpt()}")
        wall = time.monotonic() - started
        cpu = [("locust", children_cpu_seconds() - children_before)]  # only locust was reaped
        cpu += [(role, group_cpu_seconds(pgid) - before)
                for (role, pgid), before in zip(watch, servers_before)]
    # 0: no failure, 1: some request failed; anything else is locust's own trouble.
    if code not in (0, 1):
        raise LocustError(f"locust exited with code {code}; {locust.log_excerpt()}")
    try:
        stats = read_stats(prefix, locust.log)
    except LocustError as exc:
        raise LocustError(f"{exc}; locust's {locust.log_excerpt()}")
    stats.cpu, stats.wall = cpu, wall
    return stats


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
