"""Benchmark: geventserve beside gunicorn's gevent worker, same apps, same run (``make bench``).

Each server runs one worker pinned to CPU 0 (taskset); the load generator (wrk) is pinned to
CPU 1. Servers are interleaved within each round, over several rounds, and the table reports
medians: requests/s, p50 and p99 latency, errors, the worker's RSS, and the ratio
geventserve / gunicorn. BENCH_QUICK=1 makes every run short. Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")
BENCH = os.path.join(ROOT, "bench")
RESULTS = os.path.join(BENCH, "results")
BIN = os.path.dirname(sys.executable)
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


WORKLOADS = [
    Workload("plain", "plain WSGI hello, 100 connections", "plain_wsgi:app", EXAMPLES, "/", 100),
    Workload("flask", "Flask hello, 100 connections", "hello:app", EXAMPLES, "/", 100),
    Workload("io", "Flask, 100 ms I/O wait, 1000 connections", "apps:flask_io", BENCH,
             "/sleep/100ms", 1000, wrk_timeout="10s"),
    Workload("io5000", "Flask, 1 s I/O wait, 5000 connections (ideal 5000 req/s)",
             "apps:flask_io", BENCH, "/sleep/1s", 5000, wrk_timeout="20s",
             worker_connections=6000),
    Workload("big", "1 MiB response, 50 connections", "apps:big", BENCH, "/", 50),
    Workload("upload", "64 KiB POST echoed, 50 connections", "apps:echo", BENCH, "/", 50,
             script=os.path.join(BENCH, "post64k.lua")),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_command(server: str, workload: Workload, port: int, keepalive: float) -> List[str]:
    # --chdir, and a neutral working directory: no ./geventserve.conf.py or ./gunicorn.conf.py
    # is picked up by either server.
    common = ["-w", "1", "-b", f"127.0.0.1:{port}", "--worker-connections",
              str(workload.worker_connections), "--log-level", "warning",
              "--keep-alive", f"{keepalive:g}", "--chdir", workload.chdir]
    if server == "geventserve":
        return ([sys.executable, "-m", "geventserve", "-k", "gevent"] + common
                + workload.extra_args + [workload.app])
    return ([os.path.join(BIN, "gunicorn"), "-k", "gevent"] + common + gunicorn_options()
            + [workload.app])


def gunicorn_options() -> List[str]:
    """gunicorn 27 opens a control socket at a fixed path; runs must not share it."""
    help_text = subprocess.run([os.path.join(BIN, "gunicorn"), "--help"], capture_output=True,
                               text=True, timeout=30).stdout
    return ["--no-control-socket"] if "--no-control-socket" in help_text else []


class RunningServer:
    """A server started pinned to SERVER_CPU; stopped (by PID) on exit."""

    def __init__(self, server: str, workload: Workload, keepalive: float = 5) -> None:
        self.port = free_port()
        command = ["taskset", "-c", SERVER_CPU] + server_command(server, workload, self.port,
                                                                keepalive)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([workload.chdir, ROOT]))
        self.log = open(os.path.join(RESULTS, f"server-{server}.log"), "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(command, cwd=RESULTS, env=env, stdout=self.log,
                                     stderr=self.log, start_new_session=True)
        self.wait_ready(workload.path)

    def wait_ready(self, path: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited ({self.proc.returncode}); see "
                                   f"{self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                    sock.sendall(f"GET {path.split('?')[0]} HTTP/1.0\r\n\r\n".encode())
                    if sock.recv(12).startswith(b"HTTP/1."):
                        time.sleep(0.3)  # let the worker settle after its first request
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"the server did not answer within {timeout}s")

    def worker_rss_mib(self) -> float:
        total = 0
        for pid in children(self.proc.pid):
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(5)
        self.log.close()

    def __enter__(self) -> RunningServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def children(pid: int) -> List[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    if int(fh.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except OSError:
                pass
    return found


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
    with RunningServer(server, workload) as running:
        run_wrk(workload, running.port, warmup)
        result = run_wrk(workload, running.port, duration)
        result["rss"] = running.worker_rss_mib()
    return result


def idle_connections(server: str, count: int, probes: int = 50) -> Dict[str, float]:
    """RSS of one worker holding ``count`` idle keep-alive connections, and the latency of
    requests made on top of them."""
    workload = Workload("idle", "", "plain_wsgi:app", EXAMPLES, "/", 0,
                        worker_connections=count + 500)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 1000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 1000), hard))
    with RunningServer(server, workload, keepalive=600) as running:
        base_rss = running.worker_rss_mib()
        request = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
        held = []
        try:
            for _ in range(count):
                sock = socket.create_connection(("127.0.0.1", running.port), timeout=30)
                sock.sendall(request)
                held.append(sock)
            for sock in held:  # each has had its response: now an idle keep-alive connection
                read_response(sock)
            time.sleep(1.0)
            rss = running.worker_rss_mib()
            latencies = []
            for _ in range(probes):
                started = time.perf_counter()
                with socket.create_connection(("127.0.0.1", running.port), timeout=30) as sock:
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


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            model = next(line.split(":", 1)[1].strip() for line in fh
                         if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def versions() -> str:
    def version(package: str) -> str:
        try:
            from importlib.metadata import version as v
            return v(package)
        except Exception:
            return "?"
    return (f"Python {platform.python_version()}, geventserve {version('geventserve')}, "
            f"gunicorn {version('gunicorn')}, gevent {version('gevent')}, "
            f"Flask {version('flask')}")


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds == seconds else "-"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per measured run (default 10, or 3 with BENCH_QUICK=1)")
    parser.add_argument("--workloads", default=",".join(w.name for w in WORKLOADS) + ",idle",
                        help="comma-separated subset of: "
                             + ", ".join(w.name for w in WORKLOADS) + ", idle")
    parser.add_argument("--servers", default="geventserve,gunicorn")
    parser.add_argument("--idle-connections", type=int, default=10000)
    args = parser.parse_args(argv)
    quick = os.environ.get("BENCH_QUICK") == "1"
    duration = args.duration or (3.0 if quick else 10.0)
    warmup = 1.0 if quick else 2.0
    wanted = args.workloads.split(",")
    servers = args.servers.split(",")
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
    started = datetime.datetime.now()
    for round_number in range(1, args.rounds + 1):
        for workload in WORKLOADS:
            if workload.name not in wanted:
                continue
            for server in (servers if round_number % 2 else servers[::-1]):
                print(f"round {round_number}: {workload.name} on {server} ...", end=" ",
                      flush=True, file=sys.stderr)
                result = measure(server, workload, duration, warmup)
                print(f"{result['rps']:.0f} req/s", file=sys.stderr)
                results.setdefault(workload.name, {}).setdefault(server, []).append(result)
    idle: Dict[str, Dict[str, float]] = {}
    if "idle" in wanted:
        for server in servers:
            print(f"idle: {args.idle_connections} connections on {server} ...", end=" ",
                  flush=True, file=sys.stderr)
            idle[server] = idle_connections(server, args.idle_connections)
            print(f"{idle[server]['rss']:.0f} MiB", file=sys.stderr)
    report = render(results, idle, args, started, duration)
    print(report)
    with open(os.path.join(RESULTS, "latest.md"), "w") as fh:
        fh.write(report)
    with open(os.path.join(RESULTS, "latest.json"), "w") as fh:
        json.dump({"results": results, "idle": idle}, fh, indent=1)
    return 0


def render(results: Dict[str, Dict[str, List[Dict[str, float]]]],
           idle: Dict[str, Dict[str, float]], args: argparse.Namespace,
           started: datetime.datetime, duration: float) -> str:
    median: Callable[[List[float]], float] = statistics.median
    lines = [f"Benchmark of {started:%Y-%m-%d %H:%M}, {machine()}; {versions()}.",
             f"One worker pinned to CPU {SERVER_CPU}, wrk pinned to CPU {CLIENT_CPU}; "
             f"{args.rounds} interleaved rounds of {duration:g} s; medians.", "",
             "| workload | server | req/s | p50 | p99 | errors | worker RSS | ratio req/s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for workload in WORKLOADS:
        by_server = results.get(workload.name)
        if not by_server:
            continue
        rps = {server: median([r["rps"] for r in runs]) for server, runs in by_server.items()}
        for server, runs in by_server.items():
            ratio = ""
            if server == "geventserve" and rps.get("gunicorn"):
                ratio = f"{rps[server] / rps['gunicorn']:.2f}x"
            lines.append(
                f"| {workload.title} | {server} | {rps[server]:.0f} | "
                f"{fmt_ms(median([r['p50'] for r in runs]))} | "
                f"{fmt_ms(median([r['p99'] for r in runs]))} | "
                f"{int(median([r['errors'] for r in runs]))} | "
                f"{median([r['rss'] for r in runs]):.0f} MiB | {ratio} |")
    if idle:
        lines += ["", f"| {args.idle_connections} idle keep-alive connections | worker RSS | "
                      "RSS before | request on top, p50 | max | still open |",
                  "|---|---:|---:|---:|---:|---:|"]
        for server, row in idle.items():
            lines.append(f"| {server} | {row['rss']:.0f} MiB | {row['base_rss']:.0f} MiB | "
                         f"{fmt_ms(row['p50'])} | {fmt_ms(row['max'])} | {row['alive']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
