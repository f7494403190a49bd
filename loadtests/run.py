"""Run the locust load tests against real server processes and summarise them.

Three modes (``python loadtests/run.py MODE --help`` lists each one's flags):

- ``run``: examples/upstream.py and examples/io_bound.py under geventserve (gevent workers),
  loaded by loadtests/locustfile_io.py; exits non-zero if any request failed. ``make loadtest``.
- ``compare``: the same scenario against geventserve -k gevent, geventserve -k sync and
  gunicorn -k gevent, one after another with the same workers; one table. ``make
  loadtest-compare``.
- ``seeds``: the Flask hello world (examples/hello.py) under the Flask development server,
  gunicorn (sync), gunicorn behind nginx, geventserve, geventserve behind nginx; writes the
  table into loadtests/README.md. ``make loadtest-seeds``.

Every server is a subprocess in its own process group on free loopback ports, started from the
reports directory (so no ./geventserve.conf.py or ./gunicorn.conf.py is picked up) and stopped by
PID whatever happens (Ctrl-C and TERM included). Locust's output, the servers' logs and the
CSV and HTML reports go to loadtests/reports/; only the summaries are printed.

Exit codes: 0 all went well; 1 some request failed (``run``); 2 bad command line; 3 a server
could not start or did not answer its first requests; 4 locust itself failed.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
EXAMPLES = ROOT / "examples"
REPORTS = HERE / "reports"
README = HERE / "README.md"
LOCUSTFILE_IO = HERE / "locustfile_io.py"
LOCUSTFILE_HELLO = HERE / "locustfile_hello.py"
NGINX_EXAMPLE = EXAMPLES / "nginx.conf"
SEEDS_START = "<!-- seeds:start -->"
SEEDS_END = "<!-- seeds:end -->"

EXIT_FAILURES = 1
EXIT_SERVER = 3
EXIT_LOCUST = 4

START_TIMEOUT = 30.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 10.0  # seconds for a server to stop after its stop signal, before SIGKILL
GRACEFUL_TIMEOUT = 5  # --graceful-timeout given to geventserve and gunicorn
LOCUST_MARGIN = 90.0  # seconds past --run-time before locust is declared stuck and killed
# Variables of the calling shell that would change the servers' settings behind our back.
SERVER_ENV_DROP = ("GEVENTSERVE_CMD_ARGS", "GUNICORN_CMD_ARGS", "WEB_CONCURRENCY", "FLASK_APP",
                   "FLASK_DEBUG", "FLASK_RUN_PORT", "FLASK_RUN_HOST")


class StartError(Exception):
    """A server did not start, or did not answer its first requests."""


class LocustError(Exception):
    """Locust exited abnormally or left no statistics."""


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path, lines: int = 30) -> str:
    """The last ``lines`` lines of a text file ('' if it does not exist)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip("\n").splitlines()[-lines:])


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


def server_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_DROP}
    env["PYTHONUNBUFFERED"] = "1"
    # The servers talk to each other on loopback: never through a proxy of the caller's shell.
    bypass = "127.0.0.1,localhost,::1"
    for name in ("no_proxy", "NO_PROXY"):
        env[name] = f"{env[name]},{bypass}" if env.get(name) else bypass
    if extra:
        env.update(extra)
    return env


