"""The gevent worker's collector (workers/collector.py), in this process with its real gc:
connections that pile up cause no full collection, connections that come and go leave cyclic
garbage among the frozen objects, which a full collection frees. Memory in use is counted in
pymalloc's blocks, as the collector does: each of these objects is one."""

import gc
import sys
from typing import List

import pytest

from geventserve.workers.collector import GROWTH, MIN_GROWTH, Collector

OBJECTS = 121  # per connection below


def connection() -> List[object]:
    """What a connection holds, as a cycle (as a closed WebSocket leaves some): 121 objects the
    collector tracks (lists; an empty dict it does not)."""
    parts: List[List[object]] = [[] for _ in range(OBJECTS - 2)]
    head: List[object] = [parts]
    parts[0].append(head)
    return head


def margin(collector: Collector) -> int:
    """How many connections' worth of memory the memory in use may outgrow the expected by."""
    expected = collector.expected()
    return int(max(GROWTH * expected, MIN_GROWTH) / (collector.per_connection or OBJECTS)) + 1


@pytest.fixture
def frozen():
    """gc.freeze() for the test (what the worker does once the app is loaded), undone after."""
    gc.collect()
    gc.freeze()
    yield
    gc.unfreeze()
    gc.collect()


def test_connections_piling_up_are_frozen_without_full_collections(frozen):
    open_: List[object] = []
    collector = Collector(lambda: len(open_))
    frozen_at_start = gc.get_freeze_count()
    # The first ones: nothing says yet how many objects a connection holds.
    open_ += [connection() for _ in range(margin(collector) + 100)]
    assert collector.step()
    assert collector.per_connection == pytest.approx(OBJECTS, rel=0.1)
    for _ in range(3):  # a reconnection storm: each time twice as many
        open_ += [connection() for _ in range(len(open_))]
        assert not collector.step()
        assert gc.get_freeze_count() >= frozen_at_start + len(open_) * OBJECTS  # all frozen


def test_connections_that_end_leave_garbage_that_a_full_collection_frees(frozen):
    open_: List[object] = []
    collector = Collector(lambda: len(open_))
    open_ += [connection() for _ in range(2 * margin(collector))]
    assert collector.step()  # learns what a connection holds
    turnover = margin(collector) // 3 + 1
    for _ in range(2):  # some end, as many arrive: garbage among the frozen objects
        del open_[:turnover]
        open_ += [connection() for _ in range(turnover)]
        assert not collector.step()
    garbage = sys.getallocatedblocks() - collector.expected()
    assert garbage >= 2 * turnover * collector.per_connection * 0.9
    del open_[:turnover]
    open_ += [connection() for _ in range(turnover)]
    assert collector.step()  # the garbage outgrew what the connections explain: freed
    assert abs(sys.getallocatedblocks() - collector.expected()) < 0.05 * collector.expected()
