"""Mode ``run``: examples/io_bound.py under geventserve -k gevent (its upstream,
examples/upstream.py, beside it), loaded by locustfile_io.py; fails if any request failed.
The I/O scenario is also what ``compare`` runs against each server."""

from __future__ import annotations

import argparse
from contextlib import ExitStack
from typing import Tuple

from harness.ports import free_port
from loadtests.modes import (
    EXAMPLES,
    LOCUSTFILE_IO,
    REPORTS,
    positive,
    print_header,
    require,
)
from loadtests.modes.measure import Stats, conclude, run_locust
from loadtests.modes.servers import preflight, start_server

HELP = "geventserve -k gevent serving examples/io_bound.py"
IO_PREFLIGHT = ("/upstream?delay=0", "/sleep?seconds=0", "/stream?chunks=2")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--upstream-workers", type=positive, default=1,
                        help="gevent workers of examples/upstream.py")


def start_upstream(stack: ExitStack, name: str, args: argparse.Namespace) -> Tuple[str, int]:
    """examples/upstream.py under geventserve (gevent), stopped with ``stack``; its URL, PID."""
    address = f"127.0.0.1:{free_port()}"
    upstream = start_server(stack, "geventserve", "gevent", args.upstream_workers, [address],
                            "upstream:app", max(args.worker_connections, args.users),
                            REPORTS / f"{name}_server_upstream.log",
                            ready_url=f"http://{address}/",
                            name="upstream (geventserve -k gevent)")
    preflight(f"http://{address}", ["/?delay=0"], "upstream")
    return f"http://{address}/", upstream.pid


def measure_io(name: str, label: str, kind: str, worker: str, upstream: Tuple[str, int],
               args: argparse.Namespace) -> Stats:
    """Start io_bound.py under ``kind -k worker``, load it with locustfile_io.py, stop it."""
    upstream_url, upstream_pid = upstream
    base = f"http://127.0.0.1:{free_port()}"
    with ExitStack() as stack:
        server = start_server(stack, kind, worker, args.workers, [base[len("http://"):]],
                              "io_bound:app", args.worker_connections,
                              REPORTS / f"{name}_server_io_bound.log",
                              ready_url=base + "/sleep?seconds=0",
                              env={"UPSTREAM_URL": upstream_url}, name=label)
        preflight(base, IO_PREFLIGHT, label)
        return run_locust(LOCUSTFILE_IO, base, name, args,
                          [(f"io_bound ({kind})", server.pid), ("upstream", upstream_pid)])


def main(args: argparse.Namespace) -> int:
    require(EXAMPLES / "io_bound.py", EXAMPLES / "upstream.py", LOCUSTFILE_IO)
    label = f"geventserve -k gevent -w {args.workers}"
    print_header(f"{label}: examples/io_bound.py, {args.users} users, {args.spawn_rate:g}/s, "
                 f"{args.run_time}")
    with ExitStack() as stack:
        upstream = start_upstream(stack, "run", args)
        stats = measure_io("run", label, "geventserve", "gevent", upstream, args)
    return conclude(stats, "run")
