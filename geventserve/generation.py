"""Generations: the workers started from one config (its app, worker class and target count),
and what happens when they fail to boot; and the supervisor's record of each worker process.

A start makes the first generation; each reload (HUP, --reload) makes the next, which serves
once all its workers are ready. Until then a failed boot brings the previous one back.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from enum import Enum
from typing import Optional

from . import logs
from .settings import Config
from .workers import load_worker_class
from .workers.base import BOOTING, Slot, Worker


class OnBootFailure(Enum):
    """What a worker of a generation that fails to boot (exit 3 or 4, while booting) leads to."""

    EXIT = "exit"  # at start-up: the server stops with one line and the worker's exit code
    ROLL_BACK = "roll back"  # after a reload, until it serves: the previous generation returns
    RETRY = "retry"  # the app loaded before: keep serving, back off and try again


@dataclass(eq=False)
class Generation:
    """The workers started from one config; told apart by identity."""

    number: int
    config: Config
    worker_class: type
    target: int = 0  # the wanted number of workers (TTIN, TTOU change it)
    on_boot_failure: OnBootFailure = OnBootFailure.EXIT
    previous: Optional[Generation] = None  # what a failed boot rolls back to
    serving: bool = False  # all its workers have been ready once ("Ready:" was logged)

    @classmethod
    def first(cls, config: Config) -> Generation:
        """The generation a start makes; ImportError if the worker class does not import."""
        return cls(0, config, load_worker_class(config.worker_class))

    def next(self, config: Config) -> Generation:
        """The generation a reload makes from ``config``; ImportError as for first()."""
        return Generation(self.number + 1, config, load_worker_class(config.worker_class),
                          self.target, OnBootFailure.ROLL_BACK, previous=self)

    def on_boot_failure_of(self, generation: Generation) -> OnBootFailure:
        """What the failed boot of a worker of ``generation`` leads to, this one current: for
        an old generation's worker, nothing but a try later (its replacements are coming)."""
        return self.on_boot_failure if generation is self else OnBootFailure.RETRY

    def loaded(self) -> None:
        """One of its workers is ready: the app loads, so a later boot failure is transient."""
        if self.on_boot_failure is OnBootFailure.EXIT:
            self.on_boot_failure = OnBootFailure.RETRY

    def settle(self) -> None:
        """Nothing to roll back to any more (it serves, or a later reload took over): a boot
        failure is then a transient one, unless the app never loaded."""
        if self.on_boot_failure is OnBootFailure.ROLL_BACK:
            self.on_boot_failure = OnBootFailure.RETRY
        self.previous = None


@dataclass
class WorkerProcess:
    """A forked worker as the supervisor sees it (the hooks' ``server.workers`` values)."""

    pid: int
    slot: Slot
    generation: Generation
    started: float
    worker: Worker  # the object the worker runs (and the hooks receive)
    stopping_since: float = 0.0  # when it was told to stop (0: it was not)
    reloads_seen: int = 0  # --reload requests of this worker already acted upon
    was_ready: bool = False  # it has reported READY at least once

    def signal(self, sig: int) -> bool:
        """Send ``sig``; False if the process is gone already."""
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, sig: int) -> None:
        """Tell it to stop (TERM: gracefully, QUIT: at once, KILL) and note when."""
        if self.signal(sig):
            self.stopping_since = time.monotonic()

    def check_deadlines(self, now: float, timeout: float, stop_limit: float) -> None:
        """Kill it if it has been stopping for more than ``stop_limit`` seconds, or if its
        heartbeat stopped well past ``timeout`` (--timeout; 0: no check)."""
        if self.stopping_since:
            if now - self.stopping_since > stop_limit:
                logs.error_log.warning("Worker (pid:%d) did not stop within the graceful "
                                       "timeout: killing it", self.pid)
                self.stop(signal.SIGKILL)
            return
        silent = now - self.slot.last_beat
        # The worker's own watchdog reports at `timeout`; this covers a worker too stuck to
        # run it (C code holding the GIL, or a slow boot).
        if timeout and silent > timeout + max(1.0, timeout / 4):
            logs.error_log.critical("WORKER TIMEOUT (pid:%d): %s for %.1fs; killing it",
                                    self.pid, "booting" if self.slot.state == BOOTING
                                    else "silent", silent)
            self.stop(signal.SIGKILL)
            self.stopping_since = 0.0  # its death is a failure, logged as such

    def asked_reload(self) -> bool:
        """--reload: whether the worker saw a source file change since the last call."""
        requests = self.slot.reload_requests
        asked, self.reloads_seen = requests != self.reloads_seen, requests
        return asked