def http_get(url: str, timeout: float) -> Tuple[int, bytes]:
    """GET ``url`` without any proxy; (status, body) even for a 4xx or 5xx."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Process:
    """A subprocess in its own process group, output to a log file, always stopped by PID."""

    def __init__(self, name: str, cmd: Sequence[str], log: Path, *, cwd: Path,
                 env: Optional[Dict[str, str]] = None, ready_url: Optional[str] = None,
                 ready_log: Optional[str] = None, ready_count: int = 1,
                 stop_signal: int = signal.SIGTERM, role: str = "") -> None:
        self.name = name
        self.role = role or name  # short name in the CPU line of the summary
        self.cmd = list(cmd)
        self.log = log
        self.cwd = cwd
        self.env = env if env is not None else server_env()
        self.ready_url = ready_url
        self.ready_log = re.compile(ready_log) if ready_log else None
        self.ready_count = ready_count
        self.stop_signal = stop_signal
        self.proc: Optional[subprocess.Popen] = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "wb") as out:
            out.write(("$ " + " ".join(self.cmd) + "\n").encode())
            out.flush()
            self.proc = subprocess.Popen(self.cmd, cwd=self.cwd, env=self.env,
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def exited(self) -> Optional[int]:
        return None if self.proc is None else self.proc.poll()

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        """Wait until the log shows readiness (if asked) and ``ready_url`` answers (any status)."""
        deadline = time.monotonic() + timeout
        last = "no answer yet"
        log_ok = self.ready_log is None
        url_ok = self.ready_url is None
        while time.monotonic() < deadline:
            code = self.exited()
            if code is not None:
                raise StartError(f"{self.name} exited with code {code} while starting; "
                                 f"its log ({self.log}):\n{indent(tail(self.log))}")
            if not log_ok:
                assert self.ready_log is not None
                found = self.ready_log.findall(tail(self.log, 10_000))
                log_ok = len(found) >= self.ready_count
            if log_ok and not url_ok:
                assert self.ready_url is not None
                try:
                    http_get(self.ready_url, timeout=2)
                    url_ok = True
                except OSError as exc:
                    last = f"{type(exc).__name__}: {exc}"
            if log_ok and url_ok:
                return
            time.sleep(0.1)
        raise StartError(f"{self.name} not ready within {timeout:g}s ({last}); its log "
                         f"({self.log}):\n{indent(tail(self.log))}")

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Stop signal to the group, SIGKILL to whatever is left of it after ``timeout``."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, self.stop_signal)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} (pid {self.proc.pid}) still running {timeout:g}s after "
                      f"{signal.Signals(self.stop_signal).name}: killed", file=sys.stderr)
        # Children (workers) that outlived their parent share its process group.
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            print(f"  {self.name} (pid {self.proc.pid}) did not die", file=sys.stderr)
        self.proc = None


class Processes:
    """The servers of one measurement: started in order, stopped in reverse, always."""

    def __init__(self) -> None:
        self.items: List[Process] = []

    def start(self, process: Process, ready_timeout: float = START_TIMEOUT) -> Process:
        self.items.append(process)
        process.start()
        process.wait_ready(ready_timeout)
        return process

    def stop(self) -> None:
        while self.items:
            self.items.pop().stop()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def on_signal_exit(signum: int, frame: object) -> None:
    """TERM and HUP end the script like Ctrl-C does, so that every finally block runs."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid``."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # utime, stime, and cutime, cstime of reaped children
            total += sum(int(x) for x in fields[11:15])
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- server command lines ------------------------------------------------------------------


def geventserve_cmd(worker: str, workers: int, binds: Sequence[str], app: str,
                    worker_connections: int) -> List[str]:
    cmd = [sys.executable, "-m", "geventserve", "-k", worker, "-w", str(workers),
           "--worker-connections", str(worker_connections),
           "--graceful-timeout", str(GRACEFUL_TIMEOUT), "--chdir", str(EXAMPLES)]
    for bind in binds:
        cmd += ["-b", bind]
    return [*cmd, app]


_GUNICORN_HELP: Optional[str] = None


def gunicorn_cmd(worker: str, workers: int, binds: Sequence[str], app: str,
                 worker_connections: int) -> List[str]:
    global _GUNICORN_HELP
    if _GUNICORN_HELP is None:
        out = subprocess.run([sys.executable, "-m", "gunicorn", "--help"], capture_output=True,
                             text=True, timeout=60)
        _GUNICORN_HELP = out.stdout
    cmd = [sys.executable, "-m", "gunicorn", "-k", worker, "-w", str(workers),
           "--worker-connections", str(worker_connections),
           "--graceful-timeout", str(GRACEFUL_TIMEOUT), "--chdir", str(EXAMPLES)]
    if "--no-control-socket" in _GUNICORN_HELP:
        # gunicorn 24+ opens a control socket at a fixed path in $HOME: several at once clash.
        cmd.append("--no-control-socket")
    for bind in binds:
        cmd += ["-b", bind]
    return [*cmd, app]


