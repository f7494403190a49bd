"""Recycling by memory and by age (--max-worker-memory, --max-worker-lifetime): which serving
worker the supervisor replaces next, and why.

A worker picked here is marked RETIRING in its slot, as one that reached --max-requests marks
itself: the supervisor starts its replacement and stops it only once the replacement is ready,
so capacity never dips. One worker is recycled at a time (a worker still leaving holds the next
one back): replacing several that grew together at once would need their memory twice over,
just when memory is short.
"""

from __future__ import annotations

import os
import random
from typing import Dict, Iterable, Optional, Tuple

from . import logs
from .generation import Generation, WorkerProcess
from .settings import Config
from .workers.base import READY, RETIRING

CHECK_INTERVAL = 1.0  # seconds between two reads of the workers' memory
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def resident_bytes(pid: int) -> Optional[int]:
    """The resident memory of process ``pid`` (/proc/PID/statm), None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return None


class Recycling:
    """Picks the workers to replace; remembers each one's lifetime (jitter drawn once)."""

    def __init__(self) -> None:
        self._next_check = 0.0
        self._lifetimes: Dict[int, float] = {}  # pid -> seconds it may run
        self._marked: Dict[int, str] = {}  # pid -> why it is being replaced (memory, lifetime)

    def check(self, generation: Generation, workers: Iterable[WorkerProcess],
              now: float) -> None:
        """Mark at most one serving worker of ``generation`` for replacement, once a second."""
        config = generation.config
        memory_limit = config.max_worker_memory * MIB
        lifetime = config.max_worker_lifetime
        if (not memory_limit and not lifetime) or now < self._next_check:
            return
        self._next_check = now + CHECK_INTERVAL
        workers = list(workers)
        alive = {w.pid for w in workers}
        for table in (self._lifetimes, self._marked):
            for pid in [pid for pid in table if pid not in alive]:
                del table[pid]
        for worker in workers:
            if worker.pid in self._marked and worker.slot.state != RETIRING:
                worker.slot.retire(self._marked[worker.pid])  # its own state written since
        if any(w.stopping_since or w.slot.state == RETIRING for w in workers):
            return  # one at a time: the last one replaced has not left yet
        for worker in workers:
            if worker.generation is not generation or worker.slot.state != READY:
                continue
            found = self._reason(worker, memory_limit, lifetime, config, now)
            if found is not None:
                kind, reason = found
                logs.error_log.info("Worker (pid:%d) %s: replacing it", worker.pid, reason)
                self._marked[worker.pid] = kind
                worker.slot.retire(kind)
                return

    def _reason(self, worker: WorkerProcess, memory_limit: int, lifetime: float, config: Config,
                now: float) -> Optional[Tuple[str, str]]:
        """("memory" or "lifetime", what the log says) if ``worker`` is to be replaced."""
        if memory_limit:
            rss = resident_bytes(worker.pid)
            if rss is not None and rss > memory_limit:
                return "memory", (f"uses {rss / MIB:.0f} MiB of memory, past "
                                  f"--max-worker-memory {config.max_worker_memory}")
        if lifetime:
            limit = self._lifetimes.get(worker.pid)
            if limit is None:
                jitter = config.max_worker_lifetime_jitter
                limit = self._lifetimes[worker.pid] = lifetime + random.uniform(0, jitter)
            age = now - worker.started
            if age > limit:
                return "lifetime", (f"has run {age:.0f}s, past --max-worker-lifetime "
                                    f"{lifetime:g}s (+{limit - lifetime:.0f}s of jitter)")
        return None
