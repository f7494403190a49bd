"""The sync worker: the same HTTP layer, one connection at a time, for CPU-bound apps.

Like gunicorn's sync worker it closes each connection after its response: an idle keep-alive
client would otherwise hold the whole process.
"""

from __future__ import annotations

import os
import select
import signal
from typing import Any

from .base import Worker


class SyncWorker(Worker):
    """Accepts, serves one request, closes; repeat."""

    keepalive = False

    def serve(self) -> None:
        service = self.make_service()
        self.service = service
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGTERM, self.graceful_stop)
        signal.signal(signal.SIGINT, self.fast_stop)
        signal.signal(signal.SIGQUIT, self.fast_stop)
        service.on_request_limit = self.graceful_stop
        listeners = self.listeners
        for listener in listeners:
            listener.setblocking(False)
        watched = list(listeners) + [wake_r]
        beat = self.slot.beat
        while self.alive:
            beat()
            try:
                ready = select.select(watched, [], [], 1.0)[0]
            except InterruptedError:
                continue
            for listener in ready:
                if listener is wake_r:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
                    continue
                try:
                    sock, peer = listener.accept()
                except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                    continue  # another worker took it
                sock.setblocking(True)
                service.serve(sock, peer, listener)
                beat()
                if not self.alive:
                    break

    def graceful_stop(self, *args: Any) -> None:
        self.alive = False
        self.service.stopping = True

    def fast_stop(self, *args: Any) -> None:
        os._exit(0)
