"""The fleet for real, in its short form (``make fleet`` runs the long one: loadtests/README.md):
three hosts, each a network namespace made by the test (loopback addresses where the kernel
refuses them), behind HAProxy and nginx at once, under locust the whole time: a new version
rolled over them, one upgraded with USR2, workers recycled by memory, one host killed. And the
namespaces themselves: made, reachable, removed, found and removed after a killed run; refused
by the kernel, loopback addresses instead."""

import os
import shutil
import subprocess
import sys
import time

import pytest

from harness.haproxy import HAPROXY
from harness.netns import NetnsBusy, Network, ip, leftovers, netns_refused
from harness.nginx import NGINX
from harness.probe import http_get
from harness.process import Process, run_command
from loadtests.modes import fleet
from loadtests.run import build_parser

# Fewer users and shorter phases than make fleet; the same hosts, flags and balancers.
SHORT = ["fleet", "-u", "16", "-r", "16", "-t", "1s", "--together", "--readme", ""]
NETNS_REFUSED = netns_refused()


@pytest.mark.skipif(not (os.path.exists(HAPROXY) and os.path.exists(NGINX)),
                    reason="haproxy and nginx are needed (make system-deps installs them)")
@pytest.mark.timeout(300)  # 40 s alone; beside another heavy file on 2 cores, more than twice
def test_the_fleet_short_form():
    args = build_parser().parse_args(SHORT)
    started = time.monotonic()
    report = fleet.run_fleet(args)
    took = time.monotonic() - started
    assert report.problems == [], report.problems
    (one,) = report.passes
    assert [name for name, _ in one.fronts] == ["haproxy", "nginx"]
    for front, _ in one.fronts:
        for phase, title in fleet.PHASES:
            stats = one.rows[f"{front} {phase}"]
            assert stats.requests > 0, (front, title)
            if phase != "d-kill":
                assert stats.failures == 0, (front, title, stats.errors)
    kills = {kill.front: kill for kill in one.kills}
    assert set(kills) == {"haproxy", "nginx"}
    for kill in kills.values():  # failures only among what the killed host had in flight
        assert kill.failures <= kill.connections, kill
        assert all(-0.05 <= after <= kill.bound for after in kill.failed_after), kill
    haproxy = kills["haproxy"]
    assert haproxy.out_after is not None and haproxy.out_after <= haproxy.bound, haproxy
    assert kills["nginx"].out_after is None  # no active checks: it cannot tell
    print(f"short form: {took:.0f} s; {fleet.kill_sentence(haproxy, 'HAProxy')}")
    if NETNS_REFUSED is None:
        assert "network namespaces" in report.hosts
        assert leftovers() == []


@pytest.mark.skipif(NETNS_REFUSED is not None, reason=f"no network namespaces: {NETNS_REFUSED}")
def test_namespaces_are_made_reachable_and_removed_with_what_a_killed_run_left():
    prefix = "gstest"  # names of its own, never those of a fleet run
    ip("netns", "add", f"{prefix}-h9")  # what a killed run left: a namespace, a process in it
    ip("link", "add", f"{prefix}0", "type", "bridge")
    orphan = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-h9", "sleep", "60"])
    try:
        with Network(2, prefix=prefix, subnet="10.213.1") as net:
            assert sorted(net.removed) == [f"link {prefix}0", f"netns {prefix}-h9"]
            assert orphan.wait(5) == -9
            assert [(h.name, h.address, h.netns) for h in net.hosts] == [
                ("h1", "10.213.1.11", f"{prefix}-h1"), ("h2", "10.213.1.12", f"{prefix}-h2")]
            with pytest.raises(NetnsBusy):  # a second run while this one lives touches nothing
                Network(1, prefix=prefix, subnet="10.213.1").create()
            host = net.hosts[0]
            server = Process(host.command(["python3", "-m", "http.server", "--bind",
                                           host.address, "8000"]), name="http.server")
            with server.start():
                server.wait_answer(f"http://{host.address}:8000/", timeout=15)
                assert http_get(f"http://{host.address}:8000/")[0] == 200
                assert fleet_pids(f"{prefix}-h1") == [server.pid]
            assert sorted(leftovers(prefix)) == sorted(
                [f"netns {prefix}-h1", f"netns {prefix}-h2", f"link {prefix}0",
                 f"link {prefix}-h1", f"link {prefix}-h2"])
    finally:
        orphan.kill()
        orphan.wait(5)
    assert leftovers(prefix) == []


def fleet_pids(netns):
    return [int(pid) for pid in ip("netns", "pids", netns).stdout.split()]


WHERE = """
from loadtests.modes.fleet import fleet_hosts
with fleet_hosts("auto", 3) as (hosts, said):
    print([host.address for host in hosts], said)
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv (to run without CAP_SYS_ADMIN)")
def test_where_namespaces_are_refused_the_hosts_are_loopback_addresses():
    """Without CAP_SYS_ADMIN the kernel refuses `ip netns add`: one line says so, and the hosts
    are 127.0.0.2 to .4."""
    done = run_command(["setpriv", "--bounding-set=-sys_admin", "--inh-caps=-sys_admin",
                        sys.executable, "-c", WHERE], timeout=30,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert done.returncode == 0, done.stderr
    said, where = done.stdout.splitlines()
    assert said.startswith("network namespaces refused (ip netns add ") and said.endswith(
        "): the hosts run on loopback addresses instead"), said
    assert where == ("['127.0.0.2', '127.0.0.3', '127.0.0.4'] 3 loopback addresses "
                     "(127.0.0.2 to 127.0.0.4)")
