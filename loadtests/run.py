"""Run the locust load tests against real server processes and summarise them.

Five modes (``python loadtests/run.py MODE --help`` lists each one's flags):

- ``run``: examples/upstream.py and examples/io_bound.py under geventserve (gevent workers),
  loaded by loadtests/locustfile_io.py; exits non-zero if any request failed. ``make loadtest``.
- ``compare``: the same scenario against geventserve -k gevent, geventserve -k sync and
  gunicorn -k gevent, one after another with the same workers; one table. ``make
  loadtest-compare``.
- ``seeds``: the Flask hello world (examples/hello.py) under the Flask development server,
  gunicorn (sync), gunicorn behind nginx, geventserve, geventserve behind nginx; writes the
  table into loadtests/README.md. ``make loadtest-seeds``.
- ``chat``: the Flask-SocketIO chat room (examples/chat.py) under geventserve -k gevent, one
  worker, its users on open WebSockets (loadtests/locustfile_chat.py); exits non-zero if
  anything failed. ``make loadtest-chat``.
- ``fleet``: three hosts (network namespaces on a private bridge, or loopback addresses), each
  geventserve serving the I/O-bound app, behind HAProxy then nginx, under load the whole time:
  a new version rolled over them, one upgraded with USR2, workers recycled by memory, one host
  killed; exits non-zero on a failure the phase does not allow; writes the table into
  loadtests/README.md. ``make fleet``.

Every server is a subprocess in its own process group on free loopback ports, started from the
reports directory (so no ./geventserve.conf.py or ./gunicorn.conf.py is picked up) and stopped by
PID whatever happens (Ctrl-C and TERM included). Locust's output, the servers' logs and the
CSV and HTML reports go to loadtests/reports/; only the summaries are printed. This file only
reads the command line: each mode is a module of loadtests/modes/, and the processes, ports and
/proc figures come from the harness (harness/) that the tests and the benchmark share.

Exit codes: 0 all went well; 1 some request failed (``run``, ``chat``, ``fleet``); 2 bad command
line; 3 a server could not start or did not answer its first requests; 4 locust itself failed.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Optional, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the harness, loadtests.modes

from harness.process import ProcessError
from loadtests.modes import (
    EXIT_LOCUST,
    EXIT_SERVER,
    REPORTS,
    LocustError,
    chat,
    compare,
    fleet,
    positive,
    run,
    seeds,
)
from loadtests.modes.measure import duration, raise_open_files_limit

MODES = {"run": (run, "30s"), "compare": (compare, "30s"), "seeds": (seeds, "10s"),
         "chat": (chat, "30s"), "fleet": (fleet, "3s")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadtests/run.py", description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 ok; 1 some request failed (run, chat, fleet); 2 bad command "
               "line; 3 a server could not start or answer; 4 locust failed. Reports: "
               "loadtests/reports/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")
    for name, (module, run_time) in MODES.items():
        sub = modes.add_parser(name, help=module.HELP,
                               formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        sub.add_argument("-u", "--users", type=positive, default=1000,
                         help="concurrent locust users")
        sub.add_argument("-r", "--spawn-rate", type=float, default=100,
                         help="users started per second")
        sub.add_argument("-t", "--run-time", type=duration, default=run_time,
                         help=getattr(module, "RUN_TIME_HELP",
                                      "how long locust runs (ramp-up included), as 30s, 2m"))
        sub.add_argument("-w", "--workers", type=positive, default=4,
                         help="worker processes of the server under test (every server alike)")
        sub.add_argument("--worker-connections", type=positive, default=1000,
                         help="connections per gevent worker (geventserve and gunicorn alike)")
        module.add_arguments(sub)
    return parser


def on_signal_exit(signum: int, frame: object) -> None:
    """TERM and HUP end the script like Ctrl-C does, so that every finally block runs."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line, run the mode, return the exit code."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, on_signal_exit)
    signal.signal(signal.SIGHUP, on_signal_exit)
    REPORTS.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit(args.users)
    try:
        return MODES[args.mode][0].main(args)
    except (ProcessError, LocustError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVER if isinstance(exc, ProcessError) else EXIT_LOCUST
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({str(exc) or 'Ctrl-C'}): servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
