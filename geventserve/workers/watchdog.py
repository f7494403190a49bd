"""The worker's watchdog: a real OS thread that notices a blocked event loop and says where.

The heartbeat is written by the worker's loop itself; if it stops for --timeout seconds the
watchdog logs the request being served and the Python stack of the main thread (the greenlet that
holds the loop), runs the worker_abort hook, then raises ``Interrupted`` into the blocked code:
the request gets a 500 (or a close), the loop runs again, and the worker asks to be replaced
gracefully, answering what was waiting. If the loop does not beat again within a short grace
(C code, or code that caught the exception), or no request was being served, it ends the process
so that the supervisor replaces it. A loop stuck in C code that holds the GIL stops the watchdog
too: the supervisor kills such a worker on its own.

With --loop-block-warn, the watchdog also samples the stack of a greenlet that holds the loop
for long (loopblock.LoopBlocks), while it holds it; with --metrics-bind, it publishes the status
of a worker whose loop is silent (which cannot publish it itself).
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import traceback
from time import monotonic
from typing import Any, Callable, Optional

from .. import logs
from ..exits import ExitCode
from ..http.errors import Interrupted
from ..process import original

# Taken when this module is imported (in the supervisor, before any gevent patching), so that
# the watchdog runs on a native thread and sleeps natively whatever the app does to the modules.
_start_new_thread = original("_thread", "start_new_thread")
_get_ident = original("_thread", "get_ident")
_sleep = original("time", "sleep")
SILENT = 1.0  # seconds without a heartbeat after which a loop is silent (it beats every 0.5 s)


def raise_in_thread(ident: int, exc: Optional[type]) -> bool:
    """Raise ``exc`` in the Python thread ``ident`` at its next bytecode (None: forget one
    not yet raised); False where the interpreter cannot do it."""
    try:
        set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc
    except AttributeError:  # not CPython
        return False
    return set_async_exc(ctypes.c_ulong(ident), ctypes.py_object(exc) if exc else None) == 1


class Watchdog:
    """Checks the heartbeat from a native thread: reports a timeout and interrupts the blocked
    request (or ends the process); samples long holds of the loop for ``blocks``."""

    def __init__(self, last_beat: Callable[[], float], timeout: float,  # in the main thread
                 describe: Callable[[object], Optional[str]],
                 end: Callable[[int], None], fired: Callable[[], None] = lambda: None,
                 interrupted: Callable[[], None] = lambda: None, blocks: Any = None,
                 silent_for: Optional[Callable[[float], None]] = None) -> None:
        self.last_beat = last_beat
        self.timeout = timeout
        self.describe = describe  # (main thread's frame) -> "GET /path (running 2.1s)" or None
        self.end = end  # ends the process with the exit code given
        self.fired = fired  # the loop has been blocked for `timeout` (the worker_abort hook)
        self.interrupted = interrupted  # a blocked request was interrupted, the loop runs
        self.blocks = blocks  # loopblock.LoopBlocks, with --loop-block-warn
        self.silent_for = silent_for  # (seconds) the loop has not beaten for a while
        self.main_ident = _get_ident()  # the native thread id: gevent's would be a greenlet's
        # Enough for a greenlet to answer its interrupted request and yield, but short of the
        # supervisor's own deadline (timeout + at least 1 s), which kills a worker that is
        # still silent.
        self.grace = min(max(timeout / 8, 0.5), 2.0)

    def start(self) -> None:
        if self.timeout <= 0 and self.blocks is None:
            return
        _start_new_thread(self._run, ())

    def _run(self) -> None:
        intervals = [min(max(self.timeout / 8, 0.05), 1.0)] if self.timeout > 0 else []
        if self.blocks is not None:
            intervals.append(self.blocks.warn / 4)
        interval = min(intervals)
        while True:
            _sleep(interval)
            if self.blocks is not None:
                self.blocks.sample(self._main_frame, self.describe)
            silent = monotonic() - self.last_beat()
            if self.silent_for is not None and silent > SILENT:
                self.silent_for(silent)
            if self.timeout > 0 and silent > self.timeout:
                self._timed_out(silent)

    def _main_frame(self) -> Any:
        return sys._current_frames().get(self.main_ident)

    def _timed_out(self, silent: float) -> None:
        frame = self._main_frame()
        activity = None
        if frame is not None:
            try:
                activity = self.describe(frame)
            except Exception:
                activity = None
        self.report(silent, frame, activity)
        del frame
        if self.blocks is not None:
            hold = self.blocks.holding()
            self.blocks.skip_started = hold[0] if hold else 0.0
        self.fired()
        if activity is not None and self._interrupt():
            self.interrupted()
            return
        try:
            self.end(ExitCode.WORKER_TIMEOUT)
        finally:
            os._exit(ExitCode.WORKER_TIMEOUT)

    def _interrupt(self) -> bool:
        """Raise Interrupted into the blocked code; whether the loop beat again in time."""
        fired_at = monotonic()
        if not raise_in_thread(self.main_ident, Interrupted):
            return False
        while monotonic() - fired_at < self.grace:
            _sleep(0.02)
            if self.last_beat() > fired_at:
                return True
        raise_in_thread(self.main_ident, None)  # not raised yet: it must not land later
        logs.emergency(logging.CRITICAL,
                       f"WORKER TIMEOUT (pid:{os.getpid()}): the blocked code could not be "
                       f"interrupted within {self.grace:g}s (C code, or code that catches "
                       "BaseException); ending the worker")
        return False

    def report(self, silent: float, frame: Any = None, activity: Optional[str] = None) -> None:
        stack = "(no Python frame: blocked in C code)"
        if frame is not None:
            stack = "".join(traceback.format_stack(frame)).rstrip()
        if activity:
            what = (f"serving {activity}; interrupting that request (it gets a 500, or a close "
                    "if its response had started), then the worker is replaced gracefully")
        else:
            what = "not serving a request; the worker is replaced"
        logs.emergency(logging.CRITICAL,
                       f"WORKER TIMEOUT (pid:{os.getpid()}): the event loop has been blocked for "
                       f"{silent:.1f}s (--timeout {self.timeout:g}), {what}. Stack of the "
                       f"blocked code:\n{stack}")
