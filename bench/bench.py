"""Benchmark: geventserve beside gunicorn's gevent worker and granian, same apps, same run
(``make bench``).

Each server runs one worker pinned to CPU 0 (taskset); the load generator (wrk) is pinned to
CPU 1. Servers are interleaved within each round (their order rotates from round to round),
over several rounds, and the table reports medians: requests/s, p50 and p99 latency, errors,
the worker's RSS, the server's CPU time per request (its processes together: steadier than
requests/s on a shared machine), and geventserve's ratio to gunicorn and to granian. Each
workload of several servers also gets a chart beside the results (bench/charts.py).

granian (``make bench`` installs it, the ``bench`` extra; without it the bench says so and runs
the others) serves the same WSGI apps with its WSGI interface, one worker, one runtime thread,
--backlog 2048 (geventserve's and gunicorn's) and --backpressure set to the workload's
--worker-connections. It cannot run greenlets: the app runs in its blocking threads, one at a
time under the GIL, so their number is the one choice to make (Workload.threads). For the
workloads that never wait (hello, 1 MiB response, POST echo): 8 threads; on Flask hello 8 gave
8.8 k req/s, 1 thread 8.3 k (noise) and 100 threads (one per connection) 4.4 k. For the I/O
waits: one thread per connection, which is what their concurrency needs (1000 for the 100 ms
wait), but at most 1000: for 5000 connections of 1 s waits, 5000 threads measured about 560
req/s with 500 MiB of RSS (and once none at all in 6 s while it spawned them), 1000 threads
about 500 req/s; the cap costs granian nothing measurable and keeps the run steady. Granian has
no keep-alive timeout to set (it keeps connections open). The idle, hostile and websockets
parts stay geventserve and gunicorn only (granian's WSGI has no WebSockets, and its idle and
hostile behaviour is another comparison).

Variants of a workload (geventserve with --metrics-bind, scraped 100 times a second, without the
event-loop timing, with gevent's own monitor thread instead) run beside it in each round: right
after it in odd rounds, right before it in even ones (on this machine the second of two runs in
a row tends to be the faster, by up to 10 %); their ratios are the geometric means of the
rounds' ratios to it. The ``websockets`` workload is
bench/websockets.py (one round, its own client on CPU 1): memory per open WebSocket and echo
round trips. BENCH_QUICK=1 makes every run short. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import importlib.util
import json
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from statistics import geometric_mean
from typing import Callable, Dict, Iterator, List, Optional, Tuple

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the harness

import charts  # bench/charts.py, dbbench.py and hostile.py, beside this script
import dbbench
import hostile

from harness import EXAMPLES, ROOT
from harness.machine import machine_line, versions
from harness.ports import free_ports
from harness.process import Process, die_with_parent, server_env
from harness.procfs import group_cpu_seconds, rss_mib
from harness.servers import geventserve_command, granian_command, gunicorn_command

BENCH = os.path.join(ROOT, "bench")
RESULTS = os.path.join(BENCH, "results")  # --results changes it
SERVERS = ("geventserve", "gunicorn", "granian")
PEERS = SERVERS[1:]  # geventserve's rows have a ratio to each
SERVER_CPU, CLIENT_CPU = "0", "1"


@dataclass
class Workload:
    name: str
    title: str
    app: str
    chdir: str
    path: str
    connections: int
    wrk_timeout: str = "5s"
    script: Optional[str] = None  # a wrk lua script (for the POST)
    worker_connections: int = 1000
    extra_args: List[str] = field(default_factory=list)
    servers: Tuple[str, ...] = SERVERS
    threads: int = 8  # granian's --blocking-threads (see the docstring)
    base: str = ""  # a variant (geventserve only) of the workload of this name
    metrics: bool = False  # with --metrics-bind
    scrapes: int = 0  # GET /metrics a second during the measured run
    env: Dict[str, str] = field(default_factory=dict)


def variant(name: str, title: str, of: str, **changes: object) -> Workload:
    """A geventserve-only variant of the workload named ``of``, compared with it unless
    ``base`` names another (see WORKLOADS)."""
    fields = {**next(w for w in WORKLOADS if w.name == of).__dict__, "name": name,
              "title": title, "servers": ("geventserve",), "base": of, **changes}
    return Workload(**fields)  # type: ignore[arg-type]


WORKLOADS = [
    Workload("plain", "plain WSGI hello, 100 connections", "plain_wsgi:app", EXAMPLES, "/", 100),
    Workload("flask", "Flask hello, 100 connections", "hello:app", EXAMPLES, "/", 100),
    Workload("io", "Flask, 100 ms I/O wait, 1000 connections", "apps:flask_io", BENCH,
             "/sleep/100ms", 1000, wrk_timeout="10s", threads=1000),
    Workload("io5000", "Flask, 1 s I/O wait, 5000 connections (ideal 5000 req/s)",
             "apps:flask_io", BENCH, "/sleep/1s", 5000, wrk_timeout="20s",
             worker_connections=6000, threads=1000),
    Workload("big", "1 MiB response, 50 connections", "apps:big", BENCH, "/", 50),
    Workload("upload", "64 KiB POST echoed, 50 connections", "apps:echo", BENCH, "/", 50,
             script=os.path.join(BENCH, "post64k.lua")),
]
WORKLOADS[1:1] = [
    variant("plain-metrics", "plain hello, --metrics-bind", "plain", metrics=True),
    variant("plain-scraped", "plain hello, --metrics-bind, scraped 100 times a second",
            "plain", metrics=True, scrapes=100, base="plain-metrics"),
]
WORKLOADS[4:4] = [
    variant("flask-noloop", "Flask hello, --loop-block-warn 0 (no loop timing)", "flask",
            extra_args=["--loop-block-warn", "0"]),
    variant("flask-monitor", "Flask hello, gevent's monitor thread (0.5 s) instead", "flask",
            extra_args=["--loop-block-warn", "0"],
            env={"GEVENT_MONITOR_THREAD_ENABLE": "true", "GEVENT_MAX_BLOCKING_TIME": "0.5"}),
]
# examples/db_app.py on PostgreSQL and Redis (started by dbbench.start_databases), the same pool
# size in each server (granian: as many blocking threads).
WORKLOADS.append(Workload(
    "db", f"Flask on PostgreSQL + Redis (/mixed: a read, a write, an INCR), pool "
    f"{dbbench.POOL_SIZE}, 500 connections", dbbench.APP, EXAMPLES, "/mixed", 500,
    wrk_timeout="10s", threads=dbbench.POOL_SIZE, env=dict(dbbench.SERVER_ENV)))


def round_order(round_number: int) -> List[Workload]:
    """WORKLOADS in the order of this round: each workload with its variants after it in odd
    rounds, before it in even ones."""
    groups: List[List[Workload]] = []
    for workload in WORKLOADS:
        if workload.base and groups:
            groups[-1].append(workload)
        else:
            groups.append([workload])
    return [w for group in groups for w in (group if round_number % 2 else group[::-1])]


def server_command(server: str, workload: Workload, port: int, keepalive: float,
                   metrics_port: int = 0) -> List[str]:
    if server == "granian":
        return granian_command(
            ["--workers", "1", "--runtime-threads", "1", "--blocking-threads",
             str(workload.threads), "--host", "127.0.0.1", "--port", str(port), "--backlog",
             "2048", "--backpressure", str(workload.worker_connections), "--log-level",
             "warning", "--working-dir", workload.chdir], workload.app)
    options = ["-k", "gevent", "-w", "1", "-b", f"127.0.0.1:{port}", "--worker-connections",
               str(workload.worker_connections), "--log-level", "warning",
               "--keep-alive", f"{keepalive:g}", "--chdir", workload.chdir]
    if server == "geventserve":
        if metrics_port:
            options += ["--metrics-bind", f"127.0.0.1:{metrics_port}"]
        return geventserve_command(options + workload.extra_args, workload.app)
    return gunicorn_command(options, workload.app)


@contextlib.contextmanager
def running(server: str, workload: Workload,
            keepalive: float = 5) -> Iterator[Tuple[Process, int, int]]:
    """``server`` serving ``workload``, pinned to SERVER_CPU (its supervisor too) and from a
    neutral working directory (no ./geventserve.conf.py or ./gunicorn.conf.py is picked up),
    once it answered: (its process, its port, its --metrics-bind port or 0); stopped by PID on
    exit."""
    port, metrics_port = free_ports(2)
    metrics_port = metrics_port if workload.metrics else 0
    command = ["taskset", "-c", SERVER_CPU] + server_command(server, workload, port, keepalive,
                                                             metrics_port)
    env = server_env({"PYTHONPATH": os.pathsep.join([workload.chdir, ROOT]), **workload.env})
    with Process(command, name=server, cwd=RESULTS, env=env, append=True, stop_timeout=10,
                 preexec_fn=die_with_parent,
                 log=os.path.join(RESULTS, f"server-{server}.log")).start() as process:
        process.wait_answer(f"http://127.0.0.1:{port}{workload.path.split('?')[0]}", timeout=20)
        time.sleep(0.3)  # let the worker settle after its first request
        yield process, port, metrics_port


@contextlib.contextmanager
def scraping(port: int, per_second: int) -> Iterator[List[int]]:
    """GET /metrics ``per_second`` times a second on one kept-alive connection, as Prometheus
    does, until the block ends; yields the list of statuses answered."""
    statuses: List[int] = []
    stop = threading.Event()

    def scrape() -> None:
        os.sched_setaffinity(0, {int(CLIENT_CPU)})  # this thread: beside wrk, off the server's
        interval, due = 1.0 / per_second, time.monotonic()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while not stop.is_set():
            try:
                conn.request("GET", "/metrics")
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
            except (OSError, http.client.HTTPException):
                statuses.append(0)
                conn.close()
            due += interval
            stop.wait(max(due - time.monotonic(), 0.0))
        conn.close()

    thread = threading.Thread(target=scrape, daemon=True)
    if per_second:
        thread.start()
    try:
        yield statuses
    finally:
        stop.set()
        if per_second:
            thread.join(10)


def worker_rss_mib(process: Process) -> float:
    return rss_mib(process.worker_pids())


_DURATION = re.compile(r"([\d.]+)(us|ms|s|m)")


def _seconds(text: str) -> float:
    value, unit = _DURATION.fullmatch(text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def run_wrk(workload: Workload, port: int, duration: float) -> Dict[str, float]:
    command = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{workload.connections}",
               f"-d{duration:g}s", "--latency", "--timeout", workload.wrk_timeout]
    if workload.script:
        command += ["-s", workload.script]
    command.append(f"http://127.0.0.1:{port}{workload.path}")
    output = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))}
    for pct in ("50", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        result[f"p{pct}"] = _seconds(match.group(1)) if match else float("nan")
    errors = 0
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      output)
    if match:
        errors += sum(int(n) for n in match.groups())
    match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if match:
        errors += int(match.group(1))
    result["errors"] = errors
    return result


def measure(server: str, workload: Workload, duration: float, warmup: float) -> Dict[str, float]:
    with running(server, workload) as (process, port, metrics_port):
        run_wrk(workload, port, warmup)
        cpu = group_cpu_seconds(process.pid)
        with scraping(metrics_port, workload.scrapes) as scrapes:
            result = run_wrk(workload, port, duration)
        cpu = group_cpu_seconds(process.pid) - cpu
        result["cpu_us"] = cpu / max(result["rps"] * duration, 1.0) * 1e6
        result["rss"] = worker_rss_mib(process)
    if workload.scrapes:
        result["scrapes"] = len(scrapes) / duration
        result["errors"] += sum(1 for status in scrapes if status != 200)
    return result


def idle_connections(server: str, count: int, probes: int = 50) -> Dict[str, float]:
    """RSS of one worker holding ``count`` idle keep-alive connections, and the latency of
    requests made on top of them."""
    workload = Workload("idle", "", "plain_wsgi:app", EXAMPLES, "/", 0,
                        worker_connections=count + 500)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 1000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    with running(server, workload, keepalive=600) as (process, port, _):
        base_rss = worker_rss_mib(process)
        request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
        held = []
        try:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                sock.sendall(request)
                held.append(sock)
            for sock in held:  # each has had its response: now an idle keep-alive connection
                read_response(sock)
            time.sleep(1.0)
            rss = worker_rss_mib(process)
            latencies = []
            for _ in range(probes):
                started = time.perf_counter()
                with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                    sock.sendall(request)
                    read_response(sock)
                latencies.append(time.perf_counter() - started)
            alive = sum(1 for sock in held if _still_open(sock))
        finally:
            for sock in held:
                sock.close()
    latencies.sort()
    return {"rss": rss, "base_rss": base_rss, "p50": latencies[len(latencies) // 2],
            "max": latencies[-1], "alive": alive}


def hostile_clients(server: str, count: int, duration: float,
                    worker_connections: int) -> Dict[str, object]:
    """A paced normal client alone, then beside ``count`` clients of each hostile kind
    (bench/hostile.py), against one worker; with its peak RSS and descriptors, and whether
    it is still the same process at the end."""
    workload = Workload("hostile", "", "apps:hostile", BENCH, "/", 0,
                        worker_connections=worker_connections,
                        extra_args=["--header-timeout", f"{hostile.HEADER_TIMEOUT:g}",
                                    "--body-timeout", f"{hostile.BODY_TIMEOUT:g}"])
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(CLIENT_CPU)})  # the clients beside wrk's usual place
    try:
        with running(server, workload) as (process, port, _):
            workers = process.worker_pids()
            alone = hostile.run(port, duration, 0)
            started = time.monotonic()
            peak = {"rss": 0.0, "fds": 0}
            timeline: List[Tuple[float, int]] = []

            def sample() -> None:
                fds = sum(hostile.open_fds(pid) for pid in workers)
                peak["rss"] = max(peak["rss"], rss_mib(workers))
                peak["fds"] = max(peak["fds"], fds)
                timeline.append((time.monotonic() - started, fds))

            crowd = hostile.run(port, duration, count, sample, workers)
            crowd["same_worker"] = process.worker_pids() == workers
    finally:
        os.sched_setaffinity(0, affinity)
    crowd.update(rss_peak=peak["rss"], fds_peak=peak["fds"], timeline=timeline,
                 alone_p50=alone["p50"], alone_p99=alone["p99"],
                 alone_timeouts=alone["timeouts"], worker_connections=worker_connections)
    return crowd


def read_response(sock: socket.socket) -> bytes:
    """One response with a Content-Length, read whole."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        body += chunk
    return body


