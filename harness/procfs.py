"""Figures about processes from /proc: children, memory, CPU time, listening ports."""

from __future__ import annotations

import os
import re
import socket
from typing import Iterable, Iterator, List, Optional, Set, Tuple


def _stat(pid: str) -> Optional[List[str]]:
    """The fields of /proc/PID/stat after the command name (state first), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _all_stats() -> Iterator[Tuple[int, List[str]]]:
    """(pid, stat fields) of every process."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(entry)
            if fields is not None:
                yield int(entry), fields


def children(pid: int) -> List[int]:
    """PIDs of the live (not zombie) direct children of ``pid``."""
    return sorted(child for child, fields in _all_stats()
                  if int(fields[1]) == pid and fields[0] != "Z")


def rss_mib(pids: Iterable[int]) -> float:
    """Resident memory of the processes ``pids`` together, in MiB (0 for one that is gone)."""
    total_kib = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = _stat(str(pid))
    if fields is None:
        raise ProcessLookupError(f"no process {pid}")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_cpu_times() -> List[int]:
    """The machine's CPU time so far, in ticks (the "cpu" line of /proc/stat): user, nice,
    system, idle, iowait, irq, softirq, steal."""
    with open("/proc/stat") as fh:
        return [int(v) for v in fh.readline().split()[1:9]]


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system) used so far by the live processes of group ``pgid``,
    with what their reaped children used."""
    ticks = sum(sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
                for _, fields in _all_stats() if int(fields[2]) == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


def listening_ports(pid: int) -> Set[int]:
    """TCP ports on which process ``pid`` itself holds a listening socket.

    Being able to connect is not enough: the port may have been taken by another process.
    """
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            match = re.fullmatch(r"socket:\[(\d+)\]", os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
        if match:
            inodes.add(match.group(1))
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def established(pid: int, address: str, port: int) -> int:
    """TCP connections ESTABLISHED to the IPv4 ``address``:``port``, as seen from the network
    namespace of process ``pid`` (its /proc/PID/net/tcp)."""
    local = f"{socket.inet_aton(address)[::-1].hex().upper()}:{port:04X}"
    with open(f"/proc/{pid}/net/tcp") as fh:
        return sum(1 for line in fh.readlines()[1:]
                   if line.split()[1] == local and line.split()[3] == "01")  # 01: ESTABLISHED
