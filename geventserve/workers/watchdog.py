"""The worker's watchdog: a real OS thread that notices a blocked event loop and says where.

The heartbeat is written by the worker's loop itself; if it stops for --timeout seconds the
watchdog logs the request being served and the Python stack of the main thread (the greenlet that
holds the loop), then ends the process so the supervisor replaces it. A loop stuck in C code that
holds the GIL stops the watchdog too: the supervisor kills such a worker on its own.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from time import monotonic
from typing import Callable, Optional

from .. import logs
from ..exits import ExitCode
from ..process import original

# Taken when this module is imported (in the supervisor, before any gevent patching), so that
# the watchdog runs on a native thread and sleeps natively whatever the app does to the modules.
_start_new_thread = original("_thread", "start_new_thread")
_get_ident = original("_thread", "get_ident")
_sleep = original("time", "sleep")


class Watchdog:
    """Checks the heartbeat from a native thread; reports and exits when it is too old."""

    def __init__(self, last_beat: Callable[[], float], timeout: float,  # in the main thread
                 describe: Callable[[object], Optional[str]],
                 end: Callable[[int], None]) -> None:
        self.last_beat = last_beat
        self.timeout = timeout
        self.describe = describe  # (main thread's frame) -> "GET /path (running 2.1s)" or None
        self.end = end  # ends the process with the exit code given
        self.main_ident = _get_ident()  # the native thread id: gevent's would be a greenlet's

    def start(self) -> None:
        if self.timeout <= 0:
            return
        _start_new_thread(self._run, ())

    def _run(self) -> None:
        interval = min(max(self.timeout / 8, 0.05), 1.0)
        while True:
            _sleep(interval)
            silent = monotonic() - self.last_beat()
            if silent > self.timeout:
                self.report(silent)
                try:
                    self.end(ExitCode.WORKER_TIMEOUT)
                finally:
                    os._exit(ExitCode.WORKER_TIMEOUT)

    def report(self, silent: float) -> None:
        frame = sys._current_frames().get(self.main_ident)
        activity = None
        stack = "(no Python frame: blocked in C code)"
        if frame is not None:
            try:
                activity = self.describe(frame)
            except Exception:
                activity = None
            stack = "".join(traceback.format_stack(frame)).rstrip()
        what = f"serving {activity}" if activity else "not serving a request"
        logs.emergency(logging.CRITICAL,
                       f"WORKER TIMEOUT (pid:{os.getpid()}): the event loop has been blocked for "
                       f"{silent:.1f}s (--timeout {self.timeout:g}), {what}; the worker is "
                       f"replaced. Stack of the blocked code:\n{stack}")
