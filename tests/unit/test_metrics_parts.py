"""The metrics' parts in-process: rendering (read back with prometheus_client's parsers), the
shared-memory block, the per-request recorder, the timing of the event loop's turns, and the
timing of event-loop holds with its report."""

import re
import sys
import threading
import time

import gevent
import greenlet
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from geventserve.metrics import layout, recorder
from geventserve.metrics.exposition import Family, histogram, render, wants_openmetrics
from geventserve.workers.loopblock import LoopBlocks
from geventserve.workers.loopturns import LoopTurns


def families():
    requests = Family("t_requests", "counter", 'Requests "answered".\nSecond line \\ here.')
    requests.add(3, method="GET", code="200")
    requests.add(1, method='we"ird\\\n', code="0")
    yield requests
    yield Family("t_in_flight", "gauge", "In flight.").add(2.5)
    yield histogram("t_seconds", "Durations.", (0.1, 1.0), [1, 2, 3], 7.25)


@pytest.mark.parametrize("openmetrics", [False, True])
def test_rendering_reads_back(openmetrics):
    body, content_type = render(families(), openmetrics)
    text = body.decode()
    parsed = {f.name: f for f in (parse_om if openmetrics else parse_text)(text)}
    assert set(parsed) == {"t_requests", "t_in_flight", "t_seconds"}
    requests = parsed["t_requests"]
    assert requests.type == "counter"
    assert requests.documentation == 'Requests "answered".\nSecond line \\ here.'
    assert {(s.name, s.labels["method"], s.value) for s in requests.samples} == {
        ("t_requests_total", "GET", 3), ("t_requests_total", 'we"ird\\\n', 1)}
    buckets = {s.labels.get("le"): s.value for s in parsed["t_seconds"].samples
               if s.name == "t_seconds_bucket"}
    assert buckets == {"0.1": 1, "1.0": 3, "+Inf": 6}  # cumulative
    others = {s.name: s.value for s in parsed["t_seconds"].samples if "le" not in s.labels}
    assert others == {"t_seconds_count": 6, "t_seconds_sum": 7.25}
    assert parsed["t_in_flight"].samples[0].value == 2.5
    if openmetrics:
        assert content_type.startswith("application/openmetrics-text; version=1.0.0")
        assert text.endswith("# EOF\n") and "# TYPE t_requests counter" in text
    else:
        assert content_type == "text/plain; version=0.0.4; charset=utf-8"
        assert "# TYPE t_requests_total counter" in text


@pytest.mark.parametrize("accept,wanted", [
    ("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
     "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1", True),  # Prometheus 2.x
    ("text/plain;version=0.0.4;q=1,*/*;q=0.1", False),
    ("application/openmetrics-text; q=0", False),
    ("Application/OpenMetrics-Text", True),
    ("", False),
    ("*/*", False),
])
def test_openmetrics_is_served_to_who_asks(accept, wanted):
    assert wants_openmetrics(accept) is wanted


def test_block_status_round_trip():
    block = layout.WorkerBlock()
    try:
        assert block.in_flight() == []
        block.publish(3, 2, 1, 25, [["GET", "/a", 12.5], ["POST", "/b", 13.0]], 0.25)
        assert block.in_flight() == [["GET", "/a", 12.5], ["POST", "/b", 13.0]]
        ints = block.ints
        assert (ints[layout.ACTIVE], ints[layout.IDLE], ints[layout.TAKEN_OVER],
                ints[layout.IN_FLIGHT]) == (3, 2, 1, 25)
        assert block.doubles[layout.LOOP_LAG] == 0.25
        ints[layout.STATUS_SEQ] += 1  # a writer mid-write: the reader does not trust it
        assert block.in_flight() is None
        ints[layout.STATUS_SEQ] += 1
        many = [["GET", "/" + "x" * 180, float(i)] for i in range(200)]  # more than fits
        block.publish(0, 0, 0, 200, many, 0.0)
        shown = block.in_flight()
        assert 0 < len(shown) < 200 and shown == many[:len(shown)]
    finally:
        block.close()


def test_requests_are_counted_by_method_code_and_bucket_when_flushed():
    block = layout.WorkerBlock()
    try:
        counts = recorder.RequestCounts(block)
        counts.tally(("GET", "200 OK", 0.002))
        counts.tally(("BREW", "418 I'm a teapot", 0.5))
        counts.tally(("-", None, 40.0))  # no response: the client went away
        assert sum(block.ints[:layout.TIMES]) == 0 and block.counter_sums() == [0.0, 0.0]
        counts.flush()
        counts.flush()  # nothing since: nothing more
        assert block.used_codes() == [0, 200, 418]
        found, rest = block.counters(block.used_codes())
        row = layout.CODES
        other = layout.METHOD_LABELS.index("other")
        assert found[0 * row + 200] == 1
        assert found[other * row + 418] == 1
        assert found[other * row + 0] == 1
        assert sum(found.values()) == 3
        assert sum(block.ints[:layout.TIMES]) == 3  # the columns not read are all zeros
        durations, turns = layout.histograms(rest)
        assert durations[layout.BUCKETS.index(0.0025)] == 1  # 2 ms: the 2.5 ms bucket
        assert durations[layout.BUCKETS.index(0.5)] == 1  # a bound is in its own bucket
        assert durations[-1] == 1  # past 30 s: +Inf
        assert sum(durations) == 3 and sum(turns) == 0  # the loop's turns are counted apart
        assert block.counter_sums() == pytest.approx([40.502, 0.0])
    finally:
        block.close()


