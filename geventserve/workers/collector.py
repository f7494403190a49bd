"""The cyclic garbage collector in a gevent worker that holds long-lived connections.

A full collection traverses every object the collector tracks. With 10 000 WebSockets open that
is over a million objects and 0.3 to 1 s during which no connection is served, to find next to
nothing; CPython starts one whenever the objects promoted to its oldest generation since the
last one reach a quarter of those already there: several times while connections pile up (a
reconnection storm after a deploy), and again soon after.

The worker keeps what lives long out of reach instead: every ``EVERY`` seconds it collects what
is not frozen (what survived since the last time: a few milliseconds) and freezes what survives
that (``gc.freeze``: a list splice). Frozen objects are still freed when their last reference
goes; only those that end up as cyclic garbage (a closed WebSocket leaves about a sixth of its
objects so) wait for a full collection. That comes when the memory in use outgrows what the open
connections explain by a quarter (CPython's margin): as much per connection as after the last
full collection, besides what the app held at start-up. Connections piling up are not garbage,
so they cause none; connections coming and going do, now and then.

The memory in use is the count of pymalloc's blocks (``sys.getallocatedblocks``: a walk over its
pools, a fraction of a millisecond); counting the frozen objects (``gc.get_freeze_count``) walks
a million of them, which would stall the worker every time for tens of milliseconds.
"""

from __future__ import annotations

import gc
import sys
from typing import Any, Callable, Optional

#: seconds between two freezes
EVERY = 1.0
#: how far the memory in use may outgrow what the open connections explain before a full
#: collection: this share of it, and at least MIN_GROWTH blocks (pymalloc's, of 512 bytes at
#: most: some 20 MiB)
GROWTH = 0.25
MIN_GROWTH = 100_000


def _in_use() -> int:
    """pymalloc's blocks in use, or (pymalloc off: PYTHONMALLOC=malloc) the objects frozen."""
    return sys.getallocatedblocks() or gc.get_freeze_count()


class Collector:
    """Collects and freezes every ``EVERY`` seconds, in a greenlet of its own (a finalizer may
    block, which the event loop itself must not); a full collection now and then."""

    def __init__(self, connections: Callable[[], int]) -> None:
        #: how many connections are open
        self.connections = connections
        #: in use before any connection: the app's (the worker has just collected and frozen)
        self.at_start = _in_use()
        self.per_connection = 0.0  # in use per open connection, after the last full collection
        self._greenlet: Optional[Any] = None

    def start(self) -> None:
        import gevent

        self._greenlet = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    def _run(self) -> None:
        import gevent

        while True:
            gevent.sleep(EVERY)
            if gc.isenabled():  # an app (or a post_worker_init hook) may manage it itself
                self.step()

    def expected(self) -> float:
        """How much memory in use the open connections explain."""
        return self.at_start + self.per_connection * self.connections()

    def step(self) -> bool:
        """Collect what is not frozen, then freeze it; then everything (True), if the memory
        in use outgrew what the open connections explain."""
        gc.collect()
        gc.freeze()
        expected = self.expected()
        if _in_use() - expected <= max(GROWTH * expected, MIN_GROWTH):
            return False
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        connections, in_use = self.connections(), _in_use()
        if connections:
            self.per_connection = max(in_use - self.at_start, 0) / connections
        else:
            self.at_start = in_use
        return True
