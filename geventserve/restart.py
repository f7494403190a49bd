"""When the supervisor may fork the next worker: a little later when workers keep dying, and
ever later (up to 30 s) while new workers fail to boot after the app had loaded before."""

from __future__ import annotations

import time
from typing import List

CRASH_WINDOW = 5.0  # more than CRASH_LIMIT deaths within it slow respawning down
CRASH_LIMIT = 5
CRASH_PAUSE = 1.0  # seconds before the next fork then, and after a refused fork
FIRST_BOOT_RETRY = 0.5  # doubled at each boot failure in a row
MAX_BOOT_RETRY = 30.0


class RestartPolicy:
    """The back-off of worker restarts: no fork before ``not_before`` (monotonic time)."""

    def __init__(self) -> None:
        self.not_before = 0.0
        self._crashes: List[float] = []
        self._boot_failures = 0  # in a row, since the last worker that became ready

    def may_spawn(self, now: float) -> bool:
        return now >= self.not_before

    def crashed(self) -> None:
        """A serving worker died: replaced at once, unless workers keep dying."""
        now = time.monotonic()
        self._crashes = [t for t in self._crashes if now - t < CRASH_WINDOW] + [now]
        if len(self._crashes) > CRASH_LIMIT:
            self.not_before = now + CRASH_PAUSE

    def fork_failed(self) -> None:
        self.not_before = time.monotonic() + CRASH_PAUSE

    def boot_failed(self) -> float:
        """A new worker could not load the app (a database down at import time): the delay
        before the next try, doubled each time."""
        self._boot_failures += 1
        delay = min(FIRST_BOOT_RETRY * 2 ** (self._boot_failures - 1), MAX_BOOT_RETRY)
        self.not_before = time.monotonic() + delay
        return delay

    def worker_ready(self) -> None:
        self._boot_failures = 0
