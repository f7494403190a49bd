"""Mode ``fleet``: three hosts behind HAProxy, then behind nginx, under load the whole time:
(a) a new version rolled over the hosts one at a time, (b) one host upgraded in place with USR2,
(c) workers recycled by memory, (d) one host killed outright. ``make fleet``; the table goes
into loadtests/README.md.

Each host is a network namespace made for the run, with its own address on a private bridge
(harness/netns.py), or a loopback address of its own where the kernel refuses namespaces. It
runs geventserve -k gevent serving loadtests/fleet_app.py (examples/io_bound.py and two views)
with a readiness path and a drain delay, beside its upstream (examples/upstream.py); see
fleet_hosts.py. Locust (loadtests/locustfile_fleet.py) goes through each balancer and counts
every request under its balancer and the phase it started in.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
import tempfile
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from harness.machine import machine_line, package_version
from harness.netns import SUBNET, HostAddress, Network, loopback_hosts, netns_refused
from harness.process import ProcessError
from loadtests.modes import (
    EXIT_FAILURES,
    HERE,
    README,
    REPORTS,
    StartError,
    print_header,
    require,
    write_section,
)
from loadtests.modes.fleet_hosts import (
    START_TIMEOUT,
    FleetHost,
    Front,
    HAProxyFront,
    HostSettings,
    NginxFront,
)
from loadtests.modes.measure import LocustRun, Stats, fmt_ms, parse_duration
from loadtests.modes.run import IO_PREFLIGHT
from loadtests.modes.servers import preflight

HELP = "three hosts behind HAProxy, then nginx: rolled, upgraded, recycled, one killed"
LOCUSTFILE_FLEET = HERE / "locustfile_fleet.py"
FLEET_START = "<!-- fleet:start -->"
FLEET_END = "<!-- fleet:end -->"
HOSTS = 3
UPGRADED, KILLED = 1, 2  # which host (b) upgrades and (d) kills
KILL_AFTER = 1.5  # seconds into (d) before the kill: longer than a request of (c) takes
PHASES = [("a-roll", "(a) new version rolled over the hosts"),
          ("b-usr2", "(b) one host upgraded with USR2"),
          ("c-recycle", "(c) workers recycled by memory"),
          ("d-kill", "(d) one host killed")]
FRONTS = ("haproxy", "nginx")


RUN_TIME_HELP = "load before the first phase and after each action (locust runs throughout)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.set_defaults(users=60, spawn_rate=20, workers=2)
    parser.add_argument("--balancers", default=",".join(FRONTS),
                        help="the balancers, one pass each in this order (comma-separated)")
    parser.add_argument("--together", action="store_true",
                        help="one pass with every balancer in front of the same hosts at once "
                             "(the short form that make test runs)")
    parser.add_argument("--hosts", choices=("auto", "netns", "loopback"), default="auto",
                        help="hosts as network namespaces, on loopback addresses, or "
                             "namespaces where the kernel allows them")
    parser.add_argument("--drain-delay", type=float, default=2.0,
                        help="--drain-delay of every host")
    parser.add_argument("--check-interval", type=float, default=0.5,
                        help="seconds between two HAProxy checks of a host (inter; fall 2)")
    parser.add_argument("--max-worker-memory", type=int, default=150,
                        help="--max-worker-memory of every host, in MiB (phase c grows a "
                             "worker of each host past it)")
    parser.add_argument("--readme", default=None, metavar="FILE",
                        help="file whose fleet section gets the table ('' to only print it; "
                             "default: loadtests/README.md)")


# -- the run ----------------------------------------------------------------------------------

@dataclass
class KillReport:
    """Phase (d) through one balancer: what the kill cost and how long it mattered."""

    front: str
    host: str
    connections: int  # established to the host at the kill: its requests in flight at most
    failures: int
    kinds: str
    failed_after: List[float]  # seconds from the kill to each failure's end
    out_after: Optional[float]  # seconds until the balancer marked the host down (if it tells)
    bound: float  # seconds after the kill within which it must route around the host
    resent: int  # times the balancer moved a request that met the dead host to another one
    routing: str


@dataclass
class PassReport:
    fronts: List[Tuple[str, str]]  # (name, label)
    rows: Dict[str, Stats]  # by locust's name: "haproxy a-roll"
    kills: List[KillReport] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class FleetReport:
    hosts: str  # where the hosts ran, in words
    settings: HostSettings
    passes: List[PassReport] = field(default_factory=list)

    @property
    def problems(self) -> List[str]:
        return [problem for one in self.passes for problem in one.problems]


@contextmanager
def fleet_hosts(kind: str, count: int) -> Iterator[Tuple[List[HostAddress], str]]:
    """The hosts' places: namespaces on a bridge (removed at the end, whatever happens), or
    loopback addresses where namespaces are refused (said in one line) or asked for."""
    if kind != "loopback":
        refused = netns_refused()
        if refused is None:
            with Network(count) as net:
                if net.removed:
                    print(f"removed what an earlier run left: {', '.join(net.removed)}")
                first, last = net.hosts[0].address, net.hosts[-1].address
                yield net.hosts, (f"{count} network namespaces ({first} to {last} on the bridge "
                                  f"{net.bridge}, {SUBNET}.0/24)")
            return
        if kind == "netns":
            raise StartError(f"network namespaces refused: {refused}")
        print(f"network namespaces refused ({refused}): the hosts run on loopback addresses "
              "instead")
    hosts = loopback_hosts(count)
    yield hosts, f"{count} loopback addresses ({hosts[0].address} to {hosts[-1].address})"


class Fleet:
    """The hosts and balancers of one pass, and the actions of its phases."""

    def __init__(self, hosts: List[FleetHost], fronts: List[Front], report: PassReport) -> None:
        self.hosts, self.fronts, self.report = hosts, fronts, report
        self.kill_time = 0.0  # when (d) killed its host (time.time())
        self._resent_before: List[int] = []  # each balancer's count of resent requests then

    def say(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def roll(self) -> None:
        """(a) Each host in turn: TERM (the drain, then the graceful stop), the new version
        started, and the next host only once every balancer sends to it again."""
        for host in self.hosts:
            took = host.term()
            host.start("2")
            host.wait_ready()
            for front in self.fronts:
                front.wait_in([host], START_TIMEOUT)
            self.say(f"{host.name}: stopped in {took:.1f} s, version 2 serving")
        served = {host.name: host.served_version() for host in self.hosts}
        if set(served.values()) != {"2"}:
            self.report.problems.append(f"after the roll the hosts serve {served}")

    def upgrade(self) -> None:
        """(b) USR2 to one host; TERM to its old supervisor once the new one is ready."""
        host = self.hosts[UPGRADED]
        new = host.upgrade()
        for front in self.fronts:
            front.wait_in([host], START_TIMEOUT)
        self.say(f"{host.name}: new supervisor (pid {new}) serving, the old one gone")

    def recycle(self) -> None:
        """(c) One worker of each host made to keep more than --max-worker-memory; each is
        replaced (its replacement ready first)."""
        mib = self.hosts[0].settings.max_worker_memory
        grown = [(host, host.grow(mib)) for host in self.hosts]
        for host, pid in grown:
            line = host.wait_replaced(pid, timeout=START_TIMEOUT)
            self.say(f"{host.name}: {line[line.index('Worker'):]}")

    def kill(self) -> None:
        """(d) kill -9 of one host's process groups; how each balancer copes. Only once the
        requests of the phase before have ended, so that what the kill costs is counted here."""
        time.sleep(KILL_AFTER)
        host = self.hosts[KILLED]
        self._resent_before = [front.resent(host) for front in self.fronts]
        connections = host.open_connections()
        killed_at, killed_mono = time.time(), time.monotonic()
        host.kill()
        self.kill_time = killed_at
        for front in self.fronts:
            try:
                out = front.wait_out(host, timeout=front.route_bound + 5)
            except ProcessError as exc:
                self.report.problems.append(f"{front.name}, (d): {exc}")
                out = None
            out_after = None if out is None else time.monotonic() - killed_mono
            self.report.kills.append(KillReport(front.name, host.name, connections, 0, "",
                                                [], out_after, front.route_bound, 0,
                                                front.routing))
        self.say(f"{host.name} killed with {connections} connections open to it")

    def count_resent(self) -> None:
        """After the kill's settling time: what each balancer sent on to other hosts."""
        host = self.hosts[KILLED]
        for kill, front, before in zip(self.report.kills, self.fronts, self._resent_before):
            kill.resent = front.resent(host) - before


