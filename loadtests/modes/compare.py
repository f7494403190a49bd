"""Mode ``compare``: the I/O scenario of ``run`` against geventserve -k gevent, geventserve
-k sync and gunicorn -k gevent, one after another with the same workers; one table."""

from __future__ import annotations

import argparse
import time
from contextlib import ExitStack
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from loadtests.modes import EXAMPLES, EXIT_SERVER, LOCUSTFILE_IO, REPORTS, print_header, require
from loadtests.modes import run as io_scenario
from loadtests.modes.measure import Stats, fmt_ms, measured

HELP = "geventserve gevent vs geventserve sync vs gunicorn gevent"

COMPARE_ROWS: List[Tuple[str, Callable[[Stats], str]]] = [
    ("requests", lambda s: str(s.requests)),
    ("requests/s", lambda s: f"{s.rps:.1f}"),
    ("median", lambda s: fmt_ms(s.median)),
    ("average", lambda s: fmt_ms(s.average)),
    ("p95", lambda s: fmt_ms(s.p95)),
    ("p99", lambda s: fmt_ms(s.p99)),
    ("max", lambda s: fmt_ms(s.max)),
    ("failures", lambda s: f"{s.failures} ({s.failure_pct:.1f}%)"),
    ("CPU s: io_bound", lambda s: cpu_of(s, "io_bound")),
    ("CPU s: upstream", lambda s: cpu_of(s, "upstream")),
    ("CPU s: locust", lambda s: cpu_of(s, "locust")),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io_scenario.add_arguments(parser)
    parser.add_argument("--pause", type=float, default=3.0,
                        help="seconds of rest between two servers")


def cpu_of(stats: Stats, role: str) -> str:
    """CPU seconds of the processes whose role starts with ``role``, for a table."""
    found = [seconds for who, seconds in stats.cpu if who.startswith(role)]
    return f"{sum(found):.1f}" if found else "-"


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(r, widths))) for r in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    require(EXAMPLES / "io_bound.py", EXAMPLES / "upstream.py", LOCUSTFILE_IO)
    w = args.workers
    servers = [("compare-geventserve-gevent", f"geventserve -k gevent -w {w}", "geventserve",
                "gevent"),
               ("compare-geventserve-sync", f"geventserve -k sync -w {w}", "geventserve",
                "sync"),
               ("compare-gunicorn-gevent", f"gunicorn -k gevent -w {w}", "gunicorn", "gevent")]
    print(f"examples/io_bound.py, {args.users} users, {args.spawn_rate:g}/s, {args.run_time} "
          f"each, --worker-connections {args.worker_connections}")
    results: Dict[str, Optional[Stats]] = {}
    problems: List[str] = []
    code = 0
    with ExitStack() as stack:
        upstream = io_scenario.start_upstream(stack, "compare", args)
        for index, (name, label, kind, worker) in enumerate(servers):
            if index:
                time.sleep(args.pause)
            print_header(label)
            results[label], failed = measured(
                lambda name=name, label=label, kind=kind, worker=worker:
                io_scenario.measure_io(name, label, kind, worker, upstream, args))
            if failed:
                problems.append(f"{label}: "
                                + ("did not start" if failed == EXIT_SERVER else "locust failed"))
                code = code or failed
    header = ["", *results]
    rows = [[metric, *(fn(s) if s else "-" for s in results.values())]
            for metric, fn in COMPARE_ROWS]
    table = text_table(header, rows)
    print_header(f"comparison ({args.users} users, {args.run_time}, {w} workers each)")
    print(table)
    (REPORTS / "compare_summary.txt").write_text(table + "\n")
    print(f"reports: {REPORTS}/compare-*.html, compare-*_stats.csv, compare_summary.txt")
    for problem in problems:
        print(f"problem: {problem}")
    return code
