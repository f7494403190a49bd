"""The sync worker: the same HTTP layer, one connection at a time, for CPU-bound apps.

Like gunicorn's sync worker it closes each connection after its response: an idle keep-alive
client would otherwise hold the whole process.
"""

from __future__ import annotations

import os
import select
import signal
import time
from typing import Any

from .. import logs
from .base import ACCEPT_RETRY, OUT_OF_RESOURCES, Worker


class SyncWorker(Worker):
    """Accepts, serves one request, closes; repeat."""

    keepalive = False

    def install_signals(self) -> None:
        self.wake_r, wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)  # so that select() returns at once on a signal
        signal.signal(signal.SIGTERM, self.graceful_stop)
        signal.signal(signal.SIGINT, self.fast_stop)
        signal.signal(signal.SIGQUIT, self.fast_stop)
        signal.signal(signal.SIGUSR1, lambda *args: logs.reopen())
        signal.signal(signal.SIGALRM, self._graceful_timeout)

    def serve(self) -> None:
        wake_r = self.wake_r
        listeners = self.listeners
        for listener in listeners:
            listener.setblocking(False)
            self.service.add_listener(listener)
        watched = list(listeners) + [wake_r]
        beat = self.heartbeat
        while self.alive:
            beat()
            if os.getppid() != self.ppid:
                logs.error_log.warning("the supervisor (pid:%d) is gone: stopping", self.ppid)
                break
            try:
                ready = select.select(watched, [], [], 0.5)[0]
            except InterruptedError:
                continue
            for listener in ready:
                if not self.alive:
                    break  # TERM came with the wake-up: accept nothing more here
                if listener is wake_r:
                    try:
                        os.read(wake_r, 512)
                    except BlockingIOError:
                        pass
                    continue
                self._serve_one(listener)
                beat()
        # When no one else will accept on the listeners, closing them with connections queued
        # would reset those: take them first (only those: the listener is closed before any
        # of them is served), then serve them. Otherwise they are left to the other workers.
        queued = []
        take = self.last_to_accept()
        for listener in listeners:
            while take:
                try:
                    sock, peer = listener.accept()
                except OSError:
                    break
                queued.append((sock, peer, listener))
            listener.close()
        for sock, peer, listener in queued:
            sock.setblocking(True)
            self.service.serve(sock, peer, listener)

    def _serve_one(self, listener: Any) -> None:
        try:
            sock, peer = listener.accept()
        except OSError as exc:
            if exc.errno in ACCEPT_RETRY:  # another worker took it, or a network error
                return
            if exc.errno in OUT_OF_RESOURCES:
                logs.error_log.error("cannot accept connections: %s; raise the open-files "
                                     "limit (ulimit -n)", exc.strerror)
                time.sleep(0.5)  # the connection stays queued: do not spin on it
                return
            logs.error_log.error("cannot accept connections: %s; this worker stops and is "
                                 "replaced", exc)
            self.alive = False
            return
        sock.setblocking(True)
        self.service.serve(sock, peer, listener)

    def graceful_stop(self, *args: Any) -> None:
        self.alive = False
        self.service.stop()
        if self.config.graceful_timeout:
            signal.setitimer(signal.ITIMER_REAL, self.config.graceful_timeout)

    def _graceful_timeout(self, *args: Any) -> None:
        self.log_cut_requests()
        self.exit(0)
