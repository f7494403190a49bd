"""Open WebSockets in one worker: memory per open WebSocket, and echo round trips (issue 10).

For each server (geventserve -k gevent and gunicorn -k gevent, one worker each, serving the
Flask-Sock echo app tests/apps/ws_echo.py on a free loopback port), a client process (gevent, raw
sockets, its own handshakes and frames, so that one process holds 10 000 connections):

1. opens and closes a few WebSockets (the app's first requests import and build what they need),
   then the worker's RSS is read;
2. opens --connections WebSockets (10 000), each answering one message; the worker's RSS again:
   the difference over the count is the memory per open WebSocket;
3. with all of them still open, --active of them (1 000) each send a message every --interval
   seconds (0.1) for --warmup + --duration seconds, open loop (a late echo never delays the next
   message); the round trips of the messages sent after the warm-up give p50 and p99.

Both sides run on this machine: the CPU each used during step 3 is reported beside the figures,
so a run where the client (or the machine) was the limit can be told. The open-files limit is
raised for the client and the servers (they inherit it). Results: a table on stdout and
bench/results/websockets.json.

    .venv/bin/python bench/websockets.py                        # both servers, 10 000 / 1 000
    .venv/bin/python bench/websockets.py --servers gunicorn -n 2000 --active 200 --duration 5
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import resource
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the harness

from harness import ROOT
from harness.machine import machine_line, package_version
from harness.ports import free_port
from harness.process import Process, server_env
from harness.procfs import cpu_seconds, machine_cpu_times, rss_mib
from harness.servers import geventserve_command, gunicorn_command

APPS = os.path.join(ROOT, "tests", "apps")
RESULTS = os.path.join(ROOT, "bench", "results")
APP = "ws_echo:app"
HANDSHAKES_AT_ONCE = 200  # below the listen backlogs (2048)
PACKAGES = ("geventserve", "gunicorn", "gevent", "flask", "flask-sock", "simple-websocket")


# -- the client process (gevent) -----------------------------------------------------------------


class WebSocketClient:
    """One client WebSocket over a gevent socket: text frames out (masked), messages in."""

    __slots__ = ("sock", "buffer")

    def __init__(self, sock: Any, buffer: bytes) -> None:
        self.sock = sock
        self.buffer = buffer

    @classmethod
    def open(cls, port: int, path: str = "/echo", timeout: float = 60.0) -> WebSocketClient:
        from gevent import socket as gsocket

        sock = gsocket.create_connection(("127.0.0.1", port), timeout=timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as websocket-client
            key = base64.b64encode(os.urandom(16)).decode()
            sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                          f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                          ).encode())
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(4096)
                if not chunk:
                    raise EOFError("closed during the handshake")
                data += chunk
            head, _, rest = data.partition(b"\r\n\r\n")
            status = head.split(b"\r\n", 1)[0].decode("latin-1")
            if status.split(" ")[1:2] != ["101"]:
                raise ConnectionError(f"handshake answered {status!r}")
            sock.settimeout(None)
            return cls(sock, rest)
        except BaseException:
            sock.close()
            raise

    def send_text(self, payload: bytes) -> None:
        n = len(payload)
        if n < 126:
            header = bytes((0x81, 0x80 | n))
        else:
            header = bytes((0x81, 0x80 | 126)) + n.to_bytes(2, "big")
        mask = os.urandom(4)
        keys = (mask * (n // 4 + 1))[:n]
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(keys, "big")).to_bytes(n, "big")
        self.sock.sendall(header + mask + masked)

    def receive(self) -> bytes:
        """The next text or binary message; EOFError at a close frame or the end of the stream."""
        while True:
            buffer = self.buffer
            if len(buffer) >= 2:
                length = buffer[1] & 0x7F
                start = 2
                if length == 126:
                    start = 4
                    length = int.from_bytes(buffer[2:4], "big") if len(buffer) >= 4 else -1
                elif length == 127:
                    start = 10
                    length = int.from_bytes(buffer[2:10], "big") if len(buffer) >= 10 else -1
                if length >= 0 and len(buffer) >= start + length:
                    opcode = buffer[0] & 0x0F
                    payload = buffer[start:start + length]
                    self.buffer = buffer[start + length:]
                    if opcode == 8:
                        raise EOFError("close frame")
                    if opcode in (1, 2):
                        return payload
                    continue  # ping or pong: the echo app sends none
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buffer += data

    def close(self) -> None:
        self.sock.close()


def percentile(values: List[float], fraction: float) -> Optional[float]:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def run_client(port: int, count: int, active: int, interval: float, duration: float,
               warmup: float) -> None:
    """The client process: phases on the orchestrator's word (stdin), results on stdout."""
    import gevent
    from gevent.pool import Pool

    def say(**fields: Any) -> None:
        print(json.dumps(fields), flush=True)

    def wait_word() -> str:
        return sys.stdin.readline().strip()

    errors: Counter = Counter()

    def open_and_echo(i: int) -> Optional[WebSocketClient]:
        try:
            ws = WebSocketClient.open(port)
        except Exception as exc:
            errors[f"{type(exc).__name__}: {exc}"[:200]] += 1
            return None
        try:
            with gevent.Timeout(60):
                ws.send_text(b"hello %d" % i)
                if ws.receive() != b"hello %d" % i:
                    raise ValueError("wrong echo")
        except BaseException as exc:
            errors[f"echo: {type(exc).__name__}: {exc}"[:200]] += 1
            ws.close()
            return None
        return ws

    # 1. warm-up connections, opened and closed
    warm = [ws for ws in Pool(10).map(open_and_echo, range(20)) if ws]
    for ws in warm:
        ws.close()
    say(event="warm", opened=len(warm), errors=dict(errors))
    if wait_word() != "open":
        return
    # 2. the connections held open
    errors.clear()
    started = time.monotonic()
    sockets = [ws for ws in Pool(HANDSHAKES_AT_ONCE).map(open_and_echo, range(count)) if ws]
    say(event="opened", opened=len(sockets), seconds=round(time.monotonic() - started, 1),
        errors=dict(errors.most_common(5)))
    if wait_word() != "load" or not sockets:
        return
    # 3. round trips on some of them, the others idle
    chosen = sockets[:active]
    rtts: List[float] = []
    by_second: Dict[int, List[float]] = {}
    counts = {"sent": 0, "received": 0, "measured_sent": 0, "errors": 0}
    begin = time.monotonic()
    measure_from = begin + warmup
    stop_at = measure_from + duration

    def sender(ws: WebSocketClient, offset: float) -> None:
        gevent.sleep(offset)
        due = time.monotonic()
        while due < stop_at:
            now = time.monotonic()
            try:
                ws.send_text(repr(now).encode())
            except OSError:
                counts["errors"] += 1
                return
            counts["sent"] += 1
            if now >= measure_from:
                counts["measured_sent"] += 1
            due += interval
            gevent.sleep(max(0.0, due - time.monotonic()))

    def reader(ws: WebSocketClient) -> None:
        while True:
            try:
                payload = ws.receive()
            except (EOFError, OSError):
                counts["errors"] += 1
                return
            now = time.monotonic()
            sent_at = float(payload)
            counts["received"] += 1
            if sent_at >= measure_from:
                rtts.append(now - sent_at)
                by_second.setdefault(int(sent_at - measure_from), []).append(now - sent_at)

    cpu_before = resource.getrusage(resource.RUSAGE_SELF)
    readers = [gevent.spawn(reader, ws) for ws in chosen]
    senders = [gevent.spawn(sender, ws, interval * i / len(chosen))
               for i, ws in enumerate(chosen)]
    gevent.joinall(senders)
    gevent.sleep(2.0)  # the last echoes
    gevent.killall(readers)
    cpu_after = resource.getrusage(resource.RUSAGE_SELF)
    wall = time.monotonic() - begin
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    ms = [r * 1000 for r in rtts]
    say(event="load", active=len(chosen), sent=counts["sent"], received=counts["received"],
        measured_sent=counts["measured_sent"], measured=len(ms),
        lost=counts["measured_sent"] - len(ms), errors=counts["errors"],
        rate=round(counts["measured_sent"] / duration), p50=percentile(ms, 0.50),
        p90=percentile(ms, 0.90), p99=percentile(ms, 0.99), max=max(ms) if ms else None,
        client_cpu=round(cpu / wall, 2),
        timeline=[(second, round(percentile(values, 0.5) * 1000, 2),
                   round(percentile(values, 0.99) * 1000, 2))
                  for second, values in sorted(by_second.items())])
    wait_word()
    for ws in sockets:
        ws.close()