def _still_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False


def open_websockets(servers: str, count: int, quick: bool) -> str:
    """bench/websockets.py (one round; the server on SERVER_CPU, its client on CLIENT_CPU): its
    table, or why there is none."""
    print(f"websockets: {count} open on {servers} ...", file=sys.stderr, flush=True)
    active = max(count // 10, 1)
    command = [sys.executable, os.path.join(BENCH, "websockets.py"), "--servers", servers,
               "-n", str(count), "--active", str(active), "--duration", "5" if quick else "20",
               "--server-cpu", SERVER_CPU, "--client-cpu", CLIENT_CPU]
    done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    if not done.stdout.strip():
        return f"websockets: bench/websockets.py failed ({done.returncode}): {done.stderr[-500:]}\n"
    return done.stdout


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds == seconds else "-"


def rotated(servers: List[str], round_number: int) -> List[str]:
    """``servers`` in round ``round_number``'s order: each round starts one further along, so
    each server runs first (and after each other) as often as the others."""
    shift = (round_number - 1) % len(servers) if servers else 0
    return servers[shift:] + servers[:shift]


def main(argv: Optional[List[str]] = None) -> int:
    global RESULTS  # the servers' logs and working directory go there too
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per measured run (default 10, or 3 with BENCH_QUICK=1)")
    parser.add_argument("--workloads",
                        default=",".join(w.name for w in WORKLOADS) + ",idle,hostile,websockets",
                        help="comma-separated subset of: "
                             + ", ".join(w.name for w in WORKLOADS) + ", idle, hostile, websockets")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--results", default=RESULTS,
                        help="directory of latest.md, latest.json, the charts and the servers' "
                             "logs (default bench/results)")
    parser.add_argument("--idle-connections", type=int, default=10000)
    parser.add_argument("--hostile-clients", type=int, default=1000,
                        help="clients of each hostile kind (default 1000)")
    parser.add_argument("--hostile-duration", type=float, default=None,
                        help="seconds of each hostile measurement (default 45, 20 with "
                             "BENCH_QUICK=1)")
    parser.add_argument("--hostile-worker-connections", default="4000,1000",
                        help="--worker-connections of the hostile runs (geventserve)")
    parser.add_argument("--websockets", type=int, default=None,
                        help="WebSockets held open (default 10 000, or 2 000 with BENCH_QUICK=1)")
    args = parser.parse_args(argv)
    quick = os.environ.get("BENCH_QUICK") == "1"
    duration = args.duration or (3.0 if quick else 10.0)
    warmup = 1.0 if quick else 2.0
    wanted = args.workloads.split(",")
    servers = args.servers.split(",")
    RESULTS = os.path.abspath(args.results)
    if "granian" in servers and importlib.util.find_spec("granian") is None:
        print("bench: granian is not installed (pip install -e '.[bench]'): running without it",
              file=sys.stderr)
        servers.remove("granian")
    if shutil.which("wrk") is None:
        print("bench: wrk is not installed (make bench installs it from Debian's packages)",
              file=sys.stderr)
        return 1
    if len(os.sched_getaffinity(0)) < 2:
        print("bench: needs two CPUs (one for the server, one for wrk)", file=sys.stderr)
        return 1
    os.makedirs(RESULTS, exist_ok=True)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = {}
    databases = dbbench.start_databases(WORKLOADS, wanted, CLIENT_CPU, RESULTS)
    started = datetime.datetime.now()
    for round_number in range(1, args.rounds + 1):
        for workload in round_order(round_number):
            if workload.name not in wanted:
                continue
            for server in rotated([s for s in servers if s in workload.servers],
                                  round_number):
                print(f"round {round_number}: {workload.name} on {server} ...", end=" ",
                      flush=True, file=sys.stderr)
                result = measure(server, workload, duration, warmup)
                print(f"{result['rps']:.0f} req/s", file=sys.stderr)
                results.setdefault(workload.name, {}).setdefault(server, []).append(result)
    databases.close()
    idle: Dict[str, Dict[str, float]] = {}
    others = [s for s in servers if s != "granian"]  # idle, hostile, websockets: not granian
    if "idle" in wanted:
        for server in others:
            print(f"idle: {args.idle_connections} connections on {server} ...", end=" ",
                  flush=True, file=sys.stderr)
            idle[server] = idle_connections(server, args.idle_connections)
            print(f"{idle[server]['rss']:.0f} MiB", file=sys.stderr)
    # The rounds' table is saved at once: what follows may take minutes (or fail).
    note = (f"{started:%Y-%m-%d}, one worker pinned to a CPU, wrk on another; medians of "
            f"{args.rounds} interleaved round{'s' * (args.rounds != 1)} of {duration:g} s "
            "(make bench)")
    save(render(results, idle, args, started, duration), {"results": results, "idle": idle}, note)
    hostile_rows: List[Dict[str, object]] = []
    if "hostile" in wanted:
        hostile_duration = args.hostile_duration or (20.0 if quick else 45.0)
        for server in others:
            limits = ([int(n) for n in args.hostile_worker_connections.split(",")]
                      if server == "geventserve" else [4000])
            for limit in limits:
                print(f"hostile: {args.hostile_clients} of each kind on {server} "
                      f"(--worker-connections {limit}) ...", end=" ", flush=True,
                      file=sys.stderr)
                row = hostile_clients(server, args.hostile_clients, hostile_duration, limit)
                row["server"] = server
                hostile_rows.append(row)
                print(f"p99 {fmt_ms(row['p99'])} (alone {fmt_ms(row['alone_p99'])})",
                      file=sys.stderr)
    report = render(results, idle, args, started, duration) + render_hostile(hostile_rows, args)
    if "websockets" in wanted:
        count = args.websockets or (2000 if quick else 10_000)
        report += "\n" + open_websockets(",".join(others), count, quick)
    print(report)
    save(report, {"results": results, "idle": idle, "hostile": hostile_rows}, note)
    return 0


