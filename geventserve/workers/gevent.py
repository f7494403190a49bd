"""The gevent worker: patch the standard library first, then serve a greenlet per connection."""

from __future__ import annotations

import errno
import gc
import os
import signal
from typing import Any, Callable, List, Optional

from .. import audit, logs
from ..metrics import recorder
from .base import ACCEPT_RETRY, OUT_OF_RESOURCES, Worker
from .collector import Collector

# Modules that must be cooperative for an I/O-bound app to scale; checked after the app loads.
MUST_BE_PATCHED = ("socket", "ssl", "threading", "select", "time")
TICK = 0.5  # seconds between heartbeats (and deadline sweeps)
# Connections a sweep interrupts before the event loop runs again: each one interrupted runs
# at once (a 408 sent, say), and a wave of slow clients timing out together would otherwise
# hold the loop for as long as all of them take.
SWEEP_BATCH = 32
GC_THRESHOLD = 10_000  # Python's default is 700 allocations


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


class ReadinessOrder:
    """Between keep-alive requests: wait until a socket is readable, then take turns in the
    order the sockets became readable.

    libev runs the watchers that fire together in the reverse of that order, so a connection
    answered first in one round tends to be answered last in the next; its latency swings
    between nothing and two rounds (p99 twice the median under load). So the socket's watcher
    does not wake its greenlet: in the event loop it queues the greenlet's Waiter, and one
    callback per loop turn resumes those first-come, first-served (two greenlet switches per
    wait, as a plain recv() takes).
    """

    def __init__(self) -> None:
        import gevent
        from gevent.hub import Waiter

        self._loop = gevent.get_hub().loop
        self._woken: List[Any] = []
        woken, schedule, resume = self._woken, self._loop.run_callback, self._resume

        class Turn(Waiter):  # type: ignore[misc, valid-type]
            """A greenlet's place in the queue. The watcher's callback is a method of it, so
            gevent can still interrupt the wait (socket closed elsewhere: callback.__self__
            .throw())."""

            __slots__ = ()

            def readable(self) -> None:
                woken.append(self)
                if len(woken) == 1:
                    schedule(resume)
        self._turn = Turn
        self._waiter = Waiter

    def wait(self, sock: Any) -> None:
        try:
            watcher = sock._read_event
        except AttributeError:  # another gevent: its public (slower) equivalent
            from gevent.socket import wait_read

            wait_read(sock.fileno())
            self._take_turn()
            return
        turn = self._turn()
        watcher.start(turn.readable)
        try:
            turn.get()  # if a deadline interrupts us here, a later switch() is a no-op
        finally:
            watcher.stop()

    def wait_tls(self, sock: Any) -> None:
        if sock.pending():  # decrypted bytes already buffered: readable without the socket
            self._take_turn()
        else:
            self.wait(sock)

    def _take_turn(self) -> None:
        waiter = self._waiter()
        woken = self._woken
        woken.append(waiter)
        if len(woken) == 1:
            self._loop.run_callback(self._resume)
        waiter.get()

    def _resume(self) -> None:
        woken = self._woken[:]  # the callbacks ran in the reverse of the order they fired
        self._woken.clear()
        for waiter in reversed(woken):
            waiter.switch(None)


