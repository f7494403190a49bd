"""The long turns of a gevent worker's event loop, for the metrics: how long the loop ran its
greenlets (and its own callbacks) between two looks for I/O, each turn of FLOOR or more.

A turn is timed by two watchers of the loop: a check watcher, which libev runs first once the
poll for I/O returns, and a prepare watcher, which it runs last before the next poll. Nothing
runs per request or per greenlet switch, and an idle loop never wakes for it. A long turn is one
greenlet that does not yield (the request to name: --loop-block-warn) or many run one after
the other on a busy worker; for every other connection of the worker, either way, it is the
time it waited.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any, Callable, Optional

FLOOR = 0.001  # seconds: shorter turns are not counted (the histogram starts at 1 ms)
FIRST, LAST = 2, -2  # libev's highest and lowest priorities (EV_MAXPRI, EV_MINPRI)


class LoopTurns:
    """Calls ``observe(seconds)`` after each turn of ``loop`` of FLOOR seconds or more, and
    ``at_end()`` (if given) at the end of every turn, before the loop waits for I/O."""

    def __init__(self, loop: Any, observe: Callable[[float], None],
                 at_end: Optional[Callable[[], None]] = None) -> None:
        self.loop = loop
        self.observe = observe
        self.at_end = at_end
        self._watchers: Optional[Any] = None

    def install(self) -> None:
        clock, observe, at_end = perf_counter, self.observe, self.at_end or (lambda: None)
        began = [float("inf")]  # none yet: the first turn under way is not a whole one

        def woke() -> None:
            began[0] = clock()

        def polls() -> None:
            at_end()
            took = clock() - began[0]
            if took >= FLOOR:
                observe(took)
        check = self.loop.check(ref=False, priority=FIRST)
        prepare = self.loop.prepare(ref=False, priority=LAST)
        check.start(woke)
        prepare.start(polls)
        self._watchers = (check, prepare)

    def uninstall(self) -> None:
        if self._watchers is not None:
            for watcher in self._watchers:
                watcher.stop()
            self._watchers = None
