"""``geventserve status ADDRESS``: the supervisor's /status (--metrics-bind) as a table that a
person reads at a glance; any failure is one line and exit status 1."""

from __future__ import annotations

import argparse
import json
import socket
import sys
from typing import Any, Dict, List, Optional, Sequence

from .. import sockets


class StatusError(Exception):
    """The status could not be read; the message is one line."""


def fetch(address: str, timeout: float = 5.0) -> Dict[str, Any]:
    """GET /status from a --metrics-bind address (HOST:PORT or unix:PATH)."""
    try:
        parsed = sockets.parse_address(address)
    except ValueError as exc:
        raise StatusError(str(exc)) from None
    if parsed.kind not in ("tcp", "unix"):
        raise StatusError(f"{address!r}: expected HOST:PORT or unix:PATH")
    try:
        if parsed.kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parsed.path)
        else:
            sock = socket.create_connection((parsed.host, parsed.port), timeout=timeout)
        with sock:
            sock.sendall(b"GET /status HTTP/1.1\r\nHost: geventserve\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
    except socket.timeout:
        raise StatusError(f"no answer from {address} within {timeout:g}s") from None
    except OSError as exc:
        raise StatusError(f"cannot reach {address}: {exc.strerror or exc}") from None
    head, _, body = data.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if not status_line.startswith("HTTP/1.") or status_line[9:12] != "200":
        raise StatusError(f"{address} answered {status_line or 'nothing'!r}: is it a "
                          "geventserve --metrics-bind address?")
    try:
        status = json.loads(body)
    except ValueError:
        status = None
    if not isinstance(status, dict) or not isinstance(status.get("workers"), list):
        raise StatusError(f"{address} did not answer with geventserve's status")
    return status


def duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600:02d}h"


def _table(rows: List[List[str]], right: Sequence[int]) -> List[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
                      for i, cell in enumerate(row)).rstrip() for row in rows]


def render(status: Dict[str, Any]) -> str:
    workers = status["workers"]
    restarts = ", ".join(f"{reason} {count}" for reason, count in status["restarts"].items())
    lines = [f"geventserve {status['version']}, supervisor pid {status['pid']}: "
             f"{len(workers)} worker(s) running, {status['workers_wanted']} wanted; "
             f"restarts: {restarts or 'none'}", ""]
    rows = [["SLOT", "PID", "STATE", "AGE", "REQUESTS", "ACTIVE", "IDLE", "WS", "RSS",
             "LOOP LAG", "IN FLIGHT"]]
    for worker in workers:
        conns = worker["connections"]
        rss = worker["rss"]
        rows.append([str(worker["slot"]), str(worker["pid"]), worker["state"],
                     duration(worker["age"]), f"{worker['requests']:,}".replace(",", " "),
                     str(conns["active"]), str(conns["idle"]), str(conns["taken_over"]),
                     f"{rss / 2**20:.0f} MiB" if rss else "-",
                     f"{worker['loop_lag'] * 1000:.0f} ms", str(worker["requests_in_flight"])])
    lines += _table(rows, right=(0, 1, 4, 5, 6, 7, 8, 9, 10))
    flights = [(worker["slot"], flight) for worker in workers for flight in worker["in_flight"]]
    if flights:
        flights.sort(key=lambda item: -item[1]["seconds"])
        lines += ["", "Requests in flight, longest first:"]
        rows = [["SLOT", "METHOD", "PATH", "FOR"]]
        rows += [[str(slot), flight["method"], flight["path"], f"{flight['seconds']:.1f}s"]
                 for slot, flight in flights]
        lines += _table(rows, right=(0, 3))
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="geventserve status",
        description="Show the workers of a geventserve started with --metrics-bind ADDRESS.")
    parser.add_argument("address", metavar="ADDRESS",
                        help="the --metrics-bind address: HOST:PORT or unix:PATH")
    parser.add_argument("--json", action="store_true", help="print /status as it is (JSON)")
    parser.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                        help="how long to wait for the answer (default 5)")
    args = parser.parse_args(argv)
    try:
        status = fetch(args.address, args.timeout)
    except StatusError as exc:
        print(f"geventserve status: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(status, indent=1) if args.json else render(status))
    return 0
