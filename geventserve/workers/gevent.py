"""The gevent worker: patch the standard library first, then serve a greenlet per connection."""

from __future__ import annotations

import errno
import os
import signal
from time import monotonic
from typing import Any, Callable, Optional

from .. import logs
from .base import Worker

# Modules that must be cooperative for an I/O-bound app to scale; checked after the app loads.
MUST_BE_PATCHED = ("socket", "ssl", "threading", "select", "time")
_ACCEPT_RETRY = (errno.EAGAIN, errno.ECONNABORTED, errno.EINTR, errno.EPROTO)
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
TICK = 0.5  # seconds between heartbeats (and deadline sweeps)


def patch(for_supervisor: bool = False) -> None:
    """Make the standard library cooperative; must run before the app imports anything.

    The supervisor (with --preload) leaves os and signal alone: it forks and reaps children
    itself. Its workers patch those two after the fork.
    """
    from gevent import monkey

    if for_supervisor:
        if not monkey.is_module_patched("socket"):
            monkey.patch_all(os=False, signal=False)
    else:
        if not monkey.is_module_patched("socket"):
            monkey.patch_all()
        else:
            monkey.patch_os()
            monkey.patch_signal()


def wait_readable(sock: Any) -> None:
    """Block the calling greenlet until ``sock`` is readable (or its deadline interrupts it)."""
    sock._wait(sock._read_event)  # gevent's own wait: the one its recv() uses after EAGAIN


def wait_readable_tls(sock: Any) -> None:
    if not sock.pending():  # decrypted bytes already buffered: readable without the socket
        sock._wait(sock._read_event)


class GeventWorker(Worker):
    """Serves thousands of connections cooperatively, one greenlet each, bounded by a pool."""

    multithread = True

    def setup(self) -> None:
        patch()
        import gevent

        gevent.reinit()  # after a raw fork the hub (if any) must start afresh in the child

    def task_getter(self) -> Optional[Callable[[], Any]]:
        import gevent

        return gevent.getcurrent

    def check_environment(self) -> None:
        from gevent import monkey

        unpatched = [name for name in MUST_BE_PATCHED if not monkey.is_module_patched(name)]
        if unpatched:
            logs.error_log.warning(
                "not patched by gevent: %s; calls through them block the whole worker "
                "(was gevent's patching undone, or the module imported in an unusual way?)",
                ", ".join(unpatched))

    def install_signals(self) -> None:
        import gevent
        from gevent.event import Event

        self.stop_requested = Event()
        gevent.signal_handler(signal.SIGTERM, self.stop_requested.set)
        gevent.signal_handler(signal.SIGINT, self.fast_stop)
        gevent.signal_handler(signal.SIGQUIT, self.fast_stop)
        gevent.signal_handler(signal.SIGUSR1, logs.reopen)

    def serve(self) -> None:
        import gevent
        from gevent import socket as gsocket
        from gevent.pool import Pool

        service = self.service
        service.wait_readable = wait_readable_tls if service.tls_context else wait_readable
        self.pool = Pool(self.config.worker_connections)
        self.listeners = [gsocket.socket(s.family, s.type, s.proto, fileno=s.detach())
                          for s in self.listeners]
        for listener in self.listeners:
            service.add_listener(listener)
        acceptors = [gevent.spawn(self._accept, listener) for listener in self.listeners]
        ticker = gevent.get_hub().loop.timer(0.0, TICK)
        ticker.start(self._tick)
        self.stop_requested.wait()
        # -- graceful stop: no new connections, idle ones closed, busy ones finish
        self.alive = False
        gevent.killall(acceptors)
        self._drain_and_close_listeners()
        service.stop()
        if not self.pool.join(timeout=self.config.graceful_timeout):
            self.log_cut_requests()
        ticker.stop()

    def _tick(self) -> None:
        """Runs in the event loop: no beat means the loop is stuck. Also expires deadlines."""
        self.slot.beat()
        self.service.interrupt_expired(monotonic())
        if os.getppid() != self.ppid:
            logs.error_log.warning("the supervisor (pid:%d) is gone: stopping", self.ppid)
            self.stop_requested.set()

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

    def _drain_and_close_listeners(self) -> None:
        """Take the connections already queued on the listeners, then close them: closing a
        listener with queued connections would reset those."""
        serve = self.service.serve
        for listener in self.listeners:
            listener.settimeout(0.0)
            while not self.pool.full():
                try:
                    sock, peer = listener.accept()
                except OSError:
                    break
                sock.settimeout(None)
                self.pool.spawn(serve, sock, peer, listener)
            listener.close()