def test_a_turn_s_requests_are_added_to_what_the_block_holds():
    """Many requests between two flushes, of several methods, status lines (two of one code)
    and durations (all under the first bound, then spread over the buckets)."""
    block = layout.WorkerBlock()
    try:
        counts = recorder.RequestCounts(block)
        for _ in range(50):
            counts.tally(("GET", "200 OK", 0.0004))
        counts.flush()
        assert block.ints[0 * layout.CODES + 200] == 50 and block.ints[layout.TIMES] == 50
        spread = [0.0001, 0.001, 0.003, 0.003, 0.07, 0.07, 0.07, 2.0, 31.0, 0.0002]
        for i, seconds in enumerate(spread):
            counts.tally(("POST" if i % 2 else "GET", "200 OK" if i < 8 else "200 Fine",
                          seconds))
        counts.tally(("DELETE", "404 Not Found", 0.0))
        counts.flush()
        found, rest = block.counters(block.used_codes())
        post = layout.METHOD_LABELS.index("POST") * layout.CODES
        delete = layout.METHOD_LABELS.index("DELETE") * layout.CODES
        assert (found[200], found[post + 200], found[delete + 404]) == (55, 5, 1)
        durations, _ = layout.histograms(rest)
        expected = [0] * layout.N_BUCKETS
        for seconds in [0.0004] * 50 + spread + [0.0]:
            expected[next((i for i, bound in enumerate(layout.BUCKETS) if seconds <= bound),
                          len(layout.BUCKETS))] += 1
        assert durations == expected
        assert block.counter_sums()[0] == pytest.approx(0.02 + sum(spread))
    finally:
        block.close()


def test_the_access_log_gets_each_request_s_hold_when_it_shows_it():
    logged, held = [], iter([0.0005, 0.2])
    access = recorder.observer(lambda: next(held), lambda *args: logged.append(args),
                               log_wants_held=True)
    environs = [{"REQUEST_METHOD": "GET"}, {"REQUEST_METHOD": "POST"}]
    access(environs[0], "200 OK", 5, 0.002)
    access(environs[1], "418 I'm a teapot", 0, 0.5)
    assert [e[recorder.LOOP_BLOCKED] for e in environs] == [0.0005, 0.2]
    assert len(logged) == 2 and logged[1][1] == "418 I'm a teapot"


def test_the_loop_s_long_turns_have_a_histogram_of_their_own():
    block = layout.WorkerBlock()
    try:
        observe = recorder.turn_observer(block)
        for seconds in (0.0012, 0.2, 0.25, 45.0):
            observe(seconds)
        durations, turns = layout.histograms(block.counters(block.used_codes())[1])
        assert sum(durations) == 0
        assert turns[layout.BUCKETS.index(0.0025)] == 1
        assert turns[layout.BUCKETS.index(0.25)] == 2  # a bound is in its own bucket
        assert turns[-1] == 1 and sum(turns) == 4
        assert block.counter_sums() == pytest.approx([0.0, 45.4512])
        assert block.ints[layout.ACCEPTED] == 0  # the buckets end before the next counter
        assert recorder.turn_observer(None) is None
    finally:
        block.close()


def test_a_sync_worker_s_requests_are_added_at_once():
    block = layout.WorkerBlock()
    try:
        recorder.RequestCounts(block, flush_each=True).tally(("POST", "201 Created", 0.3))
        durations, turns = layout.histograms(block.counters(block.used_codes())[1])
        assert durations[layout.BUCKETS.index(0.5)] == 1 and sum(turns) == 0
        assert block.counter_sums() == [0.3, 0.0]
    finally:
        block.close()


def test_without_the_hold_in_the_log_the_access_log_is_left_as_it_is():
    def access(*args):
        pass

    assert recorder.observer(None, access, log_wants_held=True) is access
    assert recorder.observer(lambda: 0.0, access, log_wants_held=False) is access
    assert recorder.observer(None, None, log_wants_held=False) is None
    environ = {}
    recorder.observer(lambda: 0.125, access, log_wants_held=True)(environ, "200 OK", 0, 0)
    assert environ[recorder.LOOP_BLOCKED] == 0.125


def test_a_turn_of_the_loop_is_timed_from_its_poll_to_the_next():
    """One greenlet that spins, two that spin one after the other in the same turn, and an
    idle loop: two long turns, of their lengths (shorter ones only if the machine paused the
    process); nothing once uninstalled."""
    turns = []
    timer = LoopTurns(gevent.get_hub().loop, turns.append)
    timer.install()
    try:
        gevent.sleep(0.01)
        gevent.spawn(spin, 0.03).join(5)
        gevent.sleep(0.01)
        gevent.joinall([gevent.spawn(spin, 0.02), gevent.spawn(spin, 0.02)], timeout=5)
        gevent.sleep(0.05)  # waiting: no turn of 1 ms
    finally:
        timer.uninstall()
    gevent.spawn(spin, 0.01).join(5)
    long_turns = [seconds for seconds in turns if seconds >= 0.025]
    assert len(long_turns) == 2, turns
    assert 0.03 <= long_turns[0] < 0.5 and 0.04 <= long_turns[1] < 0.5, turns


