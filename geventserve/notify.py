"""systemd's notify protocol (Type=notify): READY=1 once the workers serve, RELOADING=1 and READY=1
around a reload (HUP), STOPPING=1, STATUS= with the number of workers serving, and MAINPID= with
READY=1, so that a supervisor started by USR2 takes over as the service's main process.

Each message is one datagram to $NOTIFY_SOCKET (a path, or an abstract name written @name), sent
without blocking from a socket made for it: a systemd that does not read is never waited for, and
no descriptor is left for the workers to inherit.
"""

from __future__ import annotations

import os
import socket
import time
from typing import Any, Optional

from . import logs
from .process import original
from .workers.base import READY

NOTIFY_SOCKET = "NOTIFY_SOCKET"


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds, as systemd >= 253 wants with RELOADING=1."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class Notifier:
    """Tells systemd how the server is doing; does nothing without $NOTIFY_SOCKET."""

    def __init__(self, address: Optional[str]) -> None:
        self.address = address or None
        self._target = ("\0" + address[1:]) if address and address[0] == "@" else address
        self._ready = False  # READY=1 sent (and not taken back by RELOADING=1)
        self._announced = False  # MAINPID= sent
        self._status = ""
        self._stopping = False
        self._handed_over = False

    @classmethod
    def from_environ(cls) -> Notifier:
        return cls(os.environ.get(NOTIFY_SOCKET))

    def send(self, *fields: str) -> None:
        if self.address is None:
            return
        # The real socket even after --preload patched the module: this is no greenlet.
        sock = original("socket", "socket")(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.sendto("\n".join(fields).encode(), self._target)
        except OSError as exc:
            logs.error_log.debug("cannot notify systemd at %s: %s", self.address, exc)
        finally:
            sock.close()

    def reloading(self) -> None:
        """HUP: READY=1 follows once the new workers serve, or the reload failed."""
        if self._stopping or self._handed_over:
            return
        self._ready = False
        self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=Reloading")

    def update(self, server: Any) -> None:
        """Once a turn of the supervisor's loop (``server``: the Supervisor): say what changed."""
        if self.address is None or self._stopping:
            return
        handed_over = bool(server.reexec.pid)  # a USR2 supervisor runs: it speaks for both
        if handed_over != self._handed_over:
            self._handed_over = handed_over
            if not handed_over:  # it exited: this one is the main process again
                self._ready = self._announced = False
        if handed_over:
            return
        if server.stopping is not None or server.drain.active:
            self._stopping = True
            self.send("STOPPING=1", "STATUS=Stopping")
            return
        if server.generation is None or not server.generation.serving:
            return
        serving = sum(1 for w in server.workers.values()
                      if w.slot.state == READY and not w.stopping_since)
        status = f"STATUS=Serving with {serving} worker(s)"
        fields = []
        if not self._ready:
            fields.append("READY=1")
            self._ready = True
        if not self._announced:
            fields.append(f"MAINPID={os.getpid()}")
            self._announced = True
        if status != self._status or fields:
            self._status = status
            self.send(*fields, status)