def save(report: str, figures: Dict[str, object], note: str = "") -> None:
    """latest.md and latest.json in RESULTS, and a chart of each workload of several servers
    (WORKLOAD.svg) beside them, ``note`` at its foot."""
    with open(os.path.join(RESULTS, "latest.md"), "w") as fh:
        fh.write(report)
    with open(os.path.join(RESULTS, "latest.json"), "w") as fh:
        json.dump(figures, fh, indent=1)
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = figures["results"]  # type: ignore
    for workload in WORKLOADS:
        by_server = results.get(workload.name, {})
        if len(by_server) < 2:
            continue
        bars = [charts.Bar(server, *(statistics.median([r[key] for r in runs])
                                     for key in ("rps", "p50", "p99")))
                for server, runs in by_server.items()]
        with open(os.path.join(RESULTS, f"{workload.name}.svg"), "w") as fh:
            fh.write(charts.workload_chart(workload.title, bars, note=note))


def render(results: Dict[str, Dict[str, List[Dict[str, float]]]],
           idle: Dict[str, Dict[str, float]], args: argparse.Namespace,
           started: datetime.datetime, duration: float) -> str:
    median: Callable[[List[float]], float] = statistics.median
    lines = [f"Benchmark of {started:%Y-%m-%d %H:%M}, {machine_line()}; "
             f"{versions('geventserve', 'gunicorn', 'granian', 'gevent', 'Flask')}.",
             f"One worker pinned to CPU {SERVER_CPU}, wrk pinned to CPU {CLIENT_CPU}; "
             f"{args.rounds} interleaved rounds of {duration:g} s; medians.", "",
             "| workload | server | req/s | p50 | p99 | errors | worker RSS | CPU/request | "
             "to gunicorn (a variant: to the workload named, req/s and CPU/request) | "
             "to granian |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for workload in WORKLOADS:
        by_server = results.get(workload.name)
        if not by_server:
            continue
        rps = {server: median([r["rps"] for r in runs]) for server, runs in by_server.items()}
        base = results.get(workload.base, {}).get("geventserve")
        for server, runs in by_server.items():
            ratios = dict.fromkeys(PEERS, "")
            if base:  # run beside its base in each round: the mean of those ratios
                rps_ratio = geometric_mean([r["rps"] / b["rps"] for r, b in zip(runs, base)])
                cpu_ratio = geometric_mean([r["cpu_us"] / b["cpu_us"]
                                            for r, b in zip(runs, base)])
                ratios["gunicorn"] = f"{workload.base}: {rps_ratio:.3f}x, {cpu_ratio:.3f}x"
            elif server == "geventserve":
                ratios.update({peer: f"{rps[server] / rps[peer]:.2f}x" for peer in PEERS
                               if rps.get(peer)})
            lines.append(
                f"| {workload.title} | {server} | {rps[server]:.0f} | "
                f"{fmt_ms(median([r['p50'] for r in runs]))} | "
                f"{fmt_ms(median([r['p99'] for r in runs]))} | "
                f"{int(median([r['errors'] for r in runs]))} | "
                f"{median([r['rss'] for r in runs]):.0f} MiB | "
                f"{median([r['cpu_us'] for r in runs]):.1f} us | "
                f"{' | '.join(ratios[peer] for peer in PEERS)} |")
    if idle:
        lines += ["", f"| {args.idle_connections} idle keep-alive connections | worker RSS | "
                      "RSS before | request on top, p50 | max | still open |",
                  "|---|---:|---:|---:|---:|---:|"]
        for server, row in idle.items():
            lines.append(f"| {server} | {row['rss']:.0f} MiB | {row['base_rss']:.0f} MiB | "
                         f"{fmt_ms(row['p50'])} | {fmt_ms(row['max'])} | {row['alive']:.0f} |")
    return "\n".join(lines) + "\n"


def render_hostile(rows: List[Dict[str, object]], args: argparse.Namespace) -> str:
    if not rows:
        return ""
    count = args.hostile_clients
    lines = ["", f"{count} slowloris connections (a header byte every 2 s), {count} slow uploads "
             f"(a body byte every 2 s, to an app that reads no body) and {count} clients that "
             "never read their 256 KiB response, against one worker, beside a normal client "
             f"(a GET on a new connection {hostile.NORMAL_RATE} times a second); "
             f"--header-timeout {hostile.HEADER_TIMEOUT:g}, --body-timeout "
             f"{hostile.BODY_TIMEOUT:g}.", "",
             "| server | --worker-connections | normal p50 / p99 alone | p50 / p99 beside them "
             "| no answer | worker RSS peak | worker fds peak | slowloris closed after (median, "
             "max) | uploads closed after | non-readers let go after | worker died |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['server']} | {row['worker_connections']} | "
            f"{fmt_ms(row['alone_p50'])} / {fmt_ms(row['alone_p99'])} | "  # type: ignore[arg-type]
            f"{fmt_ms(row['p50'])} / {fmt_ms(row['p99'])} | "  # type: ignore[arg-type]
            f"{row['timeouts']} of {row['requests']} | {row['rss_peak']:.0f} MiB | "
            f"{row['fds_peak']} | "
            f"{row['slowloris_lifetime']:.1f} s, {row['slowloris_lifetime_max']:.1f} s | "
            f"{row['upload_lifetime']:.1f} s, {row['upload_lifetime_max']:.1f} s | "
            f"{row['nonreader_lifetime']:.1f} s, {row['nonreader_lifetime_max']:.1f} s | "
            f"{'no' if row['same_worker'] else 'yes'} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
