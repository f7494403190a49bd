"""The supervisor: owns the listeners, forks the workers, keeps them alive, reloads, stops.

One loop, in the style of gunicorn's arbiter: sleep until a signal or a worker wakes it up, reap
dead workers, handle the queued signals (one method each, listed in HANDLERS), kill workers
whose heartbeat stopped, then bring the workers to the wanted shape. A stop runs in the same
loop, so that INT or QUIT during a graceful stop still makes it a fast one.

Workers belong to a generation (generation.py). A reload (HUP) starts a new generation; a
worker that asks to be replaced (--max-requests) leaves like an old-generation worker: it is
told to stop (TERM, graceful) only once enough current workers are ready, so capacity never
dips. A worker that is one too many (TTOU) is told to stop at once: one still starting if there
is one, else the oldest. Workers past --max-worker-memory or --max-worker-lifetime are marked to
be replaced the same way (recycling.py). A TERM with --drain-delay first drains (drain.py);
systemd hears how it goes (notify.py).
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional

from . import hooks, logs, privileges, process, sockets, statsd
from .config import ConfigError, ConfigSource
from .drain import Drain
from .exits import ExitCode
from .generation import Generation, OnBootFailure, WorkerProcess
from .metrics.collect import Metrics, NoMetrics
from .notify import Notifier
from .recycling import Recycling
from .reexec import Reexec
from .restart import RestartPolicy
from .settings import Config, SettingError
from .startup import (
    StartupError,
    apply_environment,
    check_open_files,
    check_pidfile,
    log_start,
    preload,
    use_logs_and_environment,
    write_pidfile,
)
from .wakeup import Wakeup
from .workers.base import BOOTING, FAILED, READY, RETIRING, Slot

KILL_GRACE = 5.0  # seconds past a deadline before a worker that did not stop is killed
FAST_STOP_LIMIT = 2.0  # seconds the workers have to end on INT or QUIT
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
BOOT_FAILURES = (ExitCode.APP_LOAD, ExitCode.WORKER_BOOT)


@dataclass
class Stop:
    """A stop under way: graceful (TERM: requests finish) or fast (INT, QUIT), and when the
    workers still running are killed (then, 2 s later, the supervisor leaves anyway)."""

    graceful: bool
    limit: float  # seconds the workers have
    deadline: float
    quiet: bool = False  # a start that failed: no "Shutting down" line
    killed: bool = False

    @classmethod
    def begin(cls, graceful: bool, graceful_timeout: float, quiet: bool) -> Stop:
        limit = graceful_timeout + KILL_GRACE if graceful else FAST_STOP_LIMIT
        return cls(graceful, limit, time.monotonic() + limit, quiet)

    def hurry(self) -> bool:
        """INT or QUIT during a graceful stop: it becomes a fast one (False if it is one)."""
        if not self.graceful or self.killed:
            return False
        self.graceful, self.limit = False, FAST_STOP_LIMIT
        self.deadline = min(self.deadline, time.monotonic() + FAST_STOP_LIMIT)
        return True

    def overdue(self) -> bool:
        """Whether the workers left are to be killed now (once; they then get 2 s more)."""
        if self.killed or time.monotonic() <= self.deadline:
            return False
        self.killed, self.deadline = True, time.monotonic() + 2.0
        return True

    def done(self, workers_left: int) -> bool:
        return not workers_left or (self.killed and time.monotonic() > self.deadline)


class Supervisor(hooks.HookNames):
    """Owns the listening sockets and the worker processes."""

    def __init__(self, source: ConfigSource, config: Config,
                 app: Optional[Callable[..., Any]] = None) -> None:
        self.source = source  # loaded again on HUP; re-executed on USR2
        self.app = app
        self.pid = os.getpid()
        self.generation: Optional[Generation] = None  # made at start from the config given
        self._config = config
        self.workers: Dict[int, WorkerProcess] = {}
        self.listeners = sockets.ListenerSet()
        self.restart = RestartPolicy()
        self.wakeup = Wakeup()
        self.reexec = Reexec()
        self.drain, self.recycling, self.notify = Drain(), Recycling(), Notifier.from_environ()
        self.pidfile: Optional[process.PidFile] = None
        self.metrics: NoMetrics = NoMetrics()  # --metrics-bind
        self.stopping: Optional[Stop] = None
        self.exit_code: int = ExitCode.OK
        self._spawned = 0

    @property
    def config(self) -> Config:
        return self.generation.config if self.generation else self._config

    @property
    def num_workers(self) -> int:
        return self.generation.target if self.generation else 0

    def _set_target(self, count: int) -> None:
        old, self.generation.target = self.generation.target, count
        if count != old:
            hooks.call(self.config, "nworkers_changed", self, count, old or None)

    # -- start, the loop, the stop ----------------------------------------------------------

    def run(self) -> int:
        try:
            self._start()
        except StartupError as exc:
            logs.error_log.error("%s", exc)
            self._cleanup()
            return exc.code
        except KeyboardInterrupt:  # INT, TERM or QUIT while starting (a slow preload)
            self._cleanup()
            return ExitCode.OK
        try:
            self._loop()
        finally:
            self._cleanup()
            hooks.call(self.config, "on_exit", self)
        return self.exit_code

    def _start(self) -> None:
        config = self._config
        try:
            self.generation = Generation.first(config)
            target = config.worker_count
        except ImportError as exc:
            raise StartupError(str(exc), ExitCode.WORKER_BOOT) from None
        except SettingError as exc:
            raise StartupError(str(exc), ExitCode.CONFIG) from None
        apply_environment(config)
        hooks.call(config, "on_starting", self)
        # Signals are queued from here on (logrotate's USR1 may come during a slow preload),
        # except that a stop request ends the start at once, cleaning up.
        self.wakeup.install(self.SIGNALS)
        self.wakeup.interrupt(STOP_SIGNALS)
        pidfile = check_pidfile(config.pidfile) if config.pidfile else None
        check_open_files(config)
        privileges.set_umask(config)
        try:
            self.listeners.open((config.bind, config.backlog, config.reuse_port), os.environ)
            self.metrics = Metrics.open(self, config.metrics_bind)
        except sockets.BindError as exc:
            raise StartupError(str(exc), ExitCode.CONFIG) from None
        privileges.give(config, self.listeners.unix_files())
        if self.listeners.origin == "systemd":
            logs.error_log.info("Using %d socket(s) from systemd; --bind is ignored",
                                len(self.listeners.current))
        self.pidfile = write_pidfile(pidfile, self.pid)
        process.set_title("master", config.proc_name or config.wsgi_app or "app")
        if config.preload_app and self.app is None:
            self.app = preload(config, self.generation.worker_class)
        self.wakeup.queue(STOP_SIGNALS)
        log_start(config, self.listeners.current, self.pid, self.metrics.describe())
        hooks.call(config, "when_ready", self)
        self._set_target(target)

    def _loop(self) -> None:
        while self.stopping is None or not self.stopping.done(len(self.workers)):
            if self.stopping is None:
                self._manage_workers()
                statsd.note_workers(self.workers.values())
                if self.drain.over(self.workers.values()):
                    self._stop(graceful=True)
            self.notify.update(self)
            self.wakeup.sleep(0.5)
            self._reap()
            self._handle_signals()
            self._check_deadlines()
        if not self.stopping.quiet:
            logs.error_log.info("Shutting down: Master")

    def _stop(self, graceful: bool, quiet: bool = False) -> None:
        """Close the listeners and tell every worker to stop; the loop waits for them."""
        self.stopping = Stop.begin(graceful, self.config.graceful_timeout, quiet)
        self.listeners.close_all(unlink=not self.reexec.pid)
        for worker in list(self.workers.values()):
            if self.reexec.pid:  # the new supervisor's workers accept on the same sockets
                worker.slot.set_leaves_queue()
            else:  # the server leaves: readiness answers 503
                worker.slot.set_draining()
            worker.stop(signal.SIGTERM if graceful else signal.SIGQUIT)

    def _fast_stop(self, sig: int) -> None:
        """INT or QUIT: the workers stop at once, also when a graceful stop is under way."""
        if self.stopping is not None and not self.stopping.hurry():
            return  # a fast stop already
        logs.error_log.info("Handling signal: %s (fast stop)", signal.Signals(sig).name)
        if self.stopping is None:
            self._stop(graceful=False)
        else:
            self._signal_workers(signal.SIGQUIT)

    def _cleanup(self) -> None:
        for worker in list(self.workers.values()):
            worker.stop(signal.SIGKILL)
        self.listeners.close_all(unlink=not self.reexec.pid)
        self.metrics.shutdown(unlink=not self.reexec.pid)
        if self.pidfile is not None:
            self.pidfile.remove(self.pid)

    # -- signals: one method each, in HANDLERS ----------------------------------------------

    def on_hup(self) -> None:
        logs.error_log.info("Handling signal: HUP (reload)")
        self.notify.reloading()
        self._reload()

    def on_term(self) -> None:
        if self.drain.begin(0.0 if self.reexec.pid else self.config.drain_delay,
                            self.workers.values()):
            return  # the graceful stop begins once the drain delay has passed
        logs.error_log.info("Handling signal: TERM (graceful stop)")
        self._stop(graceful=True)

    def on_int(self) -> None:
        self._fast_stop(signal.SIGINT)

    def on_quit(self) -> None:
        self._fast_stop(signal.SIGQUIT)

    def on_ttin(self) -> None:
        self._set_target(self.num_workers + 1)
        logs.error_log.info("Handling signal: TTIN: %d workers", self.num_workers)

    def on_ttou(self) -> None:
        self._set_target(max(1, self.num_workers - 1))
        logs.error_log.info("Handling signal: TTOU: %d workers", self.num_workers)

    def on_usr1(self) -> None:
        logs.error_log.info("Handling signal: USR1: reopening the log files")
        logs.reopen()
        self._signal_workers(signal.SIGUSR1)

    def on_usr2(self) -> None:
        self.reexec.start(self.source, self.listeners, self.pidfile,
                          lambda: (self.metrics.before_exec(),
                                   hooks.call(self.config, "pre_exec", self)))

    HANDLERS: Dict[int, Callable[[Supervisor], None]] = {
        signal.SIGHUP: on_hup, signal.SIGTERM: on_term, signal.SIGINT: on_int,
        signal.SIGQUIT: on_quit, signal.SIGTTIN: on_ttin, signal.SIGTTOU: on_ttou,
        signal.SIGUSR1: on_usr1, signal.SIGUSR2: on_usr2,
    }
    SIGNALS = (*HANDLERS, signal.SIGCHLD)  # SIGCHLD only wakes the loop up
    DURING_STOP = (signal.SIGINT, signal.SIGQUIT)  # the others wait for no one then

    def _handle_signals(self) -> None:
        while (sig := self.wakeup.pop()) is not None:
            if self.stopping is None or sig in self.DURING_STOP:
                self.HANDLERS[sig](self)

    # -- workers ----------------------------------------------------------------------------

    def _spawn(self) -> Optional[WorkerProcess]:
        """Fork one worker; None when the system refuses the fork (retried a second later)."""
        generation, slot = self.generation, Slot(self.metrics.new_block())
        self._spawned += 1
        worker = generation.worker_class(generation.config, list(self.listeners.current), slot,
                                         self.wakeup.write_fd, app=self.app, age=self._spawned)
        hooks.call(generation.config, "pre_fork", self, worker)
        # Not the worker's: the wake-up pipe, the other workers' slots, what a reload left.
        unneeded = [self.wakeup, self.metrics, *(w.slot for w in self.workers.values()),
                    *self.listeners.not_current()]
        try:
            pid = process.fork(self.SIGNALS, lambda mask: worker.run_forked(self, mask, unneeded))
        except OSError as exc:
            slot.close()
            logs.error_log.error("cannot start a worker: fork failed: %s; retrying in 1 s "
                                 "(check the process limits and free memory)", exc.strerror)
            self.restart.fork_failed()
            return None
        worker.pid = pid
        record = self.workers[pid] = WorkerProcess(pid, slot, generation, time.monotonic(),
                                                   worker)
        logs.error_log.info("Booting worker with pid: %d", pid)
        return record

    def _manage_workers(self) -> None:
        asked = [w for w in self.workers.values() if not w.stopping_since and w.asked_reload()
                 and w.generation is self.generation]
        if asked:  # --reload: a worker saw a source file change
            logs.error_log.info("Reloading: %s", asked[-1].slot.message)
            self._reload()
        generation, now = self.generation, time.monotonic()
        self.recycling.check(generation, self.workers.values(), now)
        running = [w for w in self.workers.values() if not w.stopping_since]
        current = [w for w in running
                   if w.generation is generation and w.slot.state != RETIRING]
        while len(current) < generation.target and self.restart.may_spawn(now):
            spawned = self._spawn()
            if spawned is None:
                return
            current.append(spawned)
        if len(current) > generation.target:  # TTOU: workers still booting first, then oldest
            extra = sorted(current, key=lambda w: (w.slot.state == READY, w.started))
            for worker in extra[:len(current) - generation.target]:
                self._retire_worker(worker)
                current.remove(worker)
        ready = [w for w in current if w.slot.state == READY]
        for worker in ready:
            if not worker.was_ready:  # a worker that just started: the app loads again
                worker.was_ready = True
                generation.loaded()
                self.restart.worker_ready()
        if len(ready) < len(current) or not current:
            return
        leaving = [w for w in running if w not in current and not w.stopping_since]
        if not generation.serving:
            generation.serving = True
            generation.settle()
            self.listeners.settle()
            logs.error_log.info("Ready: %d worker(s) serving", len(ready))
        for worker in leaving:
            self._retire_worker(worker)

    def _retire_worker(self, worker: WorkerProcess) -> None:
        """Stop a worker that others replace: it leaves the connections queued on the
        listeners to them, unless it serves one that a reload dropped."""
        if all(listener in self.listeners.current for listener in worker.worker.listeners):
            worker.slot.set_leaves_queue()
        worker.stop(signal.SIGTERM)

    def _signal_workers(self, sig: int) -> None:
        for worker in list(self.workers.values()):
            worker.signal(sig)

    def _reap(self) -> None:
        for pid, status in process.reap():
            if self.reexec.reaped(pid, status, self.pidfile):
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._worker_exited(worker, status)
                self.metrics.worker_exited(worker, status)
                worker.slot.close()
                hooks.call(self.config, "child_exit", self, worker.worker)
        if not any(w.generation is not self.generation for w in self.workers.values()):
            self.listeners.close_retired(unlink=not self.reexec.pid)

    def _worker_exited(self, worker: WorkerProcess, status: int) -> None:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if worker.stopping_since or self.stopping:
            logs.error_log.info("Worker exiting (pid: %d)", worker.pid)
        elif worker.slot.state in (BOOTING, FAILED) and code in BOOT_FAILURES:
            self._boot_failed(worker, code)
        else:
            self.restart.crashed()
            how = ("was stopped by its watchdog after a blocked event loop (report above)"
                   if code == ExitCode.WORKER_TIMEOUT else f"died: {process.describe_exit(status)}")
            logs.error_log.error("Worker (pid:%d) %s; starting a new one", worker.pid, how)

    def _boot_failed(self, worker: WorkerProcess, code: int) -> None:
        message = worker.slot.message or "the worker failed to start"
        generation = self.generation
        mode = generation.on_boot_failure_of(worker.generation)
        if mode is OnBootFailure.ROLL_BACK:  # new code that does not load: keep the old
            logs.error_log.error("Reload failed: %s; still serving with the previous workers",
                                 message)
            for other in list(self.workers.values()):
                if other.generation is generation:
                    other.stop(signal.SIGKILL)
            self.generation = generation.previous
            self.listeners.roll_back()
        elif mode is OnBootFailure.EXIT:  # at start-up: no fork loop, one line and the code
            logs.error_log.error("%s", message)
            self.exit_code = code
            self._stop(graceful=False, quiet=True)
        else:
            delay = self.restart.boot_failed()
            logs.error_log.error("A new worker failed to start: %s; trying again in %gs",
                                 message, delay)

    def _check_deadlines(self) -> None:
        """Kill the workers that outlive a stop or the graceful timeout, or stop beating."""
        if self.stopping is not None:
            if self.workers and self.stopping.overdue():
                logs.error_log.warning("%d worker(s) still running after %gs: killing them",
                                       len(self.workers), self.stopping.limit)
                self._signal_workers(signal.SIGKILL)
            return
        now = time.monotonic()
        for worker in list(self.workers.values()):
            worker.check_deadlines(now, self.config.timeout,
                                   self.config.graceful_timeout + KILL_GRACE)

    def _reload(self) -> None:
        """A new generation from the settings as they are now; the current one serves until
        the new one is ready, and comes back if the new one cannot boot."""
        hooks.call(self.config, "on_reload", self)
        current = self.generation
        try:
            config = self.source.load()
            config.worker_count  # noqa: B018 - validates WEB_CONCURRENCY
            new = current.next(config)
        except (ConfigError, SettingError, ImportError) as exc:
            logs.error_log.error("Reload failed: %s; still serving with the current "
                                 "settings", exc)
            return
        try:
            if config is not current.config:  # read again: log files, -e variables may change
                use_logs_and_environment(config)
        except OSError as exc:
            logs.error_log.error("Reload failed: %s", exc)
            return
        try:
            opened = self.listeners.rebind((config.bind, config.backlog, config.reuse_port))
        except (sockets.BindError, ValueError) as exc:
            logs.error_log.error("Reload failed: %s; still serving on the current "
                                 "addresses", exc)
            return
        for listener in opened:
            logs.error_log.info("Listening at: %s (%d)", sockets.describe(listener), self.pid)
        privileges.give(config, self.listeners.unix_files())
        current.settle()  # a reload still pending is superseded: no way back to before it
        self.generation = new
        self._set_target(config.worker_count)
