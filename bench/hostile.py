"""Hostile clients at scale against one worker (``make bench``'s hostile rows): a paced normal
client's latency alone, then beside 1 000 slowloris connections (a header byte every 2 s),
1 000 slow uploads (a body byte every 2 s) and 1 000 clients that never read their response.

Reported: the normal client's p50/p99 and timeouts both ways; the worker's peak RSS and open
descriptors; whether the worker is the same process at the end (none died); and when the
hostile connections ended, against the deadline each should meet: --header-timeout for a head
that never completes, the answer at once for an upload the application does not read (the
rest of a body is never waited for), --keep-alive for a client that reads nothing (its
response sits in the kernel's buffers: its connection is idle as far as the server can tell;
a send that stalls would end at --body-timeout).
Not a test: nothing here asserts. The hostile clients run in one asyncio loop, the normal
client in a process of its own (so that the crowd's loop does not delay its timings).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from typing import Dict, Iterable, List, Optional, Set, Tuple

#: how often each hostile client sends a byte (seconds)
TRICKLE = 2.0
HEADER_TIMEOUT, BODY_TIMEOUT = 10.0, 30.0
NORMAL_RATE = 20  # requests a second from the paced normal client, each on a new connection
NORMAL_TIMEOUT = 5.0
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


class Lifetimes:
    """When each hostile connection was closed by the server, from its start (s)."""

    def __init__(self) -> None:
        self.ended: Dict[str, List[float]] = {"slowloris": [], "upload": [], "nonreader": []}
        self.failed_connects = 0
        #: the clients that never read: (their port, when they connected); the server's side
        #: says when it let them go (``worker_peer_ports``)
        self.nonreaders: List[Tuple[int, float]] = []


async def _read_until_closed(reader: asyncio.StreamReader) -> None:
    try:
        while await reader.read(65536):
            pass
    except OSError:  # a reset is a close too
        pass


async def _trickle(kind: str, port: int, head: bytes, drip: bytes, stop: float,
                   lifetimes: Lifetimes) -> None:
    """Connect, send ``head``, then ``drip`` a byte every TRICKLE seconds until the server
    closes (its lifetime is noted) or ``stop``; connect again TRICKLE seconds after a close."""
    await asyncio.sleep(random.uniform(0, TRICKLE))  # the crowd comes in, not in one wave
    while time.monotonic() < stop:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            lifetimes.failed_connects += 1
            await asyncio.sleep(TRICKLE)
            continue
        started = time.monotonic()
        closed = asyncio.ensure_future(_read_until_closed(reader))
        try:
            writer.write(head)
            at = 0
            while time.monotonic() < stop and not closed.done():
                writer.write(drip[at % len(drip):at % len(drip) + 1])
                at += 1
                await asyncio.wait([closed], timeout=TRICKLE)
        except OSError:
            pass
        if closed.done():
            lifetimes.ended[kind].append(time.monotonic() - started)
        closed.cancel()
        writer.transport.abort()
        await asyncio.sleep(TRICKLE)  # at its pace: a client that comes back, not a flood


async def _nonreader(port: int, stop: float, lifetimes: Lifetimes) -> None:
    """Ask for a 256 KiB response, read none of it, hold on until ``stop``. (The kernel's
    buffers take in some MiB per connection before a send stalls, so the response fits and
    the connection then waits as an idle one; a thousand clients holding more would press
    the whole machine's TCP memory.)"""
    await asyncio.sleep(random.uniform(0, TRICKLE))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    try:
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    except OSError:
        sock.close()
        return
    lifetimes.nonreaders.append((sock.getsockname()[1], time.monotonic()))
    writer.transport.pause_reading()
    writer.write(b"GET /big HTTP/1.1\r\nHost: bench\r\n\r\n")
    while time.monotonic() < stop:
        await asyncio.sleep(1.0)
    writer.transport.abort()


async def _normal(port: int, stop: float, latencies: List[float]) -> int:
    """A paced client: a GET on a new connection NORMAL_RATE times a second; how many got no
    answer (timed out, or the connection was closed or reset)."""
    timeouts = 0
    interval = 1.0 / NORMAL_RATE
    next_at = time.monotonic()
    while next_at < stop:
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        started = time.monotonic()
        try:
            await asyncio.wait_for(_one_request(port), NORMAL_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, OSError):
            timeouts += 1
            continue
        latencies.append(time.monotonic() - started)
    return timeouts


async def _one_request(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(REQUEST)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        await reader.readexactly(length)
    finally:
        writer.transport.abort()


def percentile(values: List[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def _measure(port: int, duration: float, hostile: int, lifetimes: Lifetimes,
                   samples: List[float]) -> Dict[str, float]:
    stop = time.monotonic() + duration
    tasks = []
    for _ in range(hostile):
        tasks.append(asyncio.ensure_future(_trickle(
            "slowloris", port, b"GET / HTTP/1.1\r\n", b"X-Slow: ly\r\n", stop, lifetimes)))
        tasks.append(asyncio.ensure_future(_trickle(
            "upload", port, b"POST / HTTP/1.1\r\nHost: bench\r\nContent-Length: 1000000\r\n\r\n",
            b"x", stop, lifetimes)))
        tasks.append(asyncio.ensure_future(_nonreader(port, stop, lifetimes)))
    if hostile:
        await asyncio.sleep(3.0)  # the hostile crowd is in place before the normal client
    normal = await asyncio.create_subprocess_exec(
        sys.executable, os.path.abspath(__file__), str(port), str(stop - time.monotonic()),
        stdout=subprocess.PIPE)
    out, _ = await normal.communicate()
    await asyncio.gather(*tasks, return_exceptions=True)
    result = json.loads(out)
    result["samples"] = len(samples)
    return result


def normal_client(port: int, duration: float) -> Dict[str, float]:
    """The paced normal client alone in its loop, for ``duration`` seconds."""
    latencies: List[float] = []
    timeouts = asyncio.run(_normal(port, time.monotonic() + duration, latencies))
    return {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99),
            "timeouts": timeouts, "requests": len(latencies) + timeouts}


def run(port: int, duration: float, hostile: int, sample: Optional[callable] = None,  # type: ignore[valid-type]
        workers: Iterable[int] = ()) -> Dict[str, object]:
    """Measure against the server on ``port``: the normal client for ``duration`` seconds
    beside ``hostile`` clients of each kind (0: alone). ``sample()`` is called about once a
    second meanwhile (the worker's RSS and descriptors); the ``workers``' sockets are looked at
    then too, to tell when each client that never reads was let go."""
    lifetimes = Lifetimes()
    samples: List[float] = []
    held: List[Tuple[float, Set[int]]] = []
    workers = list(workers)

    def look() -> None:
        if sample is not None:
            sample()
        if workers:
            held.append((time.monotonic(), worker_peer_ports(workers)))

    async def main() -> Dict[str, float]:
        sampler = asyncio.ensure_future(_sampler(look, samples))
        try:
            return await _measure(port, duration, hostile, lifetimes, samples)
        finally:
            sampler.cancel()

    result: Dict[str, object] = dict(asyncio.run(main()))
    for kind, ended in lifetimes.ended.items():
        result[f"{kind}_ended"] = len(ended)
        result[f"{kind}_lifetime"] = statistics.median(ended) if ended else float("nan")
        result[f"{kind}_lifetime_max"] = max(ended) if ended else float("nan")
    result["failed_connects"] = lifetimes.failed_connects
    released = []
    for port, started in lifetimes.nonreaders:
        gone = next((at for at, ports in held if at > started and port not in ports), None)
        if gone is not None:
            released.append(gone - started)
    result["nonreader_ended"] = len(released)
    result["nonreader_lifetime"] = statistics.median(released) if released else float("nan")
    result["nonreader_lifetime_max"] = max(released) if released else float("nan")
    return result


async def _sampler(sample, samples: List[float]) -> None:
    if sample is None:
        return
    while True:
        sample()
        samples.append(time.monotonic())
        await asyncio.sleep(1.0)


def worker_peer_ports(pids: Iterable[int]) -> Set[int]:
    """The peer ports of the TCP sockets the processes ``pids`` hold (from /proc)."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    link = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as fh:
                next(fh)
                for line in fh:
                    fields = line.split()
                    if fields[9] in inodes:
                        ports.add(int(fields[2].rsplit(":", 1)[1], 16))
        except OSError:
            continue
    return ports


def open_fds(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


if __name__ == "__main__":  # the normal client's process: PORT DURATION, the result as JSON
    print(json.dumps(normal_client(int(sys.argv[1]), float(sys.argv[2]))))