def start_front(kind: str, workdir: Path, hosts: Sequence[FleetHost], args: argparse.Namespace,
                prefix: str) -> Front:
    if kind == "haproxy":
        return HAProxyFront(workdir, hosts, args.check_interval, prefix)
    return NginxFront(workdir, hosts, prefix)


def run_pass(kinds: Sequence[str], where: Sequence[HostAddress], args: argparse.Namespace,
             settings: HostSettings) -> PassReport:
    """Start the hosts and the balancers ``kinds``, load them, run the four phases."""
    started = time.monotonic()
    name = "fleet-" + "-".join(kinds)
    settle = parse_duration(args.run_time)
    with tempfile.TemporaryDirectory(prefix="fleet-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        hosts = [FleetHost(place, name, settings) for place in where]
        for host in hosts:
            stack.callback(host.stop)
            host.start_upstream()
            host.start("1")
        for host in hosts:
            host.wait_ready()
        fronts = []
        for kind in kinds:
            front = start_front(kind, workdir, hosts, args, name)
            stack.callback(front.stop)
            fronts.append(front)
        for front in fronts:
            front.wait_in(hosts, START_TIMEOUT)
            preflight(front.url, [*IO_PREFLIGHT, "/version"], front.label)
        report = PassReport([(front.name, front.label) for front in fronts], {})
        phase_file, failures_file = workdir / "phase", REPORTS / f"{name}_failures.jsonl"
        set_phase(phase_file, "warm-up")
        failures_file.write_text("")
        env = {"FLEET_FRONTS": ",".join(f"{front.name}={front.url}" for front in fronts),
               "FLEET_PHASE_FILE": str(phase_file), "FLEET_FAILURES_FILE": str(failures_file)}
        locust = stack.enter_context(LocustRun(LOCUSTFILE_FLEET, "", name, args, env=env))
        locust.start()
        time.sleep(settle + args.users / args.spawn_rate)  # every user started, then some
        fleet = Fleet(hosts, fronts, report)
        actions: Dict[str, Callable[[], None]] = {
            "a-roll": fleet.roll, "b-usr2": fleet.upgrade, "c-recycle": fleet.recycle,
            "d-kill": fleet.kill}
        for phase, title in PHASES:
            set_phase(phase_file, phase)
            print(f"-- {title}", flush=True)
            actions[phase]()
            time.sleep(settle)
        fleet.count_resent()
        locust.stop()
        report.rows = locust.rows()
        judge(report, fleet, failures_file)
        for host in hosts:
            report.notes += [f"{host.name}: {line}" for line in host.problems()]
    report.seconds = time.monotonic() - started
    return report


def set_phase(path: Path, phase: str) -> None:
    """The phase locust counts new requests under (written whole: read 20 times a second)."""
    path.with_suffix(".new").write_text(phase)
    os.replace(path.with_suffix(".new"), path)


def judge(report: PassReport, fleet: Fleet, failures_file: Path) -> None:
    """Fill in the kill reports from the failures, and name every problem: a failure in
    (a) to (c), a phase without requests, in (d) more failures than connections open to the
    killed host, a failure before the kill or after the balancer should have routed around it,
    HAProxy slower than its checks to mark the host down."""
    failed = [json.loads(line) for line in failures_file.read_text().splitlines() if line]
    for front, _ in report.fronts:
        for phase, title in PHASES:
            stats = report.rows.get(f"{front} {phase}")
            written = sum(1 for item in failed if (item["front"], item["phase"]) == (front, phase))
            if stats is not None and written > stats.failures:  # the CSV missed its last write
                stats.failures = written
            if stats is None or not stats.requests:
                report.problems.append(f"{front}, {title}: no request was counted")
            elif stats.failures and phase != "d-kill":
                report.problems.append(f"{front}, {title}: {stats.failures} of "
                                       f"{stats.requests} requests failed: {kinds(stats)}")
    for kill in report.kills:
        stats = report.rows.get(f"{kill.front} d-kill")
        kill.failures = stats.failures if stats else 0
        kill.kinds = kinds(stats) if stats else ""
        kill.failed_after = sorted(round(item["time"] - fleet.kill_time, 3) for item in failed
                                   if item["front"] == kill.front and item["phase"] == "d-kill")
        window = kill.bound
        where = f"{kill.front}, (d)"
        if kill.failures > kill.connections:
            report.problems.append(f"{where}: {kill.failures} failed, more than the "
                                   f"{kill.connections} connections open to {kill.host}")
        if kill.failed_after and kill.failed_after[0] < -0.05:
            report.problems.append(f"{where}: a request failed {-kill.failed_after[0]:.2f} s "
                                   "before the kill")
        if kill.failed_after and kill.failed_after[-1] > window:
            report.problems.append(f"{where}: a request failed {kill.failed_after[-1]:.2f} s "
                                   f"after the kill (bound {window:g} s)")
        if kill.out_after is not None and kill.out_after > window:
            report.problems.append(f"{where}: {kill.host} marked down only "
                                   f"{kill.out_after:.2f} s after the kill (bound {window:g} s)")


def kinds(stats: Stats) -> str:
    """``3 x HTTP 502, 1 x ConnectionResetError(...)``: each kind of failure with its count."""
    return ", ".join(f"{count} x {error.split(': ', 1)[-1]}" for count, error in stats.errors)


# -- the report -------------------------------------------------------------------------------

def markdown(report: FleetReport, args: argparse.Namespace, command: str) -> str:
    s = report.settings
    lines = [
        f"Measured {datetime.date.today().isoformat()} on {machine_line()}, with locust "
        f"{package_version('locust')} on the same machine ({args.users} users"
        f"{' over the balancers' if args.together else ' through each balancer'}, "
        f"{args.spawn_rate:g}/s; {args.run_time} of load before the first phase and after each "
        f"action): `{command}`. Hosts: {report.hosts}, each `geventserve -k gevent "
        f"-w {s.workers} --readiness-path /readyz --drain-delay {s.drain_delay:g} "
        f"--graceful-timeout {s.graceful_timeout:g} --keep-alive {s.keep_alive} "
        f"--max-worker-memory {s.max_worker_memory}` serving `loadtests/fleet_app.py`, "
        f"geventserve {package_version('geventserve')}.",
        "",
        "| balancer | phase | requests | failed | failures by kind | p50 (ms) | p99 (ms) |",
        "|---|---|---:|---:|---|---:|---:|",
    ]
    for one in report.passes:
        for front, label in one.fronts:
            for phase, title in PHASES:
                stats = one.rows.get(f"{front} {phase}")
                if stats is None:
                    lines.append(f"| {label} | {title} | 0 | - | - | - | - |")
                    continue
                lines.append(f"| {label} | {title} | {stats.requests} | {stats.failures} | "
                             f"{kinds(stats) or '-'} | {fmt_ms(stats.median)[:-3]} | "
                             f"{fmt_ms(stats.p99)[:-3]} |")
    lines.append("")
    for one in report.passes:
        labels = dict(one.fronts)
        lines += [f"- {kill_sentence(kill, labels[kill.front])}" for kill in one.kills]
    return "\n".join(lines)


def kill_sentence(kill: KillReport, label: str) -> str:
    failed = (f"{kill.failures} request(s) failed ({kill.kinds}), "
              f"{kill.failed_after[0]:.2f} to {kill.failed_after[-1]:.2f} s after the kill"
              if kill.failed_after else f"{kill.failures} request(s) failed")
    out = (f"it marked {kill.host} down {kill.out_after:.2f} s after the kill and"
           if kill.out_after is not None else "with no active check, it")
    return (f"(d) through {label} ({kill.routing}): {kill.host} killed with "
            f"{kill.connections} connection(s) open to it; {failed}; {out} moved a request "
            f"that met {kill.host} on to another host {kill.resent} time(s).")


# -- main -------------------------------------------------------------------------------------

def run_fleet(args: argparse.Namespace) -> FleetReport:
    """Every pass (one per balancer, or one with all with --together); the report."""
    kinds = [kind.strip() for kind in args.balancers.split(",") if kind.strip()]
    unknown = set(kinds) - set(FRONTS)
    if unknown or not kinds:
        raise StartError(f"--balancers: unknown {', '.join(sorted(unknown)) or 'none given'} "
                         f"(known: {', '.join(FRONTS)})")
    require(LOCUSTFILE_FLEET, HERE / "fleet_app.py")
    REPORTS.mkdir(parents=True, exist_ok=True)
    settings = HostSettings(workers=args.workers, worker_connections=args.worker_connections,
                            drain_delay=args.drain_delay,
                            max_worker_memory=args.max_worker_memory)
    passes = [kinds] if args.together else [[kind] for kind in kinds]
    with fleet_hosts(args.hosts, HOSTS) as (where, described):
        report = FleetReport(described, settings)
        for kinds_of_pass in passes:
            print_header(f"{' and '.join(kinds_of_pass)} in front of {described}")
            one = run_pass(kinds_of_pass, where, args, settings)
            report.passes.append(one)
            for line in one.notes:
                print(f"note: {line}")
            print(f"(this pass took {one.seconds:.0f} s)")
    return report


def main(args: argparse.Namespace) -> int:
    report = run_fleet(args)
    given = shlex.join(sys.argv[2:])  # loadtests/run.py fleet ARGS
    command = f'make fleet FLEET_ARGS="{given}"' if given else "make fleet"
    section = markdown(report, args, command)
    print_header("fleet table")
    print(section)
    if args.readme != "":
        readme = Path(args.readme or README)
        write_section(readme, FLEET_START, FLEET_END, section)
        print(f"\nwritten into {readme} between {FLEET_START} and {FLEET_END}")
    for problem in report.problems:
        print(f"problem: {problem}")
    if report.problems:
        return EXIT_FAILURES
    print("OK: no failed request in (a) to (c); (d) within its bound")
    return 0
