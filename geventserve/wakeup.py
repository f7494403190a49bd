"""The supervisor's sleep: a pipe that ends it, written by the signal handlers (through
signal.set_wakeup_fd) and by workers whose state changes, and the queue of signals to handle.
Sockets served from the same loop (--metrics-bind) are watched in the same select()."""

from __future__ import annotations

import os
import signal
from typing import Any, Iterable, List, Optional

from .process import original

MAX_QUEUED = 32


class Wakeup:
    """The wake-up pipe and the signal queue; the workers write to ``write_fd``."""

    def __init__(self) -> None:
        self.read_fd = self.write_fd = -1
        self._signals: List[int] = []
        self._watched: Optional[Any] = None  # prepare(readers, writers, timeout), handle(r, w)
        self._select = original("select", "select")  # the real one, even after --preload

    def install(self, signals: Iterable[int]) -> None:
        """Create the pipe and queue ``signals`` from now on (SIGCHLD only wakes up)."""
        self.read_fd, self.write_fd = os.pipe()
        for fd in (self.read_fd, self.write_fd):
            os.set_blocking(fd, False)
        os.set_inheritable(self.read_fd, False)
        signal.set_wakeup_fd(self.write_fd)
        self.queue(signals)

    def queue(self, signals: Iterable[int]) -> None:
        for sig in signals:
            signal.signal(sig, self._queue)

    def interrupt(self, signals: Iterable[int]) -> None:
        """Until queue() takes them back: these signals end what runs (KeyboardInterrupt)."""
        for sig in signals:
            signal.signal(sig, signal.default_int_handler)

    def _queue(self, sig: int, frame: Any) -> None:
        if sig != signal.SIGCHLD and len(self._signals) < MAX_QUEUED:
            self._signals.append(sig)

    def pop(self) -> Optional[int]:
        return self._signals.pop(0) if self._signals else None

    def watch(self, sockets: Any) -> None:
        """Serve ``sockets`` (metrics.endpoint.Endpoint) while sleeping."""
        self._watched = sockets

    def sleep(self, seconds: float) -> None:
        """Until a signal, a worker's note, or ``seconds``; what is watched is served."""
        readers, writers, watched = [self.read_fd], [], self._watched
        if watched is not None:
            seconds = watched.prepare(readers, writers, seconds)
        try:
            ready, writable, _ = self._select(readers, writers, [], seconds)
        except InterruptedError:
            return
        if watched is not None:
            watched.handle(ready, writable)
        if self.read_fd in ready:
            try:
                while os.read(self.read_fd, 4096):
                    pass
            except (BlockingIOError, InterruptedError):
                pass

    def close(self) -> None:
        """Signals no longer write to the pipe, and its reading end is closed (done in each
        worker just forked: the pipe is the supervisor's to read)."""
        signal.set_wakeup_fd(-1)
        os.close(self.read_fd)
