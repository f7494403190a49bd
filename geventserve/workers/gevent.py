"""The gevent worker: patch the standard library first, then serve a greenlet per connection."""

from __future__ import annotations

import errno
import signal
from time import monotonic
from typing import Any

from .. import logs
from .base import Worker

# Modules that must be cooperative for an I/O-bound app to scale; checked after the app loads.
MUST_BE_PATCHED = ("socket", "ssl", "threading", "select", "time")
_ACCEPT_RETRY = (errno.EAGAIN, errno.ECONNABORTED, errno.EINTR, errno.EPROTO)
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)


def patch() -> None:
    """Make the standard library cooperative; must run before the app imports anything."""
    from gevent import monkey

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


class GeventWorker(Worker):
    """Serves thousands of connections cooperatively, one greenlet each, bounded by a pool."""

    multithread = True

    def setup(self) -> None:
        patch()
        import gevent

        gevent.reinit()  # after a raw fork the hub (if any) must start afresh in the child

    def check_environment(self) -> None:
        from gevent import monkey

        unpatched = [name for name in MUST_BE_PATCHED if not monkey.is_module_patched(name)]
        if unpatched:
            logs.error_log.warning(
                "not patched by gevent: %s; calls through them block the whole worker "
                "(was gevent's patching undone, or the module imported in an unusual way?)",
                ", ".join(unpatched))

    def serve(self) -> None:
        import gevent
        from gevent import socket as gsocket
        from gevent.event import Event
        from gevent.pool import Pool

        self.service = service = self.make_service(current_task=gevent.getcurrent)
        self.pool = Pool(self.config.worker_connections)
        self.stopped = Event()
        listeners = [gsocket.socket(s.family, s.type, s.proto, fileno=s.detach())
                     for s in self.listeners]
        self.listeners = listeners
        gevent.signal_handler(signal.SIGTERM, self.graceful_stop)
        gevent.signal_handler(signal.SIGINT, self.fast_stop)
        gevent.signal_handler(signal.SIGQUIT, self.fast_stop)
        service.on_request_limit = self.graceful_stop
        acceptors = [gevent.spawn(self._accept, listener) for listener in listeners]
        heartbeat = gevent.get_hub().loop.timer(0.0, self.heartbeat_interval)
        heartbeat.start(self._tick)
        self.stopped.wait()
        gevent.killall(acceptors)
        for listener in listeners:
            listener.close()
        service.stop()
        self.pool.join(timeout=30)
        heartbeat.stop()

    @property
    def heartbeat_interval(self) -> float:
        return 0.5

    def _tick(self) -> None:
        """Runs in the event loop: no beat means the loop is stuck. Also expires deadlines."""
        self.slot.beat()
        self.service.interrupt_expired(monotonic())

    def _accept(self, listener: Any) -> None:
        import gevent

        pool = self.pool
        serve = self.service.serve
        while self.alive:
            if pool.full():
                pool.wait_available()
                continue
            try:
                sock, peer = listener.accept()
            except OSError as exc:
                if not self.alive or exc.errno in (errno.EBADF, errno.EINVAL):
                    return
                if exc.errno in _ACCEPT_RETRY:
                    continue
                if exc.errno in _OUT_OF_RESOURCES:
                    logs.error_log.error("cannot accept connections: %s; raise the open-files "
                                         "limit (ulimit -n) or lower --worker-connections",
                                         exc.strerror)
                    gevent.sleep(0.5)
                    continue
                raise
            pool.spawn(serve, sock, peer, listener)

    def graceful_stop(self, *args: Any) -> None:
        self.alive = False
        self.stopped.set()

    def fast_stop(self, *args: Any) -> None:
        import os

        os._exit(0)
