"""Mode ``seeds``: the Flask hello world (examples/hello.py) under the Flask development server,
gunicorn (sync), gunicorn behind nginx, geventserve and geventserve behind nginx; the table
goes into loadtests/README.md."""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from harness.machine import machine_line, package_version, versions
from harness.nginx import NGINX, NGINX_CONF, Nginx, nginx_version
from harness.ports import free_port
from harness.process import Process, server_env
from loadtests.modes import (
    EXAMPLES,
    LOCUSTFILE_HELLO,
    README,
    REPORTS,
    ROOT,
    StartError,
    print_header,
    require,
    write_section,
)
from loadtests.modes.measure import Stats, measured, run_locust
from loadtests.modes.servers import START_TIMEOUT, preflight, start_server

HELP = "the hello app under five servers; README table"
SEEDS_START = "<!-- seeds:start -->"
SEEDS_END = "<!-- seeds:end -->"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pause", type=float, default=3.0,
                        help="seconds of rest between two servers")
    parser.add_argument("--nginx-via", choices=("tcp", "unix"), default="tcp",
                        help="how nginx reaches the server: the server block of "
                             "examples/nginx.conf whose upstream is on TCP or on a unix socket")
    parser.add_argument("--only", default="", metavar="KEYS",
                        help="comma-separated subset of flask-dev, gunicorn-sync, "
                             "nginx-gunicorn-sync, geventserve-gevent, nginx-geventserve-gevent")
    parser.add_argument("--readme", default=None, metavar="FILE",
                        help="file whose seeds section gets the table ('' to only print it; "
                             "default: loadtests/README.md, unless --only is given)")


def seeds_servers(args: argparse.Namespace) -> List[Tuple[str, str]]:
    w = args.workers
    return [("flask-dev", "Flask development server (`flask run`, threaded)"),
            ("gunicorn-sync", f"gunicorn, {w} sync workers"),
            ("nginx-gunicorn-sync", f"nginx -> gunicorn, {w} sync workers"),
            ("geventserve-gevent", f"geventserve, {w} gevent workers"),
            ("nginx-geventserve-gevent", f"nginx -> geventserve, {w} gevent workers")]


def start_nginx(stack: ExitStack, name: str, tmp: Path, port: int, sock: Path,
                via: str) -> Tuple[str, int]:
    """nginx from examples/nginx.conf (no access log) in front of the backend on ``port`` and
    ``sock``, stopped with ``stack``; the URL of its server block proxying over ``via``, its
    PID. Its configuration is kept beside its log in the reports."""
    if not os.path.exists(NGINX):
        raise StartError("nginx is not installed (apt-get install nginx-light)")
    require(Path(NGINX_CONF))
    nginx = stack.enter_context(Nginx(str(tmp), port, str(sock), access_log=False,
                                      log=str(REPORTS / f"{name}_nginx.log")))
    try:
        nginx.start()
    finally:
        if os.path.exists(nginx.conf):
            shutil.copy(nginx.conf, REPORTS / f"{name}_nginx.conf")  # for the record
    return f"http://127.0.0.1:{nginx.ports[via]}", nginx.pid


def start_seed_server(stack: ExitStack, key: str, name: str, tmp: Path,
                      args: argparse.Namespace) -> Tuple[str, List[Tuple[str, int]]]:
    """Start what ``key`` names (backend, and nginx in front if asked), stopped with ``stack``;
    its URL and the (role, PID) of each process started."""
    port = free_port()
    log = REPORTS / f"{name}_server.log"
    base = f"http://127.0.0.1:{port}"
    if key == "flask-dev":
        flask = stack.enter_context(Process(
            [sys.executable, "-m", "flask", "--app", "hello", "run", "--host", "127.0.0.1",
             "--port", str(port)], name="flask run", cwd=str(EXAMPLES), env=server_env(),
            log=str(log)).start())
        flask.wait_answer(base + "/", timeout=START_TIMEOUT)
        return base, [("flask", flask.pid)]
    kind, worker = ("gunicorn", "sync") if "gunicorn" in key else ("geventserve", "gevent")
    behind_nginx = key.startswith("nginx-")
    sock = tmp / "backend.sock"
    binds = [f"127.0.0.1:{port}"] + ([f"unix:{sock}"] if behind_nginx else [])
    server = start_server(stack, kind, worker, args.workers, binds, "hello:app",
                          args.worker_connections, log, ready_url=base + "/",
                          name=f"{kind} -k {worker}")
    if not behind_nginx:
        return base, [(kind, server.pid)]
    front, nginx_pid = start_nginx(stack, name, tmp, port, sock, args.nginx_via)
    preflight(front, ["/"], "nginx")
    return front, [(kind, server.pid), ("nginx", nginx_pid)]


def measure_seed(key: str, label: str, name: str, args: argparse.Namespace) -> Stats:
    with tempfile.TemporaryDirectory(prefix="loadtest-") as tmpdir, ExitStack() as stack:
        base, watch = start_seed_server(stack, key, name, Path(tmpdir), args)
        preflight(base, ["/"], label)
        return run_locust(LOCUSTFILE_HELLO, base, name, args, watch)


def main(args: argparse.Namespace) -> int:
    require(EXAMPLES / "hello.py", LOCUSTFILE_HELLO)
    results: List[Tuple[str, Optional[Stats]]] = []
    code = 0
    servers = seeds_servers(args)
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {key for key, _ in servers}
        if unknown:
            raise StartError(f"--only: unknown {', '.join(sorted(unknown))} (known: "
                             f"{', '.join(key for key, _ in servers)})")
        servers = [(key, label) for key, label in servers if key in wanted]
    for index, (key, label) in enumerate(servers):
        if index:
            time.sleep(args.pause)
        print_header(label)
        stats, failed = measured(lambda key=key, label=label:
                                 measure_seed(key, label, f"seeds-{key}", args))
        code = code or failed
        results.append((label, stats))
    section = seeds_markdown(results, args)
    print_header("seeds table")
    print(section)
    readme = args.readme
    if readme is None and args.only:
        print(f"\n(--only: {README.relative_to(ROOT)} left as it is; --readme FILE writes it)")
    elif readme != "":
        readme = readme or str(README)
        write_seeds(Path(readme), section)
        print(f"\nwritten into {readme} between {SEEDS_START} and {SEEDS_END}")
    return code


def seeds_markdown(results: Sequence[Tuple[str, Optional[Stats]]],
                   args: argparse.Namespace) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"Measured {today} on {machine_line()}, with locust {package_version('locust')} on the "
        f"same machine: `locust -f loadtests/locustfile_hello.py --headless -u {args.users} "
        f"-r {args.spawn_rate:g} --run-time {args.run_time}` (`loadtests/run.py seeds`). "
        f"{versions('geventserve', 'gunicorn', 'Flask', 'gevent')}, {nginx_version()} "
        f"(examples/nginx.conf, to the server over {args.nginx_via}).",
        "",
        "| server | average (ms) | p99 (ms) | requests/s | failures |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, stats in results:
        if stats is None:
            lines.append(f"| {label} | - | - | - | did not run |")
        else:
            lines.append(f"| {label} | {stats.average:.1f} | {stats.p99:.0f} | "
                         f"{stats.rps:.0f} | {stats.failures} |")
    return "\n".join(lines)


def write_seeds(readme: Path, section: str) -> None:
    """Replace what is between the seeds markers of ``readme`` with ``section``."""
    write_section(readme, SEEDS_START, SEEDS_END, section)