class GeventWorker(Worker):
    """Serves thousands of connections cooperatively, one greenlet each, bounded by a pool."""

    multithread = True
    tick = TICK

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sweep_timer: Any = None  # the rest of a sweep, soon (see _sweep)
        self.loop_turns: Any = None  # with --metrics-bind: loopturns.LoopTurns
        #: made in the supervisor: the first worker of its generation runs the start-up audit
        self.audits = audit.first_worker_of(self.config)

    @classmethod
    def before_app_import(cls, in_supervisor: bool = False) -> None:
        patch(for_supervisor=in_supervisor)

    def setup(self) -> None:
        patch()
        import gevent

        gevent.reinit()  # after a raw fork the hub (if any) must start afresh in the child
        # With many requests in flight, their objects outlive the collector's young passes
        # and are scanned again and again; a larger first threshold spares most of that
        # (a post_worker_init hook may set other values).
        gc.set_threshold(GC_THRESHOLD, *gc.get_threshold()[1:])

    def task_getter(self) -> Optional[Callable[[], Any]]:
        import gevent

        return gevent.getcurrent

    def make_service(self, **parts: Any) -> Any:
        from ..http.websocket import WebSocketOffer

        config = self.config
        per_request = logs.access_shows_loop_block()  # %(K)s: switches are timed
        if config.loop_block_warn or per_request:
            import gevent
            from greenlet import getcurrent

            from .loopblock import LoopBlocks

            self.loop_blocks = LoopBlocks(gevent.get_hub(), getcurrent, config.loop_block_warn,
                                          per_request)
            self.loop_blocks.install()
        observe_turn = recorder.turn_observer(self.slot.metrics)
        if observe_turn is not None:
            import gevent

            from .loopturns import LoopTurns

            # counted per request, added to the shared block once per turn of the loop
            self.request_counts = recorder.RequestCounts(self.slot.metrics)
            self.loop_turns = LoopTurns(gevent.get_hub().loop, observe_turn,
                                        at_end=self.request_counts.flush)
            self.loop_turns.install()
        # Whenever gevent-websocket is importable (python-engineio then reads nothing else).
        return super().make_service(readiness=ReadinessOrder(),
                                    websockets=WebSocketOffer.load(self.app), **parts)

    def check_environment(self) -> None:
        from gevent import monkey

        unpatched = [name for name in MUST_BE_PATCHED if not monkey.is_module_patched(name)]
        if unpatched:
            logs.error_log.warning(
                "not patched by gevent: %s; calls through them block the whole worker "
                "(was gevent's patching undone, or the module imported in an unusual way?)",
                ", ".join(unpatched))
        if self.audits:
            audit.warn()

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
        self.pool = Pool(self.config.worker_connections)
        self.listeners = [gsocket.socket(s.family, s.type, s.proto, fileno=s.detach())
                          for s in self.listeners]
        for listener in self.listeners:
            service.add_listener(listener)
        acceptors = [gevent.spawn(self._accept, listener) for listener in self.listeners]
        ticker = gevent.get_hub().loop.timer(0.0, TICK)
        ticker.start(self._tick)
        collector = Collector(lambda: len(service.connections))
        collector.start()
        self.stop_requested.wait()
        # -- graceful stop: no new connections, idle ones closed, busy ones finish
        self.alive = False
        gevent.killall(acceptors)
        self._drain_and_close_listeners()
        service.stop()
        if not self.pool.join(timeout=self.config.graceful_timeout):
            self.log_cut_requests()
        ticker.stop()
        collector.stop()

    def _tick(self) -> None:
        """Runs in the event loop: no beat means the loop is stuck. Also expires deadlines,
        and reports the last request that held the loop too long."""
        self.heartbeat()
        self._sweep()
        if self.slot.draining and not self.service.state.closing:
            self.service.drain()  # --drain-delay: the supervisor says the server is leaving
        if self.loop_blocks is not None:
            report = self.loop_blocks.report_due()
            if report:
                logs.error_log.warning("%s", report)
        if os.getppid() != self.ppid:
            logs.error_log.warning("the supervisor (pid:%d) is gone: stopping", self.ppid)
            self.stop_requested.set()

    def _sweep(self) -> None:
        """Interrupt the connections past their deadlines, SWEEP_BATCH at a time, the event
        loop serving the others in between."""
        if self.service.interrupt_expired(SWEEP_BATCH):
            timer = self._sweep_timer
            if timer is None:
                import gevent

                timer = self._sweep_timer = gevent.get_hub().loop.timer(0.001)
            if not timer.active:
                timer.start(self._sweep)

    def _accept(self, listener: Any) -> None:
        import gevent

        pool = self.pool
        serve = self.service.serve
        while self.alive:
            if pool.full():
                self._make_room(listener)
                continue
            try:
                sock, peer = listener.accept()
            except OSError as exc:
                if not self.alive or exc.errno in (errno.EBADF, errno.EINVAL):
                    return
                if exc.errno in ACCEPT_RETRY:
                    continue
                if exc.errno in OUT_OF_RESOURCES:
                    logs.error_log.error("cannot accept connections: %s; raise the open-files "
                                         "limit (ulimit -n) or lower --worker-connections",
                                         exc.strerror)
                    gevent.sleep(0.5)
                    continue
                # A worker that no longer accepts must not look healthy: it stops (finishing
                # what it serves) and the supervisor starts a fresh one.
                logs.error_log.error("cannot accept connections: %s; this worker stops and is "
                                     "replaced", exc)
                self.stop_requested.set()
                return
            pool.spawn(serve, sock, peer, listener)

    def _make_room(self, listener: Any) -> None:
        """The pool is full: once a client waits to connect on ``listener``, have the service
        close a connection that can spare its place (http/eviction.py; from the event loop,
        where connections are interrupted), then wait for a place."""
        import gevent
        from gevent.socket import wait_read

        try:
            wait_read(listener.fileno(), timeout=TICK)
        except (OSError, ValueError):  # nobody waits yet (or the listener is closing)
            return
        if self.pool.full():
            gevent.get_hub().loop.run_callback(self.service.make_room)
            self.pool.wait_available(timeout=TICK)

    def _drain_and_close_listeners(self) -> None:
        """Close the listeners; when no one else will accept on them, take the connections
        already queued first (closing would reset those)."""
        serve = self.service.serve
        take = self.last_to_accept()
        for listener in self.listeners:
            listener.settimeout(0.0)
            while take and not self.pool.full():
                try:
                    sock, peer = listener.accept()
                except OSError:
                    break
                sock.settimeout(None)
                self.pool.spawn(serve, sock, peer, listener)
            listener.close()
