"""The supervisor: binds the listeners, forks the workers, keeps their number, stops them.

One loop, in the style of gunicorn's arbiter: sleep on the signal pipe, handle queued signals,
reap dead workers, replace them.
"""

from __future__ import annotations

import errno
import os
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from . import logs, sockets
from .settings import Config
from .workers import load_worker_class
from .workers.base import APP_LOAD_ERROR, READY, WORKER_BOOT_ERROR, Slot

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGCHLD)
BIND_ERROR = 1


@dataclass
class WorkerProcess:
    pid: int
    slot: Slot
    started: float


def describe_exit(status: int) -> str:
    """'exit code 3' or 'signal SIGKILL' for a wait status."""
    if os.WIFSIGNALED(status):
        num = os.WTERMSIG(status)
        try:
            name = signal.Signals(num).name
        except ValueError:
            name = str(num)
        return f"signal {name}" + (" (core dumped)" if os.WCOREDUMP(status) else "")
    return f"exit code {os.WEXITSTATUS(status)}"


class Supervisor:
    """Owns the listening sockets and the worker processes."""

    def __init__(self, config: Config, app: Optional[Callable[..., Any]] = None) -> None:
        self.config = config
        self.app = app
        self.listeners: List[Any] = []
        self.workers: Dict[int, WorkerProcess] = {}
        self.signals: List[int] = []
        self.stopping = False
        self.exit_code = 0
        self.pid = os.getpid()
        self._wake_r = self._wake_w = -1

    # -- start-up ---------------------------------------------------------------------------

    def run(self) -> int:
        config = self.config
        try:
            self.worker_class = load_worker_class(config.worker_class)
        except ImportError as exc:
            logs.error_log.error("%s", exc)
            return WORKER_BOOT_ERROR
        try:
            for text in config.bind:
                self.listeners.append(sockets.bind(sockets.parse_address(text), config.backlog))
        except sockets.BindError as exc:
            logs.error_log.error("%s", exc)
            self._close_listeners()
            return BIND_ERROR
        logs.error_log.info("Starting geventserve %s", sys.modules["geventserve"].__version__)
        for listener in self.listeners:
            logs.error_log.info("Listening at: %s (%d)", sockets.describe(listener), self.pid)
        logs.error_log.info("Using worker: %s", config.worker_class)
        self._install_signals()
        try:
            self._spawn_missing()
            self._loop()
        finally:
            self._kill_all(signal.SIGKILL)
            self._close_listeners()
        return self.exit_code

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
            os.set_inheritable(fd, False)
        signal.set_wakeup_fd(self._wake_w)
        for sig in HANDLED_SIGNALS:
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, sig: int, frame: Any) -> None:
        if sig != signal.SIGCHLD:
            self.signals.append(sig)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._sleep(1.0)
            self._reap()
            while self.signals:
                sig = self.signals.pop(0)
                if sig == signal.SIGTERM:
                    self._stop(graceful=True)
                    return
                if sig in (signal.SIGINT, signal.SIGQUIT):
                    self._stop(graceful=False)
                    return
            if self.stopping:
                return
            self._spawn_missing()

    def _sleep(self, seconds: float) -> None:
        try:
            ready = select.select([self._wake_r], [], [], seconds)[0]
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._wake_r, 512):
                    pass
            except (BlockingIOError, InterruptedError):
                pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            except InterruptedError:
                continue
            if not pid:
                return
            worker = self.workers.pop(pid, None)
            if worker is None:
                continue
            self._worker_exited(worker, status)

    def _worker_exited(self, worker: WorkerProcess, status: int) -> None:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if worker.slot.state != READY and code in (APP_LOAD_ERROR, WORKER_BOOT_ERROR):
            if not self.stopping:
                logs.error_log.error("%s", worker.slot.message or "worker failed to boot")
                self.exit_code = code
                self.stopping = True
        elif not self.stopping:
            logs.error_log.error("Worker (pid:%d) died: %s; starting a new one", worker.pid,
                                 describe_exit(status))
        worker.slot.close()

    def _spawn_missing(self) -> None:
        while not self.stopping and len(self.workers) < self.config.worker_count:
            self._spawn()

    def _spawn(self) -> None:
        slot = Slot()
        pid = os.fork()
        if pid:
            self.workers[pid] = WorkerProcess(pid, slot, time.monotonic())
            logs.error_log.info("Booting worker with pid: %d", pid)
            return
        # -- in the child ------------------------------------------------------------------
        try:
            signal.set_wakeup_fd(-1)
            for sig in HANDLED_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            os.close(self._wake_r)
            os.close(self._wake_w)
            for other in self.workers.values():
                other.slot.close()
            worker = self.worker_class(self.config, self.listeners, slot, app=self.app)
            worker.run()
        finally:
            os._exit(WORKER_BOOT_ERROR)

    # -- stopping ---------------------------------------------------------------------------

    def _stop(self, graceful: bool) -> None:
        self.stopping = True
        self._close_listeners()
        sig = signal.SIGTERM if graceful else signal.SIGQUIT
        limit = getattr(self.config, "graceful_timeout", 30.0) if graceful else 1.0
        self._kill_all(sig)
        deadline = time.monotonic() + limit
        while self.workers and time.monotonic() < deadline:
            self._sleep(0.1)
            self._reap()
        if self.workers:
            logs.error_log.warning("%d worker(s) still running after %gs: killing them",
                                   len(self.workers), limit)
            self._kill_all(signal.SIGKILL)
            time.sleep(0.1)
            self._reap()
        logs.error_log.info("Shutting down")

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                self.workers.pop(pid, None)

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            try:
                sockets.close_listener(listener)
            except OSError as exc:
                if exc.errno != errno.EBADF:
                    raise
        self.listeners = []