# Log lines that say all workers are up.
GEVENTSERVE_READY = (r"\[INFO\] Ready: ", 1)
GUNICORN_READY = (r"Booting worker with pid", None)  # once per worker


def server_process(name: str, kind: str, worker: str, workers: int, binds: Sequence[str],
                   app: str, worker_connections: int, log: Path, ready_url: str,
                   env: Optional[Dict[str, str]] = None, role: str = "") -> Process:
    """A geventserve or gunicorn server of the examples, waiting for all its workers."""
    if kind == "geventserve":
        cmd = geventserve_cmd(worker, workers, binds, app, worker_connections)
        pattern, count = GEVENTSERVE_READY
    else:
        cmd = gunicorn_cmd(worker, workers, binds, app, worker_connections)
        pattern, count = GUNICORN_READY[0], workers
    return Process(name, cmd, log, cwd=REPORTS, env=server_env(env), ready_url=ready_url,
                   ready_log=pattern, ready_count=count or 1, role=role or kind)


def preflight(base: str, paths: Sequence[str], name: str) -> None:
    """One GET of each path must answer 2xx, or the load test would only measure errors."""
    for path in paths:
        try:
            status, body = http_get(base + path, timeout=15)
        except OSError as exc:
            raise StartError(f"{name}: GET {path} failed: {type(exc).__name__}: {exc}")
        if not 200 <= status < 300:
            raise StartError(f"{name}: GET {path} answered {status}: {body[:300]!r}")


# -- nginx ---------------------------------------------------------------------------------


def strip_directives(text: str, names: Sequence[str]) -> str:
    """Remove the simple directives ``names`` (``name ...;``) wherever they are."""
    for name in names:
        text = re.sub(rf"(?m)^[ \t]*{name}[ \t][^;{{}}]*;[^\n]*\n?", "", text)
    return text


def blocks(text: str, keyword: str) -> List[Tuple[int, int, str]]:
    """(start, end, argument) of each ``keyword [argument] { ... }`` block in ``text``."""
    found = []
    for match in re.finditer(rf"(?m)^[ \t]*{keyword}(?:[ \t]+([^\s{{]+))?[ \t]*\{{", text):
        depth = 0
        for i in range(match.end() - 1, len(text)):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    found.append((match.start(), i + 1, match.group(1) or ""))
                    break
    return found


