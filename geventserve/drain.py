"""--drain-delay: the time between TERM and the graceful stop, in which the server still accepts
and serves but tells the load balancers it is leaving (readiness 503, Connection: close).

The workers learn it from their shared-memory slot (``Slot.draining``), read by each readiness
check and by the worker's periodic tick; no signal changes meaning for gunicorn users.
"""

from __future__ import annotations

import time
from typing import Iterable

from . import logs
from .generation import WorkerProcess


class Drain:
    """A drain under way until ``until`` (monotonic time; 0: none)."""

    def __init__(self) -> None:
        self.until = 0.0

    @property
    def active(self) -> bool:
        return self.until > 0

    def begin(self, delay: float, workers: Iterable[WorkerProcess]) -> bool:
        """TERM: start a drain of ``delay`` seconds, the ``workers`` told at once. False when
        the stop is to begin now: no delay, or a drain already under way (a second TERM cuts
        it short)."""
        if delay <= 0 or self.active:
            if self.active:
                logs.error_log.info("Handling signal: TERM: the drain delay is cut short")
            return False
        self.until = time.monotonic() + delay
        self.over(workers)
        logs.error_log.info("Handling signal: TERM: draining for %gs (readiness 503, every "
                            "response with Connection: close), then a graceful stop", delay)
        return True

    def over(self, workers: Iterable[WorkerProcess]) -> bool:
        """Once a turn of the supervisor's loop while draining: every worker (one started
        meanwhile too) is told; True once the delay has passed."""
        if not self.active:
            return False
        for worker in workers:
            worker.slot.set_draining()
        return time.monotonic() >= self.until
