"""The supervisor: owns the listeners, forks the workers, keeps them alive, reloads, stops.

One loop, in the style of gunicorn's arbiter: sleep on the wake-up pipe (signals and worker
notifications write to it), reap dead workers, handle queued signals, kill workers whose
heartbeat stopped, then bring the workers to the wanted shape.

Workers belong to a generation. A reload (HUP) starts a new generation; a worker that asks to be
replaced (--max-requests) leaves like an old-generation worker: it is told to stop (TERM,
graceful) only once enough current workers are ready, so capacity never dips. A worker that is
one too many (TTOU) is told to stop at once: one still starting if there is one, else the oldest.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional

from . import hooks, logs, process, sockets
from .config import ConfigError, ConfigSource
from .exits import ExitCode
from .loading import AppLoadError, load_app, prepare_path
from .settings import Config, SettingError
from .workers import load_worker_class
from .workers.base import BOOTING, FAILED, READY, RETIRING, Slot, Worker

SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGTTIN,
           signal.SIGTTOU, signal.SIGUSR1, signal.SIGUSR2, signal.SIGCHLD)
KILL_GRACE = 5.0  # seconds past a deadline before a worker that did not stop is killed
CRASH_WINDOW = 5.0  # more than CRASH_LIMIT deaths within it slow respawning down
CRASH_LIMIT = 5
MAX_BOOT_RETRY_DELAY = 30.0


class StartupError(Exception):
    """The server cannot start; one line for the operator and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class WorkerProcess:
    pid: int
    slot: Slot
    generation: int
    started: float
    worker: Worker  # the object the worker runs (and the hooks receive)
    stopping_since: float = 0.0  # when it was told to stop (0: it was not)
    reloads_seen: int = 0  # --reload requests of this worker already acted upon
    was_ready: bool = False  # it has reported READY at least once


def configure_logs(config: Config) -> None:
    """Point the logs where the settings say (OSError with one line if a file cannot open)."""
    logs.setup(config.loglevel, config.errorlog, config.accesslog, config.access_log_format,
               config.access_log_json, config.capture_output)


def log_config_file(config: Config) -> None:
    """Say which config file the settings were read from (at start and on each reload)."""
    if config.file:
        logs.error_log.info("Config file: %s", config.file)


def apply_environment(config: Config) -> None:
    """-e/--env: variables for the app (set here, so that the workers inherit them)."""
    for entry in config.raw_env:
        key, _, value = entry.partition("=")
        os.environ[key] = value


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