def nginx_config(example: str, tmp: Path, tcp_backend: str,
                 unix_backend: str) -> Tuple[str, Dict[str, int]]:
    """examples/nginx.conf rewritten to run from ``tmp`` on free ports.

    Every upstream server on TCP becomes ``tcp_backend`` and every unix-socket one
    ``unix_backend`` (the backend listens on both); the TLS servers are dropped (no
    certificate here); each other server block listens on a free loopback port; what nginx
    writes (pid, temp files) goes to ``tmp``, its error log to stderr (our log file); ``daemon
    off``, ``user root``, no access log.
    Returns the text and the port of the first server block proxying to each kind of backend:
    ``{"tcp": port, "unix": port}``.
    """
    text = re.sub(r"(?m)^[ \t]*#.*\n", "", example)  # comments: not for the parser below
    text = re.sub(r"(?m)[ \t]+#.*$", "", text)
    text = strip_directives(text, ["daemon", "user", "pid", "error_log", "access_log",
                                   "client_body_temp_path", "proxy_temp_path",
                                   "fastcgi_temp_path", "uwsgi_temp_path", "scgi_temp_path"])
    text = re.sub(r"(?m)^([ \t]*server[ \t]+)(?:127\.0\.0\.1|localhost|\[::1\]):\d+",
                  rf"\g<1>{tcp_backend}", text)
    text = re.sub(r"(?m)^([ \t]*server[ \t]+)unix:[^\s;]+", rf"\g<1>unix:{unix_backend}", text)
    text = re.sub(r"(?m)^([ \t]*proxy_pass[ \t]+http://)(?:127\.0\.0\.1|localhost):\d+",
                  rf"\g<1>{tcp_backend}", text)
    text = re.sub(r"(?m)^([ \t]*proxy_pass[ \t]+http://)unix:[^\s;:]+",
                  rf"\g<1>unix:{unix_backend}", text)
    upstreams = {name: text[start:end] for start, end, name in blocks(text, "upstream")}
    ports: Dict[str, int] = {}
    for start, end, _ in reversed(blocks(text, "server")):
        block = text[start:end]
        if re.search(r"(?m)^[ \t]*listen[^;]*\bssl\b", block):
            text = text[:start] + text[end:]
            continue
        port = free_port()
        block = re.sub(r"(?m)^[ \t]*listen[ \t][^;]*;\n?", "", block)
        block = re.sub(r"\{", f"{{\n        listen 127.0.0.1:{port};", block, count=1)
        target = re.search(r"proxy_pass[ \t]+http://([^\s;/]+)", block)
        if target:
            name = target.group(1)
            via = "unix" if "unix:" in upstreams.get(name, name) else "tcp"
            ports[via] = port  # blocks are visited last first: the first one wins
        text = text[:start] + block + text[end:]
    head = f"daemon off;\nuser root;\npid {tmp}/nginx.pid;\nerror_log stderr warn;\n"
    paths = "".join(f"    {name}_temp_path {tmp}/{name}_temp;\n"
                    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = re.sub(r"(?m)^([ \t]*http[ \t]*\{)",
                  lambda m: f"{m.group(1)}\n{paths}    access_log off;\n", text, count=1)
    return head + text, ports


def nginx_process(name: str, tmp: Path, via: str, tcp_backend: str, unix_backend: str,
                  log: Path) -> Tuple[Process, int]:
    """nginx from examples/nginx.conf, to the backend over ``via`` (tcp or unix); its port."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(nginx):
        raise StartError("nginx is not installed (apt-get install nginx-light)")
    if not NGINX_EXAMPLE.exists():
        raise StartError(f"{NGINX_EXAMPLE.relative_to(ROOT)} is missing")
    text, ports = nginx_config(NGINX_EXAMPLE.read_text(), tmp, tcp_backend, unix_backend)
    if via not in ports:
        raise StartError(f"{NGINX_EXAMPLE.relative_to(ROOT)} has no server block proxying "
                         f"over {via} (found: {', '.join(ports) or 'none'})")
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    kept = log.with_suffix(".conf")
    shutil.copy(conf, kept)  # beside the log, for the record
    cmd = [nginx, "-p", str(tmp), "-e", "stderr", "-c", str(conf)]
    check = subprocess.run([*cmd, "-t", "-q"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise StartError(f"{name}: nginx -t refused the generated {kept}:\n"
                         + indent(check.stderr.strip()))
    port = ports[via]
    return Process(name, cmd, log, cwd=tmp, ready_url=f"http://127.0.0.1:{port}/"), port


# -- locust --------------------------------------------------------------------------------


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


def read_stats(prefix: Path, log: Path) -> Stats:
    """Parse ``PREFIX_stats.csv`` (the Aggregated row) and ``PREFIX_failures.csv``."""
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
    text = tail(log, 100_000)
    stats.client_cpu_warning = "CPU usage above" in text
    printed = re.findall(r"(?m)^\s+Aggregated\s+(\d+)\s+(\d+)\(", text)
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
    parse_duration(text)
    return text


def run_locust(locustfile: Path, host: str, name: str, args: argparse.Namespace,
               watch: Sequence[Process] = ()) -> Stats:
    """Run locust headless against ``host``; reports under REPORTS with the prefix ``name``.

    The CPU time locust and the ``watch`` servers used meanwhile goes into the statistics.
    """
    prefix = REPORTS / name
    log = REPORTS / f"{name}_locust.log"
    for old in REPORTS.glob(f"{name}_*.csv"):
        old.unlink()
    cmd = [sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
           "-u", str(args.users), "-r", f"{args.spawn_rate:g}", "--run-time", args.run_time,
           "-H", host, "--csv", str(prefix), "--html", str(REPORTS / f"{name}.html"),
           "--only-summary"]
    proc = Process(f"locust ({name})", cmd, log, cwd=HERE, env=dict(os.environ),
                   stop_signal=signal.SIGINT)
    bound = parse_duration(args.run_time) + LOCUST_MARGIN
    servers_before = [group_cpu_seconds(server.pid) for server in watch]
    children_before = children_cpu_seconds()
    started = time.monotonic()
    proc.start()
    try:
        assert proc.proc is not None
        try:
            code = proc.proc.wait(bound)
        except subprocess.TimeoutExpired:
            raise LocustError(f"locust still running {bound:g}s after its start: stopped; "
                              f"its log ({log}):\n{indent(tail(log))}")
        wall = time.monotonic() - started
        cpu = [("locust", children_cpu_seconds() - children_before)]  # only locust was reaped
        cpu += [(server.role, group_cpu_seconds(server.pid) - before)
                for server, before in zip(watch, servers_before)]
    finally:
        proc.stop()
    # 0: no failure, 1: some request failed; anything else is locust's own trouble.
    if code not in (0, 1):
        raise LocustError(f"locust exited with code {code}; its log ({log}):\n"
                          f"{indent(tail(log))}")
    try:
        stats = read_stats(prefix, log)
    except LocustError as exc:
        raise LocustError(f"{exc}; locust's log ({log}):\n{indent(tail(log))}")
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


# -- set-up --------------------------------------------------------------------------------


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


def require(*paths: Path) -> None:
    missing = [str(p.relative_to(ROOT)) for p in paths if not p.exists()]
    if missing:
        raise StartError("missing: " + ", ".join(missing))


def print_header(title: str) -> None:
    print(f"\n== {title}", flush=True)


# -- modes ---------------------------------------------------------------------------------

IO_PREFLIGHT = ("/upstream?delay=0", "/sleep?seconds=0", "/stream?chunks=2")


def start_upstream(procs: Processes, name: str, args: argparse.Namespace) -> Process:
    """examples/upstream.py under geventserve (gevent), its URL in ``.ready_url``."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    upstream = procs.start(server_process(
        "upstream (geventserve -k gevent)", "geventserve", "gevent", args.upstream_workers,
        [f"127.0.0.1:{port}"], "upstream:app", max(args.worker_connections, args.users),
        REPORTS / f"{name}_server_upstream.log", ready_url=url, role="upstream"))
    preflight(url.rstrip("/"), ["/?delay=0"], "upstream")
    return upstream


