"""What every worker process does: load the app, report its state and heartbeat, serve, exit.

A worker talks to the supervisor through a small shared-memory ``Slot`` (heartbeat time, state,
a one-line failure message), a byte on the supervisor's wake-up pipe when its state changes, and
its exit code. It knows nothing of HTTP parsing (that is ``http.Service``): it accepts
connections and hands them over.
"""

from __future__ import annotations

import errno
import gc
import logging
import mmap
import os
import random
import signal
import struct
import sys
import traceback
from time import monotonic
from typing import Any, Callable, Iterable, List, Optional

from .. import hooks, logs, privileges, process
from ..exits import ExitCode
from ..loading import AppLoadError, load_app, prepare_path
from ..metrics import recorder
from ..settings import Config
from .watchdog import Watchdog

# accept(2) on Linux passes on a new connection's pending network errors (and EPERM when a
# firewall rule refuses it): the listener is fine, accept the next one as usual.
ACCEPT_RETRY = frozenset(
    getattr(errno, name) for name in ("EAGAIN", "ECONNABORTED", "EINTR", "EPROTO", "ENETDOWN",
                                      "ENOPROTOOPT", "EHOSTDOWN", "ENONET", "EHOSTUNREACH",
                                      "EOPNOTSUPP", "ENETUNREACH", "EPERM")
    if hasattr(errno, name))
OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

# Worker states in the slot.
BOOTING, READY, RETIRING, FAILED = 0, 1, 2, 3

# Why a worker asked to be replaced (RETIRING), in the slot.
RETIRE_REASONS = ("", "max_requests", "timeout", "memory", "lifetime")

_SLOT_SIZE = 4096
_BEAT = struct.Struct("d")  # last heartbeat (monotonic seconds); the state byte follows
_STATE_AT = 8
_LEAVES_QUEUE_AT = 9  # one byte: others accept on the listeners after this worker stops
_RETIRE_REASON_AT = 10  # one byte: an index in RETIRE_REASONS
_DRAINING_AT = 11  # one byte: the server is stopping or draining (readiness answers 503)
_RELOADS = struct.Struct("I")  # at offset 12: how many reloads the worker asked for
_MESSAGE_AT = 16


class Slot:
    """Shared memory between the supervisor and one worker, created before the fork;
    ``metrics``: the worker's block of metrics (metrics.layout) with --metrics-bind."""

    def __init__(self, metrics: Any = None) -> None:
        self._mem = mmap.mmap(-1, _SLOT_SIZE)
        self.metrics = metrics
        self.beat(BOOTING)

    def beat(self, state: Optional[int] = None) -> None:
        """The heartbeat, and a new state if given (the watchdog thread may set one while
        the loop beats: each write is its own)."""
        _BEAT.pack_into(self._mem, 0, monotonic())
        if state is not None:
            self._mem[_STATE_AT] = state

    @property
    def last_beat(self) -> float:
        return _BEAT.unpack_from(self._mem, 0)[0]

    @property
    def state(self) -> int:
        return self._mem[_STATE_AT]

    def retire(self, reason: str) -> None:
        """Mark the worker to be replaced (RETIRING), saying why (one of RETIRE_REASONS): by
        itself (--max-requests, a request cut at --timeout) or by the supervisor (recycling.py);
        no heartbeat is written (one written by the supervisor would hide a stuck worker)."""
        self._mem[_RETIRE_REASON_AT] = RETIRE_REASONS.index(reason)
        self._mem[_STATE_AT] = RETIRING

    @property
    def retire_reason(self) -> str:
        return RETIRE_REASONS[self._mem[_RETIRE_REASON_AT]]

    def fail(self, message: str) -> None:
        self._write_message(message)
        self.beat(FAILED)

    def ask_reload(self, message: str) -> None:
        """--reload: ask the supervisor for a reload (it compares the count with the last)."""
        self._write_message(message)
        _RELOADS.pack_into(self._mem, 12, self.reload_requests + 1)

    @property
    def reload_requests(self) -> int:
        return _RELOADS.unpack_from(self._mem, 12)[0]

    def _write_message(self, message: str) -> None:
        data = message.encode("utf-8", "replace")[:_SLOT_SIZE - _MESSAGE_AT - 1]
        self._mem[_MESSAGE_AT:_MESSAGE_AT + len(data) + 1] = data + b"\0"

    @property
    def message(self) -> str:
        end = self._mem.find(b"\0", _MESSAGE_AT)
        return self._mem[_MESSAGE_AT:end].decode("utf-8", "replace")

    @property
    def leaves_queue(self) -> bool:
        """Set by the supervisor before it stops a worker that others replace (HUP, TTOU,
        --max-requests, or the old side of a USR2): the connections queued on the listeners
        are left to those. Any other stop (a full one, TERM from outside) takes them first,
        or closing the listeners might reset them."""
        return bool(self._mem[_LEAVES_QUEUE_AT])

    def set_leaves_queue(self) -> None:
        self._mem[_LEAVES_QUEUE_AT] = 1

    @property
    def draining(self) -> bool:
        """Set by the supervisor when the whole server begins to stop (TERM, with or without
        --drain-delay; not the old side of a USR2): readiness answers 503, and the worker
        answers every request with Connection: close while it still accepts."""
        return bool(self._mem[_DRAINING_AT])

    def set_draining(self) -> None:
        self._mem[_DRAINING_AT] = 1

    def close(self) -> None:
        self._mem.close()
        if self.metrics is not None:
            self.metrics.close()