# -- the orchestrator ----------------------------------------------------------------------------


def server_command(name: str, port: int, connections: int, extra: Sequence[str] = ()) -> List[str]:
    options = ["-k", "gevent", "-w", "1", "--worker-connections", str(connections + 100),
               "--graceful-timeout", "3", "-b", f"127.0.0.1:{port}", "--chdir", APPS]
    if name == "geventserve":
        return geventserve_command([*options, *extra], APP)
    if name == "gunicorn":
        return gunicorn_command(options, APP)
    raise SystemExit(f"unknown server {name!r}: geventserve or gunicorn")


def measure(name: str, args: argparse.Namespace) -> Dict[str, Any]:
    """One server's figures (or an "error"), its worker pinned to ``args.server_cpu`` and the
    client to ``args.client_cpu`` when given."""
    port = free_port()
    pin = ["taskset", "-c", args.server_cpu] if args.server_cpu else []
    extra = shlex.split(args.geventserve_args or "")
    cmd = pin + server_command(name, port, args.connections, extra)
    os.makedirs(RESULTS, exist_ok=True)
    log_path = os.path.join(RESULTS, f"websockets_{name}.log")
    result: Dict[str, Any] = {"server": name, "command": " ".join(cmd)}
    client = None
    server = Process(cmd, name=name, cwd=RESULTS, env=server_env(), log=log_path,
                     stop_timeout=15)
    try:
        server.start()
        server.wait_answer(f"http://127.0.0.1:{port}/", timeout=60)
        workers = server.worker_pids()
        if len(workers) != 1:
            raise RuntimeError(f"{name}: expected one worker, found {workers}")
        worker = workers[0]
        pin = ["taskset", "-c", args.client_cpu] if args.client_cpu else []
        client = subprocess.Popen(
            [*pin, sys.executable, os.path.abspath(__file__), "client", "--port", str(port),
             "--connections", str(args.connections), "--active", str(args.active),
             "--interval", str(args.interval), "--duration", str(args.duration),
             "--warmup", str(args.warmup)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True)

        def hear(expected: str) -> Dict[str, Any]:
            line = client.stdout.readline()
            if not line:
                raise RuntimeError(f"the client ended before {expected!r}")
            message = json.loads(line)
            assert message["event"] == expected, message
            return message

        def tell(word: str) -> None:
            client.stdin.write(word + "\n")
            client.stdin.flush()

        warm = hear("warm")
        if not warm["opened"]:
            result["error"] = f"no WebSocket opened: {warm['errors']}"
            return result
        time.sleep(1.0)
        before = rss_kib(worker)
        tell("open")
        opened = hear("opened")
        time.sleep(2.0)
        after = rss_kib(worker)
        result.update(opened=opened["opened"], open_seconds=opened["seconds"],
                      open_errors=opened["errors"], rss_before_kib=before,
                      rss_open_kib=after, worker_fds=open_fds(worker))
        if opened["opened"]:
            result["kib_per_websocket"] = round((after - before) / opened["opened"], 1)
        cpu_start, wall_start = cpu_seconds(worker), time.monotonic()
        machine_start = machine_cpu_times()
        tell("load")
        load = hear("load")
        result.update(load)
        del result["event"]
        result["server_cpu"] = round((cpu_seconds(worker) - cpu_start)
                                     / (time.monotonic() - wall_start), 2)
        spent = [b - a for a, b in zip(machine_start, machine_cpu_times())]
        total = sum(spent) or 1
        # busy: all but idle and iowait, over every core; steal: taken by the hypervisor
        result["machine_busy"] = round(1 - (spent[3] + spent[4]) / total, 2)
        result["machine_steal"] = round(spent[7] / total, 2)
        tell("quit")
        client.wait(60)
        return result
    except Exception as exc:
        result["error"] = str(exc)
        return result
    finally:
        if client is not None:
            try:
                os.killpg(client.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            client.wait(15)
        server.stop()


def rss_kib(pid: int) -> int:
    return round(rss_mib([pid]) * 1024)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def show(results: List[Dict[str, Any]], args: argparse.Namespace) -> str:
    def cell(value: Any, digits: int = 1) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return str(value)

    lines = [f"{args.connections} WebSockets opened, then {args.active} of them sending a message "
             f"every {args.interval:g}s for {args.duration:g}s (after {args.warmup:g}s of "
             f"warm-up); round trips in ms; server and client CPU as a share of one core, "
             f"machine busy as a share of all {os.cpu_count()} (near 1: the figures are "
             f"CPU-bound)",
             "",
             "| server | open | RSS before (MiB) | RSS open (MiB) | KiB per WebSocket | msg/s | "
             "p50 | p90 | p99 | max | lost | server CPU | client CPU | machine busy |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r and "opened" not in r:
            lines.append(f"| {r['server']} | failed: {r['error']} |" + " |" * 12)
            continue
        lines.append(
            f"| {r['server']} | {r.get('opened')} | {cell(r['rss_before_kib'] / 1024)} | "
            f"{cell(r['rss_open_kib'] / 1024)} | {cell(r.get('kib_per_websocket'))} | "
            f"{cell(r.get('rate'))} | {cell(r.get('p50'))} | {cell(r.get('p90'))} | "
            f"{cell(r.get('p99'))} | {cell(r.get('max'))} | {cell(r.get('lost'))} | "
            f"{cell(r.get('server_cpu'), 2)} | {cell(r.get('client_cpu'), 2)} | "
            f"{cell(r.get('machine_busy'), 2)} |")
    for r in results:
        if r.get("open_errors"):
            lines.append(f"{r['server']}: failed opens: {r['open_errors']}")
        if r.get("error") and "opened" in r:
            lines.append(f"{r['server']}: {r['error']}")
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "client"],
                        help=argparse.SUPPRESS)
    parser.add_argument("--servers", default="geventserve,gunicorn",
                        help="comma-separated: geventserve, gunicorn (default: both)")
    parser.add_argument("-n", "--connections", type=int, default=10_000)
    parser.add_argument("--active", type=int, default=1000)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure the servers this many times, in turn (A B A B...): on a "
                             "shared machine, one round can meet a busier moment than another")
    parser.add_argument("--server-cpu", help="pin the server to this CPU (taskset -c)")
    parser.add_argument("--client-cpu", help="pin the client to this CPU")
    parser.add_argument("--geventserve-args", help="more options for geventserve, as one "
                                                   "string (-c experiment.conf.py)")
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    needed = args.connections + 1024
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            raise SystemExit(f"the open-files hard limit ({hard}) is below {needed}: "
                             f"ulimit -Hn {needed} as root, or fewer --connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    if args.mode == "client":
        run_client(args.port, args.connections, args.active, args.interval, args.duration,
                   args.warmup)
        return 0
    results = []
    for round_number in range(1, args.rounds + 1):
        for name in args.servers.split(","):
            print(f"{name}: measuring (round {round_number} of {args.rounds})...",
                  file=sys.stderr, flush=True)
            results.append(measure(name.strip(), args))
    table = show(results, args)
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "websockets.json"), "w") as fh:
        json.dump({"when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": machine_line(),
                   "platform": platform.platform(),
                   "versions": {name: package_version(name) for name in PACKAGES},
                   "settings": vars(args), "results": results}, fh, indent=2)
    return 1 if any("error" in r for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
