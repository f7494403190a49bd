"""Recycling by memory (--max-worker-memory) and by age (--max-worker-lifetime and its jitter):
the worker is replaced under load without a failed request, its replacement ready before it
stops accepting, and the log says why with the figure."""

import re
import time

from harness.procfs import rss_mib
from helpers import Load, Server, request, wait_until


def test_a_worker_past_the_memory_limit_is_replaced_under_load():
    with Server(["-w", "2", "--max-worker-memory", "80"]) as srv:
        wait_until(lambda: len(srv.worker_pids()) == 2, message="2 workers")
        baseline = max(rss_mib([pid]) for pid in srv.worker_pids())
        assert baseline < 60, baseline  # room to grow before the limit
        load = Load(srv.port, clients=20).start()
        time.sleep(0.5)
        grown = int(request(srv.port, "GET", "/grow?60").text)  # now past 80 MiB
        match = srv.wait_for_log(r"Worker \(pid:%d\) uses (\d+) MiB of memory, past "
                                 r"--max-worker-memory 80: replacing it" % grown, timeout=10)
        assert int(match.group(1)) > 80
        wait_until(lambda: grown not in srv.worker_pids() and len(srv.worker_pids()) == 2,
                   timeout=15, message="the grown worker replaced")
        time.sleep(0.5)
        load.stop()
    assert load.failures == [] and load.retries == [], (load.failures, load.retries)
    assert load.ok > 200
    # the replacement served before the grown worker left
    log = srv.log
    assert log.index(f"Worker (pid:{grown}) uses") < log.index(f"Worker exiting (pid: {grown})")
    assert "Booting worker" in log[log.index(f"Worker (pid:{grown}) uses"):]


def test_workers_under_the_memory_limit_stay():
    with Server(["-w", "2", "--max-worker-memory", "500"]) as srv:
        first = set(srv.worker_pids())
        request(srv.port, "GET", "/grow?5")
        time.sleep(2.5)  # the supervisor checks each second
        assert set(srv.worker_pids()) == first
        assert "replacing it" not in srv.log


def test_workers_are_replaced_by_age_with_jitter_under_load():
    with Server(["-w", "2", "--max-worker-lifetime", "2", "--max-worker-lifetime-jitter",
                 "1"]) as srv:
        first = set(srv.worker_pids())
        load = Load(srv.port, clients=20).start()
        wait_until(lambda: not first & set(srv.worker_pids()), timeout=20,
                   message="both first workers replaced")
        load.stop()
    assert load.failures == [] and load.retries == [], (load.failures, load.retries)
    ages = [float(m.group(2)) for m in re.finditer(
        r"Worker \(pid:(\d+)\) has run (\d+)s, past --max-worker-lifetime 2s \(\+(\d+)s of "
        r"jitter\): replacing it", srv.log)]
    assert len(ages) >= 2, srv.log
    # One worker is recycled at a time: the next one waits for the first one's replacement to
    # be ready (a busy machine may take seconds), so only the first age is bounded above.
    assert all(age >= 2 for age in ages) and ages[0] <= 5, ages
