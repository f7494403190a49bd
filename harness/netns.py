"""Hosts for a fleet on one machine: each a network namespace with its own address on a private
bridge, made by the run and removed at its end whatever happens; where the kernel refuses
namespaces, separate loopback addresses instead.

Everything is named with PREFIX, so that what a killed run left behind is found and removed by
the next one (``remove_leftovers``); a lock file keeps two runs from sharing the names.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import subprocess
from dataclasses import dataclass, field
from typing import List, Optional, Sequence

from harness.process import run_command

PREFIX = "gsfleet"  # namespaces gsfleet-h1..., the bridge gsfleet0, veths gsfleet-h1...
BRIDGE = f"{PREFIX}0"
SUBNET = "10.213.0"  # a /24 nothing else here uses; the bridge is .1, host N is .10+N
LOCK_PATH = f"/run/{PREFIX}.lock"
IP_TIMEOUT = 10.0


class NetnsUnavailable(Exception):
    """Network namespaces cannot be made here (not root, no ``ip``, or the kernel refuses)."""


class NetnsBusy(Exception):
    """Another run holds the lock: its namespaces are in use."""


@dataclass
class HostAddress:
    """Where one host of the fleet lives: its address, and the namespace it runs in (None: the
    root namespace, on a loopback address)."""

    name: str
    address: str
    netns: Optional[str] = None

    def command(self, cmd: Sequence[str]) -> List[str]:
        """``cmd`` run on this host: inside its namespace (``ip netns exec`` execs it, so the
        PID is the command's own), or as it is."""
        return (["ip", "netns", "exec", self.netns, *cmd] if self.netns else list(cmd))


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``; NetnsUnavailable with its message if it fails and ``check``."""
    try:
        done = run_command(["ip", *args], timeout=IP_TIMEOUT)
    except FileNotFoundError:
        raise NetnsUnavailable("the ip command is missing (Debian package iproute2)")
    except subprocess.TimeoutExpired:
        raise NetnsUnavailable(f"ip {' '.join(args)}: no answer within {IP_TIMEOUT:g} s")
    if check and done.returncode != 0:
        raise NetnsUnavailable(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def namespaces() -> List[str]:
    """The names of the network namespaces that ``ip netns`` knows."""
    done = ip("netns", "list", check=False)
    return [line.split()[0] for line in done.stdout.splitlines() if line.strip()]


def links() -> List[str]:
    """The names of the root namespace's network interfaces."""
    done = ip("-o", "link", "show", check=False)
    return [m.group(1) for m in re.finditer(r"^\d+: ([^:@\s]+)", done.stdout, re.M)]


def leftovers(prefix: str = PREFIX) -> List[str]:
    """The namespaces and interfaces named with ``prefix``: a run's, or what a killed run left."""
    return ([f"netns {name}" for name in namespaces() if name.startswith(f"{prefix}-")]
            + [f"link {name}" for name in links() if name.startswith(prefix)])


def kill_inside(netns: str) -> List[int]:
    """SIGKILL to every process in namespace ``netns`` (a namespace outlives its deletion while
    one runs there); the PIDs killed."""
    done = ip("netns", "pids", netns, check=False)
    pids = [int(pid) for pid in done.stdout.split() if pid.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


def remove_leftovers(prefix: str = PREFIX) -> List[str]:
    """Remove the namespaces (their processes killed first) and interfaces named with
    ``prefix``; what was removed, as ``leftovers`` names it."""
    found = leftovers(prefix)
    for item in found:
        kind, name = item.split(" ", 1)
        if kind == "netns":
            kill_inside(name)
            ip("netns", "del", name, check=False)  # its veth end goes with it, and the peer
    for name in links():
        if name.startswith(prefix):
            ip("link", "del", name, check=False)
    still = leftovers(prefix)
    if still:
        raise NetnsUnavailable(f"could not remove {', '.join(still)}")
    return found


@dataclass
class Network:
    """``count`` hosts, each a namespace PREFIX-hN with address SUBNET.(10+N)/24 on a veth whose
    other end is in the bridge BRIDGE (SUBNET.1 in the root namespace, which reaches them all).

    ``create()`` takes the lock, removes what a killed run left (``removed`` says what), and
    builds it all; ``remove()`` kills what still runs inside and deletes it all. Use it as a
    context manager: removed also on an error or KeyboardInterrupt.
    """

    count: int
    prefix: str = PREFIX
    subnet: str = SUBNET
    hosts: List[HostAddress] = field(default_factory=list)
    removed: List[str] = field(default_factory=list)
    _lock: Optional[int] = None  # the lock file's descriptor while held

    @property
    def bridge(self) -> str:
        return f"{self.prefix}0"

    def create(self) -> Network:
        self._take_lock()
        try:
            self.removed = remove_leftovers(self.prefix)
            self._refuse_if_subnet_taken()
            ip("link", "add", self.bridge, "type", "bridge")
            ip("addr", "add", f"{self.subnet}.1/24", "dev", self.bridge)
            ip("link", "set", self.bridge, "up")
            for number in range(1, self.count + 1):
                self.hosts.append(self._add_host(number))
        except BaseException:
            self.remove()
            raise
        return self

    def _add_host(self, number: int) -> HostAddress:
        name = f"{self.prefix}-h{number}"
        address = f"{self.subnet}.{10 + number}"
        ip("netns", "add", name)
        ip("link", "add", name, "type", "veth", "peer", "name", "eth0", "netns", name)
        ip("link", "set", name, "master", self.bridge, "up")
        ip("-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
        ip("-n", name, "link", "set", "eth0", "up")
        ip("-n", name, "link", "set", "lo", "up")
        return HostAddress(f"h{number}", address, name)

    def _take_lock(self) -> None:
        path = LOCK_PATH if self.prefix == PREFIX else f"/run/{self.prefix}.lock"
        lock = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)
            raise NetnsBusy(f"another run holds {path}: its {self.prefix}-* namespaces are in "
                            "use")
        self._lock = lock

    def _refuse_if_subnet_taken(self) -> None:
        routes = ip("-4", "route", "show", check=False).stdout
        taken = [line for line in routes.splitlines()
                 if line.startswith(f"{self.subnet}.") and self.bridge not in line]
        if taken:
            raise NetnsUnavailable(f"{self.subnet}.0/24 is already routed here: {taken[0]}")

    def remove(self) -> None:
        """Kill what runs in the namespaces, delete them and the bridge; safe to call again."""
        try:
            remove_leftovers(self.prefix)
        finally:
            self.hosts = []
            if self._lock is not None:
                os.close(self._lock)
                self._lock = None

    def __enter__(self) -> Network:
        return self.create()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def loopback_hosts(count: int) -> List[HostAddress]:
    """``count`` hosts on 127.0.0.2, 127.0.0.3...: all in the root namespace, each its own
    address (Linux answers on all of 127.0.0.0/8)."""
    return [HostAddress(f"h{number}", f"127.0.0.{1 + number}") for number in range(1, count + 1)]


def netns_refused() -> Optional[str]:
    """Why network namespaces cannot be made here, in one line; None if they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"{PREFIX}-probe{os.getpid()}"
    try:
        ip("netns", "add", probe)
    except NetnsUnavailable as exc:
        return str(exc)
    ip("netns", "del", probe, check=False)
    return None