def test_each_turn_ends_with_the_flush_of_what_it_answered():
    """What a greenlet tallies is in the block once the loop is about to wait for I/O, before
    the greenlet's next turn; a greenlet that never yields gets no flush in between."""
    block = layout.WorkerBlock()
    counts = recorder.RequestCounts(block)
    timer = LoopTurns(gevent.get_hub().loop, lambda seconds: None, at_end=counts.flush)
    timer.install()
    gevent.sleep(0.001)  # a whole turn: the one under way when installed may have begun
    seen = []

    def answer():
        for _ in range(3):
            counts.tally(("GET", "200 OK", 0.0001))
            counts.tally(("GET", "200 OK", 0.0001))
            seen.append(block.ints[200])  # not flushed yet: the turn goes on
            gevent.sleep(0.01)  # the loop polls: the flush
    try:
        gevent.spawn(answer).join(5)  # its last sleep let the loop poll: all 6 are in
        assert seen == [0, 2, 4] and block.ints[200] == 6
    finally:
        timer.uninstall()
        block.close()


def spin(seconds):
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.fixture
def blocks():
    made = []

    def make(warn, per_request=True):
        made.append(LoopBlocks(gevent.get_hub(), greenlet.getcurrent, warn, per_request))
        made[-1].install()
        return made[-1]
    yield make
    for tracer in made:
        tracer.uninstall()


def test_each_greenlet_gets_its_longest_hold(blocks):
    tracer = blocks(warn=0)
    results = {}

    def request(name, first, second):
        spin(first)
        gevent.sleep(0)
        spin(second)
        results[name] = tracer.take()

    gevent.joinall([gevent.spawn(request, "long", 0.06, 0.01),
                    gevent.spawn(request, "short", 0.002, 0.001)], timeout=5)
    assert 0.06 <= results["long"] < 0.2
    assert 0.002 <= results["short"] < 0.06  # the other's hold is not its own
    assert tracer.report_due() is None  # warn 0: nothing is reported
    assert not tracer.longest  # taken, and the ended greenlets forgotten


def test_a_long_hold_is_reported_with_the_stack_sampled_while_it_held(blocks):
    tracer = blocks(warn=0.05, per_request=False)
    main = threading.get_ident()
    describe = lambda frame: "GET /slow from 10.0.0.1"  # noqa: E731
    sampler = threading.Timer(0.06, tracer.sample, (lambda: sys._current_frames()[main],
                                                    describe))

    def slow_view():
        sampler.start()
        spin(0.15)

    gevent.spawn(slow_view).join(5)
    sampler.join(5)
    gevent.sleep(2 * tracer.period)  # timed by the beat: the late beat measures the hold
    report = tracer.report_due()
    assert report.startswith("Event loop blocked for 0.1")
    assert "by GET /slow from 10.0.0.1: every other request of this worker waited" in report
    assert "in slow_view" in report and "spin(0.15)" in report
    gevent.spawn(spin, 0.06).join(5)  # within REPORT_EVERY of the last report: quiet
    gevent.sleep(2 * tracer.period)
    assert tracer.report_due() is None
    assert tracer.long_holds == 2


def test_a_hold_not_sampled_says_so(blocks):
    tracer = blocks(warn=0.03, per_request=False)
    gevent.spawn(spin, 0.05).join(5)
    gevent.sleep(2 * tracer.period)
    report = tracer.report_due()
    assert report.startswith("Event loop blocked for 0.0")
    assert "No stack: the watchdog thread could not run while it blocked" in report


def test_timed_by_the_beat_no_switch_is_traced_and_a_turn_of_several_greenlets_is_told(blocks):
    tracer = blocks(warn=0.05, per_request=False)
    assert greenlet.gettrace() is None  # the report alone costs no switch anything
    main = threading.get_ident()
    describe = lambda frame: "GET /first from 10.0.0.1"  # noqa: E731
    # A look in the middle of each hold (50 ms from either end: a loaded machine wakes a
    # thread late).
    looks = [threading.Timer(delay, tracer.sample, (lambda: sys._current_frames()[main],
                                                    describe)) for delay in (0.05, 0.15)]
    for look in looks:
        look.start()
    # Two greenlets that run in the same turn of the loop, one after the other: no beat between.
    gevent.joinall([gevent.spawn(spin, 0.1), gevent.spawn(spin, 0.1)], timeout=5)
    for look in looks:
        look.join(5)
    gevent.sleep(2 * tracer.period)
    report = tracer.report_due()
    held = float(re.match(r"Event loop blocked for ([\d.]+)s", report).group(1))
    assert 0.2 <= held < 0.5, report
    assert "by several greenlets in turn, the first seen GET /first from 10.0.0.1" in report