class Worker(hooks.HookNames):
    """A worker process; subclasses provide ``setup()`` (before the app loads) and ``serve()``."""

    #: gevent sets both: connections run concurrently inside one process
    multithread = False
    #: keep connections open between requests (the sync worker closes them)
    keepalive = True
    #: seconds between two heartbeats of the worker's event loop (None: it has none)
    tick: Optional[float] = None

    def __init__(self, config: Config, listeners: List[Any], slot: Slot, notify_fd: int,
                 app: Optional[Callable[..., Any]] = None, age: int = 0) -> None:
        self.config = config
        self.listeners = listeners
        self.slot = slot
        self.notify_fd = notify_fd
        self.app = app
        #: how many workers the supervisor had started before this one (gunicorn's age)
        self.age = age
        self.alive = True
        self.pid: Optional[int] = None  # known once forked
        self.ppid = os.getpid()  # created in the supervisor
        self.server: Any = None  # the supervisor object (for the worker_exit hook)
        self.service: Any = None
        #: the gevent worker's switch tracer (loopblock.LoopBlocks), when one is needed
        self.loop_blocks: Any = None
        self.heartbeat: Callable[[], None] = slot.beat  # and the metrics' status, if on
        #: with --metrics-bind: the requests counted since they were last added to the block
        self.request_counts: Optional[recorder.RequestCounts] = None
        self._exiting = False
        self._reopen_logs = False  # USR1 came while booting

    @classmethod
    def before_app_import(cls, in_supervisor: bool = False) -> None:
        """Prepare this process to import the app for workers of this class (the gevent
        worker patches the standard library). ``in_supervisor``: the --preload import, in the
        process that forks and reaps the workers."""

    # -- lifecycle --------------------------------------------------------------------------

    def run(self) -> int:
        """Entry point in the child process; returns the exit code (see exit())."""
        self.pid = os.getpid()
        code: int = ExitCode.OK
        try:
            code = self._run()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            logs.error_log.error("worker %d crashed:\n%s", self.pid, traceback.format_exc())
            code = 1
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except Exception:
                pass
        return code

    def exit(self, code: int) -> None:
        """End the worker process now, running the worker_exit hook once."""
        if not self._exiting:
            self._exiting = True
            if self.request_counts is not None:
                self.request_counts.flush()
            hooks.call(self.config, "worker_exit", self.server, self)
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(code)

    def run_forked(self, server: Any, mask: Any, unneeded: Iterable[Any]) -> None:
        """In the child just forked, its signals blocked: close ``unneeded`` (what the
        supervisor holds that is not this worker's), install this worker's handlers, then
        unblock the signals (``mask``); the post_fork hook; run, and exit."""
        for thing in unneeded:
            thing.close()
        self.install_boot_signals()
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self.pid = os.getpid()
        self.server = server
        hooks.call(self.config, "post_fork", server, self)
        self.exit(self.run())

    def install_boot_signals(self) -> None:
        """The signal handlers from the fork until the worker serves (the supervisor forks
        with its signals blocked and unblocks them once these are in place)."""
        for sig in (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU, signal.SIGUSR2, signal.SIGWINCH):
            signal.signal(sig, signal.SIG_IGN)  # the supervisor's signals
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            # While booting there is nothing to finish; QUIT would otherwise dump core.
            signal.signal(sig, lambda *args: os._exit(ExitCode.OK))
        # logrotate may have moved the log files while the app was imported: reopen them then.
        signal.signal(signal.SIGUSR1, self._reopen_when_serving)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)

    def _reopen_when_serving(self, *args: Any) -> None:
        self._reopen_logs = True

    def _run(self) -> int:
        process.set_title("worker", self.config.proc_name or self.config.wsgi_app or "app")
        try:
            privileges.become(self.config)  # --user, --group: before the app is imported
        except OSError as exc:
            self.slot.fail(f"worker cannot run as {privileges.describe(self.config)}: "
                           f"{exc.strerror}")
            return ExitCode.WORKER_BOOT
        try:
            self.setup()
        except Exception as exc:
            self.slot.fail(f"worker failed to start: {exc}")
            logs.error_log.debug("worker set-up failed", exc_info=True)
            return ExitCode.WORKER_BOOT
        if self.app is None:
            try:
                self.app = self.load()
            except AppLoadError as exc:
                self.slot.fail(str(exc))
                logs.error_log.debug("application load failed", exc_info=True)
                return ExitCode.APP_LOAD
        self.check_environment()
        config = self.config
        try:
            self.service = self.make_service()
        except ValueError as exc:  # TLS files that do not load
            self.slot.fail(str(exc))
            return ExitCode.WORKER_BOOT
        except Exception as exc:  # an ssl_context hook that fails
            self.slot.fail(f"worker failed to start: {type(exc).__name__}: {exc}")
            logs.error_log.debug("worker set-up failed", exc_info=True)
            return ExitCode.WORKER_BOOT
        if config.reload:
            from .reloader import Reloader

            Reloader(config.reload_extra_files, self.request_reload).start()
        self.install_signals()
        if self._reopen_logs:
            logs.reopen()
        hooks.call(config, "post_worker_init", self)
        # What is loaded now lives as long as the worker: leave it out of the collector's full
        # passes, which otherwise scan the whole app and pause every request (13 ms for Flask).
        gc.freeze()
        self.heartbeat = recorder.heartbeat(self.slot, self.service, self.tick)
        self.slot.beat(READY)
        self.notify()
        watchdog = Watchdog(
            lambda: self.slot.last_beat, config.timeout, self.service.describe_blocked,
            self.exit, fired=lambda: hooks.call(config, "worker_abort", self),
            interrupted=self._interrupted,
            blocks=self.loop_blocks if self.loop_blocks and self.loop_blocks.warn else None,
            silent_for=self._publish_silent if self.slot.metrics else None)
        watchdog.start()
        self.serve()
        return ExitCode.OK

    def load(self) -> Callable[..., Any]:
        config = self.config
        prepare_path(config.chdir, config.pythonpath)
        return load_app(config.wsgi_app)

    def notify(self) -> None:
        """Wake the supervisor: this worker's state changed."""
        try:
            os.write(self.notify_fd, b"\0")
        except OSError:
            pass

    def request_reload(self, changed: str) -> None:
        """--reload: a source file changed; the supervisor reloads all workers."""
        self.slot.ask_reload(f"{changed} changed")
        self.notify()

    def fast_stop(self, *args: Any) -> None:
        """INT or QUIT: stop at once."""
        hooks.call(self.config, "worker_int", self)
        self.exit(ExitCode.OK)

    def _interrupted(self) -> None:
        """The watchdog interrupted a request that blocked the event loop, which runs again
        (in the watchdog's thread): be replaced like a worker at --max-requests."""
        if self.slot.state == READY:
            logs.emergency(logging.WARNING, f"Worker (pid:{self.pid}) interrupted a request "
                           "that blocked its event loop: asking to be replaced")
            self.slot.retire("timeout")
            self.notify()

    def _publish_silent(self, silent: float) -> None:
        """The status of a worker whose loop does not beat (from the watchdog's thread)."""
        recorder.publish(self.slot.metrics, self.service, silent - (self.tick or 0.0))

    def retire(self) -> None:
        """Ask to be replaced (--max-requests): keep serving until the replacement is ready."""
        if self.slot.state == READY:
            logs.error_log.info("Worker (pid:%d) reached %d requests: asking to be replaced",
                                self.pid, self.service.requests)
            self.slot.retire("max_requests")
            self.notify()

    def last_to_accept(self) -> bool:
        """Whether this worker, stopping, is the last to accept on its listeners."""
        return not self.slot.leaves_queue or os.getppid() != self.ppid

    def log_cut_requests(self) -> None:
        """After the graceful timeout: say which requests are cut short, and how many
        connections taken over by the application (WebSockets: thousands, maybe) are closed."""
        grace = self.config.graceful_timeout
        for activity in self.service.in_flight():
            logs.error_log.warning("graceful timeout (%gs): cutting %s", grace, activity)
        taken_over = self.service.taken_over()
        if taken_over:
            logs.error_log.warning("graceful timeout (%gs): closing %d connection%s taken over "
                                   "by the application", grace, taken_over,
                                   "" if taken_over == 1 else "s")

    def setup(self) -> None:
        """Prepare the process before the application is imported."""

    def task_getter(self) -> Optional[Callable[[], Any]]:
        """What returns the task serving a connection, for deadline sweeps; None: socket
        timeouts instead."""
        return None

    def check_environment(self) -> None:
        """Warn about anything in the loaded process that will hurt serving."""

    def install_signals(self) -> None:
        """TERM (graceful stop), INT and QUIT (fast stop), USR1 (reopen logs)."""
        raise NotImplementedError

    def serve(self) -> None:
        raise NotImplementedError

    def make_service(self, **parts: Any) -> Any:
        """The HTTP side of this worker, complete when built; ``parts``: what a worker class
        adds (the gevent worker: how it waits between requests)."""
        from ..http.service import Service

        config = self.config
        request_limit = 0
        if config.max_requests:
            request_limit = config.max_requests + random.randint(0, config.max_requests_jitter)

        def pre_request(req: Any) -> None:
            hooks.call(config, "pre_request", self, req)

        def post_request(req: Any, environ: Any, resp: Any) -> None:
            hooks.call(config, "post_request", self, req, environ, resp)

        block, blocks = self.slot.metrics, self.loop_blocks
        if block is not None and self.request_counts is None:
            self.request_counts = recorder.RequestCounts(block, flush_each=True)
        counts = self.request_counts
        take_held = blocks.take if blocks is not None and blocks.per_request else None
        return Service(
            self.app, config, multiprocess=config.worker_count > 1,
            multithread=self.multithread, keepalive=self.keepalive,
            current_task=self.task_getter(), request_limit=request_limit,
            on_request_limit=self.retire,
            pre_request=pre_request if hooks.defined(config, "pre_request") else None,
            post_request=post_request if hooks.defined(config, "post_request") else None,
            ready=lambda: not self.slot.draining,
            observe=lambda access: recorder.observer(take_held, access,
                                                     logs.access_shows_loop_block()),
            tally=counts.tally if counts is not None else None,
            on_connection=recorder.connection_counter(block), **parts)