class Supervisor(hooks.HookNames):
    """Owns the listening sockets and the worker processes."""

    def __init__(self, source: ConfigSource, config: Config,
                 app: Optional[Callable[..., Any]] = None) -> None:
        self.source = source  # loaded again on HUP; re-executed on USR2
        self.config = config
        self.app = app
        self.pid = os.getpid()
        self.listeners: List[Any] = []
        self.listener_origin = "bind"  # or "systemd", "reexec"
        self._created: Dict[int, bool] = {}  # listener fd -> created here (unlink unix path)
        self._retired_listeners: List[Any] = []
        self.workers: Dict[int, WorkerProcess] = {}
        self.generation = 0
        self.target = 0
        self.signals: List[int] = []
        self.stopped = False
        self.exit_code = ExitCode.OK
        self.reexec_pid = 0
        self.pidfile: Optional[process.PidFile] = None
        self._previous: Optional[tuple] = None  # what a failed reload returns to
        self._announced_generation = -1
        self._crashes: List[float] = []
        self._spawn_not_before = 0.0
        self._boot_failures = 0  # in a row, since the last worker that became ready
        self._ever_ready = False
        self._wake_r = self._wake_w = -1
        self._select = process.original("select", "select")
        self._spawned = 0

    @property
    def num_workers(self) -> int:
        return self.target

    def _set_target(self, count: int) -> None:
        old = self.target
        self.target = count
        if count != old:
            hooks.call(self.config, "nworkers_changed", self, count, old or None)

    # -- start-up ---------------------------------------------------------------------------

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
        config = self.config
        try:
            self.worker_class = load_worker_class(config.worker_class)
        except ImportError as exc:
            raise StartupError(str(exc), ExitCode.WORKER_BOOT) from None
        try:
            target = config.worker_count
        except SettingError as exc:
            raise StartupError(str(exc), ExitCode.CONFIG) from None
        apply_environment(config)
        hooks.call(config, "on_starting", self)
        # Signals are queued from here on (logrotate's USR1 may come during a slow preload),
        # except that a stop request ends the start at once, cleaning up.
        self._install_signals()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, signal.default_int_handler)
        if config.pidfile:
            pidfile = process.PidFile(config.pidfile)
            owner = pidfile.running_owner()
            if owner is not None:
                pid, certain = owner
                state = "still running" if certain else "which may still be running"
                raise StartupError(f"the PID file {pidfile.path} names geventserve pid {pid}, "
                                   f"{state}: stop it first, or give another --pid",
                                   ExitCode.CONFIG)
        self._check_open_files()
        self._open_listeners()
        if config.pidfile:
            self.pidfile = pidfile
            try:
                self.pidfile.write(self.pid)
            except OSError as exc:
                self.pidfile = None
                raise StartupError(str(exc), ExitCode.CONFIG) from None
        process.set_title("master", config.proc_name or config.wsgi_app or "app")
        if config.preload_app and self.app is None:
            self._preload()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            signal.signal(sig, self._queue_signal)
        logs.error_log.info("Starting geventserve %s", sys.modules["geventserve"].__version__)
        log_config_file(config)
        for listener in self.listeners:
            logs.error_log.info("Listening at: %s (%d)", sockets.describe(listener), self.pid)
        logs.error_log.info("Using worker: %s", config.worker_class)
        hooks.call(config, "when_ready", self)
        self._set_target(target)

    def _check_open_files(self) -> None:
        """Each gevent connection may hold a second socket (the app's own call upstream)."""
        config = self.config
        if config.worker_class == "sync":
            return
        needed = 2 * config.worker_connections + 128
        before, after, enough = process.raise_open_files_limit(needed)
        if after != before:
            logs.error_log.info("Raised the open-files limit from %d to %d for "
                                "--worker-connections %d", before, after,
                                config.worker_connections)
        if not enough:
            logs.error_log.warning(
                "The open-files limit is %d, below the %d that --worker-connections %d needs: "
                "raise the hard limit (ulimit -Hn, LimitNOFILE= in systemd) or lower "
                "--worker-connections", after, needed, config.worker_connections)

    def _open_listeners(self) -> None:
        config = self.config
        kind, fds = sockets.take_inherited(os.environ)
        try:
            self.listener_origin = kind or "bind"
            if kind == "systemd":
                self.listeners = [sockets.adopt_fd(fd) for fd in fds]
                self._created = {s.fileno(): False for s in self.listeners}
                logs.error_log.info("Using %d socket(s) from systemd; --bind is ignored", len(fds))
                return
            candidates = [sockets.adopt_fd(fd) for fd in fds]
            self.listeners, created = sockets.open_listeners(
                config.bind, config.backlog, config.reuse_port, candidates,
                in_order=kind == "reexec")
            self._created.update(created)
        except sockets.BindError as exc:
            raise StartupError(str(exc), ExitCode.CONFIG) from None
        except ValueError as exc:
            raise StartupError(f"invalid --bind: {exc}", ExitCode.CONFIG) from None

    def _preload(self) -> None:
        self.worker_class.before_app_import(in_supervisor=True)
        try:
            prepare_path(self.config.chdir, self.config.pythonpath)
            self.app = load_app(self.config.wsgi_app)
        except AppLoadError as exc:
            logs.error_log.debug("application load failed", exc_info=True)
            raise StartupError(str(exc), ExitCode.APP_LOAD) from None
        gc.freeze()  # keep the collector off the shared pages, for copy-on-write

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        os.set_inheritable(self._wake_r, False)
        signal.set_wakeup_fd(self._wake_w)
        for sig in SIGNALS:
            signal.signal(sig, self._queue_signal)

    def _queue_signal(self, sig: int, frame: Any) -> None:
        if sig != signal.SIGCHLD and len(self.signals) < 32:
            self.signals.append(sig)

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self.stopped:
            self._manage_workers()
            self._sleep(0.5)
            self._reap()
            self._handle_signals()
            if not self.stopped:
                self._check_timeouts()

    def _sleep(self, seconds: float) -> None:
        try:
            ready = self._select([self._wake_r], [], [], seconds)[0]
        except InterruptedError:
            return
        if ready:
            try:
                while os.read(self._wake_r, 4096):
                    pass
            except (BlockingIOError, InterruptedError):
                pass

    def _handle_signals(self) -> None:
        while self.signals and not self.stopped:
            sig = self.signals.pop(0)
            if sig == signal.SIGTERM:
                logs.error_log.info("Handling signal: TERM (graceful stop)")
                self._stop(graceful=True)
            elif sig in (signal.SIGINT, signal.SIGQUIT):
                logs.error_log.info("Handling signal: %s (fast stop)", signal.Signals(sig).name)
                self._stop(graceful=False)
            elif sig == signal.SIGHUP:
                self._reload()
            elif sig == signal.SIGTTIN:
                self._set_target(self.target + 1)
                logs.error_log.info("Handling signal: TTIN: %d workers", self.target)
            elif sig == signal.SIGTTOU:
                self._set_target(max(1, self.target - 1))
                logs.error_log.info("Handling signal: TTOU: %d workers", self.target)
            elif sig == signal.SIGUSR1:
                logs.error_log.info("Handling signal: USR1: reopening the log files")
                logs.reopen()
                self._signal_workers(signal.SIGUSR1)
            elif sig == signal.SIGUSR2:
                self._reexec()

    # -- workers ----------------------------------------------------------------------------

    def _spawn(self) -> Optional[WorkerProcess]:
        """Fork one worker; None when the system refuses the fork (retried a second later)."""
        slot = Slot()
        self._spawned += 1
        worker = self.worker_class(self.config, self.listeners, slot, self._wake_w, app=self.app,
                                   age=self._spawned)
        hooks.call(self.config, "pre_fork", self, worker)
        # Blocked across the fork, so that the child gets no signal before its own handlers
        # are in place (the supervisor's would act in the wrong process, the defaults kill).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            pid = os.fork()
        except OSError as exc:  # EAGAIN (process limits) or ENOMEM: the server goes on
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            slot.close()
            logs.error_log.error("cannot start a worker: fork failed: %s; retrying in 1 s "
                                 "(check the process limits and free memory)", exc.strerror)
            self._spawn_not_before = time.monotonic() + 1.0
            return None
        if pid:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            worker.pid = pid
            record = self.workers[pid] = WorkerProcess(pid, slot, self.generation,
                                                       time.monotonic(), worker)
            logs.error_log.info("Booting worker with pid: %d", pid)
            return record
        # -- in the child ------------------------------------------------------------------
        code = ExitCode.WORKER_BOOT
        try:
            signal.set_wakeup_fd(-1)
            worker.install_boot_signals()
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            os.close(self._wake_r)
            for other in self.workers.values():
                other.slot.close()
            for listener in self._retired_listeners:  # left by a reload: not this worker's
                listener.close()
            worker.pid = os.getpid()
            worker.server = self
            hooks.call(self.config, "post_fork", self, worker)
            code = worker.run()
            worker.exit(code)
        finally:
            os._exit(code)

    def _manage_workers(self) -> None:
        now = time.monotonic()
        running = [w for w in self.workers.values() if not w.stopping_since]
        asked = None
        for worker in running:
            if worker.slot.reload_requests != worker.reloads_seen:
                worker.reloads_seen = worker.slot.reload_requests
                if worker.generation == self.generation:
                    asked = worker
        if asked is not None:
            logs.error_log.info("Reloading: %s", asked.slot.message)
            self._reload(signalled=False)
            running = [w for w in self.workers.values() if not w.stopping_since]
        current = [w for w in running
                   if w.generation == self.generation and w.slot.state != RETIRING]
        while len(current) < self.target and now >= self._spawn_not_before:
            spawned = self._spawn()
            if spawned is None:
                return
            current.append(spawned)
        if len(current) > self.target:  # TTOU: workers still booting first, then the oldest
            extra = sorted(current, key=lambda w: (w.slot.state == READY, w.started))
            for worker in extra[:len(current) - self.target]:
                self._retire_worker(worker)
                current.remove(worker)
        ready = [w for w in current if w.slot.state == READY]
        for worker in ready:
            if not worker.was_ready:  # a worker that just started: the app loads again
                worker.was_ready = self._ever_ready = True
                self._boot_failures = 0
        if len(ready) < len(current) or not current:
            return
        leaving = [w for w in running if w not in current and not w.stopping_since]
        if self._announced_generation != self.generation:
            self._announced_generation = self.generation
            self._previous = None
            logs.error_log.info("Ready: %d worker(s) serving", len(ready))
        for worker in leaving:
            self._retire_worker(worker)

    def _retire_worker(self, worker: WorkerProcess) -> None:
        """Stop a worker that others replace: it leaves the connections queued on the
        listeners to them, unless it serves one that a reload dropped."""
        if not any(listener in self._retired_listeners for listener in worker.worker.listeners):
            worker.slot.set_leaves_queue()
        self._stop_worker(worker)

    def _stop_worker(self, worker: WorkerProcess, sig: int = signal.SIGTERM) -> None:
        try:
            os.kill(worker.pid, sig)
        except ProcessLookupError:
            return
        worker.stopping_since = time.monotonic()

    def _signal_workers(self, sig: int) -> None:
        for pid in list(self.workers):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            except InterruptedError:
                continue
            if not pid:
                break
            if pid == self.reexec_pid:
                logs.error_log.warning("The new supervisor (pid:%d) exited with %s; this one "
                                       "keeps serving", pid, describe_exit(status))
                self.reexec_pid = 0
                if self.pidfile is not None and self.pidfile.path.endswith(".oldbin"):
                    self.pidfile.rename_back()
                continue
            worker = self.workers.pop(pid, None)
            if worker is not None:
                self._worker_exited(worker, status)
                worker.slot.close()
                hooks.call(self.config, "child_exit", self, worker.worker)
        if self._retired_listeners and not any(w.generation != self.generation
                                               for w in self.workers.values()):
            for listener in self._retired_listeners:
                self._close_listener(listener)
            self._retired_listeners = []

    def _worker_exited(self, worker: WorkerProcess, status: int) -> None:
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        if worker.stopping_since or self.stopped:
            logs.error_log.info("Worker exiting (pid: %d)", worker.pid)
            return
        if worker.slot.state in (BOOTING, FAILED) and code in (ExitCode.APP_LOAD,
                                                                ExitCode.WORKER_BOOT):
            self._boot_failed(worker, code)
            return
        self._count_crash()
        if code == ExitCode.WORKER_TIMEOUT:
            logs.error_log.error("Worker (pid:%d) was stopped by its watchdog after a blocked "
                                 "event loop (report above); starting a new one", worker.pid)
        else:
            logs.error_log.error("Worker (pid:%d) died: %s; starting a new one", worker.pid,
                                 describe_exit(status))

    def _count_crash(self) -> None:
        """Workers that keep dying are replaced more slowly."""
        self._crashes = [t for t in self._crashes if time.monotonic() - t < CRASH_WINDOW]
        self._crashes.append(time.monotonic())
        if len(self._crashes) > CRASH_LIMIT:
            self._spawn_not_before = time.monotonic() + 1.0

    def _boot_failed(self, worker: WorkerProcess, code: int) -> None:
        message = worker.slot.message or "the worker failed to start"
        if self._previous is not None and worker.generation == self.generation:
            # A reload whose new code does not load: keep the workers that serve now.
            logs.error_log.error("Reload failed: %s; still serving with the previous workers",
                                 message)
            for other in list(self.workers.values()):
                if other.generation == self.generation:
                    self._stop_worker(other, signal.SIGKILL)
            new_listeners = self.listeners
            (self.config, self.target, self.generation, self.listeners,
             self.worker_class) = self._previous
            self._previous = None
            # Back in use again; those that a reload before this one retired are still retired.
            self._retired_listeners = [s for s in self._retired_listeners
                                       if s not in self.listeners]
            for listener in new_listeners:
                if listener not in self.listeners:
                    self._close_listener(listener)
            return
        if self._ever_ready:
            # The app loaded before (a transient failure: a database down at import time):
            # keep serving with the workers there are, and try again, more and more slowly.
            self._boot_failures += 1
            delay = min(0.5 * 2 ** (self._boot_failures - 1), MAX_BOOT_RETRY_DELAY)
            self._spawn_not_before = time.monotonic() + delay
            logs.error_log.error("A new worker failed to start: %s; trying again in %gs",
                                 message, delay)
            return
        if not self.stopped:  # at start-up: no fork loop, one line and the exit code
            logs.error_log.error("%s", message)
            self.exit_code = code
            self._stop(graceful=False, quiet=True)

    def _check_timeouts(self) -> None:
        now = time.monotonic()
        timeout = self.config.timeout
        for worker in list(self.workers.values()):
            if worker.stopping_since:
                if now - worker.stopping_since > self.config.graceful_timeout + KILL_GRACE:
                    logs.error_log.warning("Worker (pid:%d) did not stop within the graceful "
                                           "timeout: killing it", worker.pid)
                    self._stop_worker(worker, signal.SIGKILL)
                continue
            if not timeout:
                continue
            silent = now - worker.slot.last_beat
            # The worker's own watchdog reports at `timeout`; this covers a worker too stuck
            # to run it (C code holding the GIL, or a slow boot).
            if silent > timeout + max(1.0, timeout / 4):
                state = "booting" if worker.slot.state == BOOTING else "silent"
                logs.error_log.critical("WORKER TIMEOUT (pid:%d): %s for %.1fs; killing it",
                                        worker.pid, state, silent)
                self._stop_worker(worker, signal.SIGKILL)
                worker.stopping_since = 0.0  # its death is a failure, logged as such

    # -- reload, re-exec, stop --------------------------------------------------------------

    def _reload(self, signalled: bool = True) -> None:
        if signalled:
            logs.error_log.info("Handling signal: HUP (reload)")
        hooks.call(self.config, "on_reload", self)
        try:
            config = self.source.load()
            config.worker_count  # noqa: B018 - validates WEB_CONCURRENCY
            worker_class = load_worker_class(config.worker_class)
        except (ConfigError, SettingError, ImportError) as exc:
            logs.error_log.error("Reload failed: %s; still serving with the current "
                                 "settings", exc)
            return
        if config is not self.config:  # read again: log files and -e variables may change
            try:
                configure_logs(config)
            except OSError as exc:
                logs.error_log.error("Reload failed: %s", exc)
                return
            log_config_file(config)
            apply_environment(config)
        listeners = self.listeners
        wanted = (config.bind, config.backlog, config.reuse_port)
        if self.listener_origin != "systemd" and wanted != (
                self.config.bind, self.config.backlog, self.config.reuse_port):
            try:
                listeners, created = sockets.open_listeners(config.bind, config.backlog,
                                                            config.reuse_port, list(self.listeners),
                                                            close_unused=False)
            except (sockets.BindError, ValueError) as exc:
                logs.error_log.error("Reload failed: %s; still serving on the current "
                                     "addresses", exc)
                return
            self._created.update(created)
            kept = {s.fileno() for s in listeners}
            self._retired_listeners += [s for s in self.listeners if s.fileno() not in kept]
            for listener in listeners:
                if listener not in self.listeners:
                    logs.error_log.info("Listening at: %s (%d)", sockets.describe(listener),
                                        self.pid)
        self._previous = (self.config, self.target, self.generation, self.listeners,
                          self.worker_class)
        self.config = config
        self.worker_class = worker_class
        self.listeners = listeners
        self.generation += 1
        self._set_target(config.worker_count)

    def _reexec(self) -> None:
        if self.reexec_pid:
            logs.error_log.warning("USR2 ignored: a new supervisor (pid:%d) is already running",
                                   self.reexec_pid)
            return
        command = self.source.reexec_command()
        if command is None:
            logs.error_log.warning("USR2 ignored: re-executing needs the command line "
                                   "(this server was started by serve())")
            return
        fds = [listener.fileno() for listener in self.listeners]
        if self.pidfile is not None:
            self.pidfile.rename(".oldbin")  # before the new supervisor writes its own
        try:
            pid = os.fork()
        except OSError as exc:
            if self.pidfile is not None:
                self.pidfile.rename_back()
            logs.error_log.error("USR2 failed: cannot fork the new supervisor: %s; this one "
                                 "goes on serving", exc.strerror)
            return
        if pid == 0:
            try:
                signal.set_wakeup_fd(-1)
                for fd in fds:
                    os.set_inheritable(fd, True)
                os.chdir(self.source.start_dir)
                hooks.call(self.config, "pre_exec", self)
                os.execve(command[0], command,
                          process.reexec_environ(fds, self.listener_origin))
            finally:
                os._exit(ExitCode.WORKER_BOOT)
        self.reexec_pid = pid
        logs.error_log.info("Handling signal: USR2: started a new supervisor (pid:%d) on the "
                            "same sockets; send TERM to this one (pid:%d) once it is ready",
                            pid, self.pid)

    def _stop(self, graceful: bool, quiet: bool = False) -> None:
        self.stopped = True
        self._close_listeners()
        limit = (self.config.graceful_timeout + KILL_GRACE) if graceful else 2.0
        for worker in list(self.workers.values()):
            if self.reexec_pid:  # the new supervisor's workers accept on the same sockets
                worker.slot.set_leaves_queue()
            self._stop_worker(worker, signal.SIGTERM if graceful else signal.SIGQUIT)
        deadline = time.monotonic() + limit
        while self.workers and time.monotonic() < deadline:
            self._sleep(0.1)
            self._reap()
            fast = [sig for sig in self.signals if sig in (signal.SIGINT, signal.SIGQUIT)]
            self.signals.clear()
            if graceful and fast:  # INT or QUIT during a graceful stop: it becomes a fast one
                logs.error_log.info("Handling signal: %s (fast stop)",
                                    signal.Signals(fast[0]).name)
                graceful, limit = False, 2.0
                deadline = min(deadline, time.monotonic() + limit)
                for worker in list(self.workers.values()):
                    self._stop_worker(worker, signal.SIGQUIT)
        if self.workers:
            logs.error_log.warning("%d worker(s) still running after %gs: killing them",
                                   len(self.workers), limit)
            for worker in list(self.workers.values()):
                self._stop_worker(worker, signal.SIGKILL)
            deadline = time.monotonic() + 2.0
            while self.workers and time.monotonic() < deadline:
                self._sleep(0.05)
                self._reap()
        if not quiet:
            logs.error_log.info("Shutting down: Master")

    def _close_listener(self, listener: Any) -> None:
        try:
            created = self._created.pop(listener.fileno(), False)
            # After a re-exec the new supervisor serves the unix socket file: leave it.
            sockets.close_listener(listener, unlink=created and not self.reexec_pid)
        except OSError as exc:
            if exc.errno != errno.EBADF:
                raise

    def _close_listeners(self) -> None:
        for listener in self.listeners + self._retired_listeners:
            self._close_listener(listener)
        self.listeners = []
        self._retired_listeners = []

    def _cleanup(self) -> None:
        for worker in list(self.workers.values()):
            self._stop_worker(worker, signal.SIGKILL)
        self._close_listeners()
        if self.pidfile is not None:
            self.pidfile.remove(self.pid)