def measure_io(name: str, label: str, kind: str, worker: str, upstream: Process,
               args: argparse.Namespace) -> Stats:
    """Start io_bound.py under ``kind -k worker``, load it with locustfile_io.py, stop it."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with Processes() as procs:
        server = procs.start(server_process(
            label, kind, worker, args.workers, [f"127.0.0.1:{port}"], "io_bound:app",
            args.worker_connections, REPORTS / f"{name}_server_io_bound.log",
            ready_url=base + "/sleep?seconds=0", env={"UPSTREAM_URL": str(upstream.ready_url)},
            role=f"io_bound ({kind})"))
        preflight(base, IO_PREFLIGHT, label)
        return run_locust(LOCUSTFILE_IO, base, name, args, [server, upstream])


def mode_run(args: argparse.Namespace) -> int:
    require(EXAMPLES / "io_bound.py", EXAMPLES / "upstream.py", LOCUSTFILE_IO)
    label = f"geventserve -k gevent -w {args.workers}"
    print_header(f"{label}: examples/io_bound.py, {args.users} users, {args.spawn_rate:g}/s, "
                 f"{args.run_time}")
    with Processes() as procs:
        upstream = start_upstream(procs, "run", args)
        stats = measure_io("run", label, "geventserve", "gevent", upstream, args)
    print("\n".join(summary_lines(stats)))
    print(f"reports: {REPORTS / 'run.html'}, {REPORTS / 'run_stats.csv'}, "
          f"logs {REPORTS / 'run_*.log'}")
    if stats.failures:
        print(f"FAILED: {stats.failures} of {stats.requests} requests failed")
        return EXIT_FAILURES
    print("OK: no request failed")
    return 0


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


def mode_compare(args: argparse.Namespace) -> int:
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
    with Processes() as procs:
        upstream = start_upstream(procs, "compare", args)
        for index, (name, label, kind, worker) in enumerate(servers):
            if index:
                time.sleep(args.pause)
            print_header(label)
            try:
                stats = measure_io(name, label, kind, worker, upstream, args)
            except StartError as exc:
                print(f"could not start: {exc}")
                problems.append(f"{label}: did not start")
                results[label] = None
                code = code or EXIT_SERVER
                continue
            except LocustError as exc:
                print(f"locust failed: {exc}")
                problems.append(f"{label}: locust failed")
                results[label] = None
                code = code or EXIT_LOCUST
                continue
            results[label] = stats
            print("\n".join(summary_lines(stats)))
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


def machine_line() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0))
    return (f"{cpu}, {cores} cores, Linux {platform.release()}, Python "
            f"{platform.python_version()}")


def package_version(name: str) -> str:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return "?"


def nginx_version() -> str:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    try:
        out = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "nginx ?"
    match = re.search(r"nginx/(\S+)", out.stderr + out.stdout)
    return f"nginx {match.group(1)}" if match else "nginx ?"


def seeds_servers(args: argparse.Namespace) -> List[Tuple[str, str]]:
    w = args.workers
    return [("flask-dev", "Flask development server (`flask run`, threaded)"),
            ("gunicorn-sync", f"gunicorn, {w} sync workers"),
            ("nginx-gunicorn-sync", f"nginx -> gunicorn, {w} sync workers"),
            ("geventserve-gevent", f"geventserve, {w} gevent workers"),
            ("nginx-geventserve-gevent", f"nginx -> geventserve, {w} gevent workers")]


def start_seed_server(procs: Processes, key: str, name: str, tmp: Path,
                      args: argparse.Namespace) -> str:
    """Start what ``key`` names (backend, and nginx in front if asked); returns the URL."""
    port = free_port()
    log = REPORTS / f"{name}_server.log"
    if key == "flask-dev":
        procs.start(Process("flask run", [sys.executable, "-m", "flask", "--app", "hello", "run",
                                          "--host", "127.0.0.1", "--port", str(port)],
                            log, cwd=EXAMPLES, ready_url=f"http://127.0.0.1:{port}/",
                            role="flask"))
        return f"http://127.0.0.1:{port}"
    kind, worker = ("gunicorn", "sync") if "gunicorn" in key else ("geventserve", "gevent")
    behind_nginx = key.startswith("nginx-")
    sock = tmp / "backend.sock"
    binds = [f"127.0.0.1:{port}"] + ([f"unix:{sock}"] if behind_nginx else [])
    procs.start(server_process(f"{kind} -k {worker}", kind, worker, args.workers, binds,
                               "hello:app", args.worker_connections, log,
                               ready_url=f"http://127.0.0.1:{port}/"))
    if not behind_nginx:
        return f"http://127.0.0.1:{port}"
    nginx, front = nginx_process("nginx", tmp, args.nginx_via,
                                 f"127.0.0.1:{port}", str(sock), REPORTS / f"{name}_nginx.log")
    procs.start(nginx)
    preflight(f"http://127.0.0.1:{front}", ["/"], "nginx")
    return f"http://127.0.0.1:{front}"


def mode_seeds(args: argparse.Namespace) -> int:
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
        name = f"seeds-{key}"
        print_header(label)
        with tempfile.TemporaryDirectory(prefix="loadtest-") as tmpdir, Processes() as procs:
            try:
                base = start_seed_server(procs, key, name, Path(tmpdir), args)
                preflight(base, ["/"], label)
                stats: Optional[Stats] = run_locust(LOCUSTFILE_HELLO, base, name, args,
                                                    list(procs.items))
            except StartError as exc:
                print(f"could not start: {exc}")
                stats, code = None, code or EXIT_SERVER
            except LocustError as exc:
                print(f"locust failed: {exc}")
                stats, code = None, code or EXIT_LOCUST
        if stats:
            print("\n".join(summary_lines(stats)))
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
    versions = ", ".join(f"{name} {package_version(name)}"
                         for name in ("geventserve", "gunicorn", "Flask", "gevent"))
    lines = [
        f"Measured {today} on {machine_line()}, with locust {package_version('locust')} on the "
        f"same machine: `locust -f loadtests/locustfile_hello.py --headless -u {args.users} "
        f"-r {args.spawn_rate:g} --run-time {args.run_time}` (`loadtests/run.py seeds`). "
        f"{versions}, {nginx_version()} (examples/nginx.conf, to the server over "
        f"{args.nginx_via}).",
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
    text = readme.read_text()
    start, end = text.find(SEEDS_START), text.find(SEEDS_END)
    if start < 0 or end < start:
        raise StartError(f"{readme} has no {SEEDS_START} ... {SEEDS_END} section")
    readme.write_text(text[:start + len(SEEDS_START)] + "\n" + section + "\n" + text[end:])


# -- command line --------------------------------------------------------------------------


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loadtests/run.py", description=__doc__.split("\n\n")[0],
        epilog="Exit codes: 0 ok; 1 some request failed (run); 2 bad command line; 3 a server "
               "could not start or answer; 4 locust failed. Reports: loadtests/reports/.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True, metavar="MODE")

    def common(sub: argparse.ArgumentParser, run_time: str, workers: int) -> None:
        sub.add_argument("-u", "--users", type=positive, default=1000,
                         help="concurrent locust users")
        sub.add_argument("-r", "--spawn-rate", type=float, default=100,
                         help="users started per second")
        sub.add_argument("-t", "--run-time", type=duration, default=run_time,
                         help="how long locust runs (ramp-up included), as 30s, 2m")
        sub.add_argument("-w", "--workers", type=positive, default=workers,
                         help="worker processes of the server under test (every server alike)")
        sub.add_argument("--worker-connections", type=positive, default=1000,
                         help="connections per gevent worker (geventserve and gunicorn alike)")

    run = modes.add_parser("run", help="geventserve -k gevent serving examples/io_bound.py",
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common(run, "30s", 4)
    run.add_argument("--upstream-workers", type=positive, default=1,
                     help="gevent workers of examples/upstream.py")
    compare = modes.add_parser(
        "compare", help="geventserve gevent vs geventserve sync vs gunicorn gevent",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common(compare, "30s", 4)
    compare.add_argument("--upstream-workers", type=positive, default=1,
                         help="gevent workers of examples/upstream.py")
    compare.add_argument("--pause", type=float, default=3.0,
                         help="seconds of rest between two servers")
    seeds = modes.add_parser("seeds", help="the hello app under five servers; README table",
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    common(seeds, "10s", 4)
    seeds.add_argument("--pause", type=float, default=3.0,
                       help="seconds of rest between two servers")
    seeds.add_argument("--nginx-via", choices=("tcp", "unix"), default="tcp",
                       help="how nginx reaches the server: the server block of "
                            "examples/nginx.conf whose upstream is on TCP or on a unix socket")
    seeds.add_argument("--only", default="", metavar="KEYS",
                       help="comma-separated subset of flask-dev, gunicorn-sync, "
                            "nginx-gunicorn-sync, geventserve-gevent, nginx-geventserve-gevent")
    seeds.add_argument("--readme", default=None, metavar="FILE",
                       help="file whose seeds section gets the table ('' to only print it; "
                            "default: loadtests/README.md, unless --only is given)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse the command line, run the mode, return the exit code."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, on_signal_exit)
    signal.signal(signal.SIGHUP, on_signal_exit)
    REPORTS.mkdir(parents=True, exist_ok=True)
    raise_open_files_limit(args.users)
    mode = {"run": mode_run, "compare": mode_compare, "seeds": mode_seeds}[args.mode]
    try:
        return mode(args)
    except StartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except LocustError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCUST
    except KeyboardInterrupt as exc:
        print(f"\ninterrupted ({str(exc) or 'Ctrl-C'}): servers stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
